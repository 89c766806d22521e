/*
 * cmd: the subcommands. Each cmd_*.c file implements one or two commands;
 * main.c holds the table and dispatches. Exit codes never change meaning
 * (documented in man/pipectl.1).
 */
#ifndef PIPECTL_CMD_H
#define PIPECTL_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include "base/units.h"
#include "core/config_load.h"

/* The exit codes (EXIT_OK...) are those of the run lifecycle. */
#include "core/run.h"

int cmd_run(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_dlq(int argc, char **argv);
int cmd_dlq_replay(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_gc(int argc, char **argv);

/* The state database path: --state if given, else $PIPECTL_STATE, else
 * .pipectl/state.db beside the pipeline file (or in the current directory
 * when there is none). Caller frees. */
char *state_path_for(const char *opt_state, const char *pipeline_path);

struct state;
struct spec;
struct dag;
struct run_row;

/* With -f FILE: limits st to the runs of FILE's pipeline and returns its
 * name (caller frees). NULL without -f, or (with *rc = EXIT_USAGE, the
 * diagnostics printed) when FILE does not load. See cmd_scope.c. */
char *cmd_scope(struct state *st, const char *cmd, const char *file, int *rc);
/* 0 when run r belongs to scope (or scope is NULL); else prints why and
 * returns EXIT_USAGE. */
int cmd_scope_check(const char *cmd, const char *scope, const char *file,
                    const struct run_row *r);

/* Prints "pipectl CMD: message" to stderr and returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
