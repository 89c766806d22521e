/*
 * run: the run lifecycle shared by the commands that run a pipeline
 * (run, resume, dlq replay): params, environment checks, secrets, leases,
 * recording the run, and running the engine to its end.
 */
#ifndef PIPECTL_RUN_H
#define PIPECTL_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The process exit codes. They never change meaning (documented in
 * man/pipectl.1). */
enum {
	EXIT_OK = 0,          /* success */
	EXIT_RUN_FAILED = 1,  /* the run failed (a stage failed or was cancelled) */
	EXIT_USAGE = 2,       /* bad command line, invalid pipeline, unknown run */
	EXIT_STATE = 3,       /* the state database cannot be opened or written */
	EXIT_BUSY = 4,        /* another live process owns the run or a file it writes */
	/* 128 + N: the run was interrupted by signal N (130 SIGINT, 143 SIGTERM) */
};

struct spec;
struct dag;
struct state;
struct engine;
struct diags;

/* Applies NAME=VALUE overrides to a copy of base (the declared params, or
 * those a run recorded); names and types are those s declares. Returns the
 * new params (caller owns), or NULL with *err (caller frees). */
json_t *run_params_override(const struct spec *s, const json_t *base, char **overrides,
                            int n, char **err);

/* run_params_override on the params s declares. */
json_t *run_effective_params(const struct spec *s, char **overrides, int n, char **err);

/* Prints to stderr, for cmd, the params that differ between old and cur.
 * With st (a resume of run), also the stages that already fetched or
 * loaded with a changed param; returns how many (0 when none or no st).
 * Returns -1 when nothing changed. */
int run_params_changes(const char *cmd, const struct spec *s, const json_t *old,
                       const json_t *cur, struct state *st, int64_t run);

/* Adds to d one diagnostic per environment variable that a stage builds its
 * requests from, without a default, and that is not set. Returns how many. */
size_t run_env_check(const struct spec *s, struct diags *d);

/* Tells the user how run run_id of s ended (e: its engine, st: the open
 * state database); all borrowed. */
typedef void (*run_summary_fn)(const struct spec *s, const struct dag *g, struct state *st,
                               struct engine *e, int64_t run_id);

/*
 * Runs s (validated, graph g built) with params, recording it in the state
 * database at state_path. A dlq replay passes replay_stage >= 0 and the
 * payloads, and paths_run_id the replayed run; a resume passes resume_id.
 * cmd names the command in messages; force takes over leases held by live
 * processes; *run_id_out (may be NULL) is set once the run is recorded.
 * Unless quiet, summary (may be NULL) is called once the run ended.
 * Everything is borrowed. Returns the exit code.
 */
int run_spec(const struct spec *s, const struct dag *g, json_t *params,
             const char *state_path, bool quiet, int replay_stage, json_t *replay,
             int64_t resume_id, int64_t paths_run_id, int64_t *run_id_out,
             const char *cmd, bool force, run_summary_fn summary);

#endif
