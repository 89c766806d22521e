/*
 * spec: a pipeline as read from its file (core/config_load.h reads it), every
 * value with its source position. The common stage fields are here; what a
 * stage of a given kind reads is the kind's own options struct (opts),
 * described by its option table (core/option.h, stages/).
 *
 * Ownership: a spec owns every string and array inside; spec_free frees it
 * all, each stage's opts through its kind's table.
 */
#ifndef PIPECTL_SPEC_H
#define PIPECTL_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "base/diag.h"
#include "base/policy.h"
#include "net/hostreg.h"

/* A string from the file with its position (s == NULL when absent). */
struct sval {
	char *s;
	struct pos pos;
};

enum data_format { FMT_JSON = 0, FMT_JSONL };

/* retry: (in defaults: or a stage's options; a stage's retry replaces the
 * default one as a whole). */
struct retry_spec {
	bool set;                      /* the key was given */
	struct pos pos;
	struct retry_policy p;         /* unset keys keep retry_policy_default() */
	struct sval when;              /* jq predicate on a 2xx body: retry when true */
};

/* on_error: what a stage does with a record or request that failed for good. */
enum on_error {
	ON_ERROR_UNSET = 0,            /* inherit (default: fail) */
	ON_ERROR_FAIL,                 /* fail the stage; cancel what depends on it */
	ON_ERROR_SKIP,                 /* count it, log it, go on */
	ON_ERROR_DLQ,                  /* store it in the dead-letter queue, go on */
	ON_ERROR_PASS,                 /* fan-out fetch only: pass the input record on
	                                  with an "_errors" field */
};

/* hosts: entries (top-level map; a key is a host name, "host:port", or a
 * pool name that stages select with `pool:`): the limits of a host pool,
 * as net/hostreg.h declares them (the name keeps config.c's spelling). */
#define host_spec host_limits

struct stage_kind;

struct stage_spec {
	char *id;
	struct pos pos;                /* of the stage's key */
	char *description;
	enum on_error on_error;        /* UNSET: inherit defaults.on_error */
	double stage_timeout;          /* seconds; -1 = inherit (default: none) */
	struct sval *needs;
	size_t n_needs;
	struct pos type_pos;           /* of the fetch:/transform:/load: key */
	const struct stage_kind *kind; /* from the registry (core/stage.h) */
	void *opts;                    /* the kind's options struct (kind->opts_size
	                                  bytes), filled from kind->options */
};

struct spec {
	char *path;                    /* as given on the command line */
	char *dir;                     /* directory relative paths resolve against */
	char *text;                    /* the file's bytes */
	size_t text_len;
	char hash[65];                 /* sha256 of text */

	char *name;                    /* pipeline: */
	char *description;
	json_t *params;                /* object: name -> scalar (defaults; -p overrides) */

	/* settings: (engine-wide) */
	int concurrency;               /* HTTP transfers in flight, whole run (default 64) */
	int queue_high, queue_low;     /* records per stage input queue (10000 / 5000) */
	int batch_size;                /* records per batch (default 500) */

	/* defaults: (inherited by fetch stages) */
	double timeout;                /* default 30s */
	double connect_timeout;        /* default 10s */
	int stage_concurrency;         /* default 16 */
	long long max_body;            /* default 64MiB */
	struct retry_spec retry;       /* default: retry_policy_default() */
	enum on_error on_error;        /* default ON_ERROR_FAIL */
	double stage_timeout;          /* default -1: none */

	double run_timeout;            /* settings.run_timeout; -1 = none */
	struct host_spec *hosts;       /* hosts: (top level) */
	size_t n_hosts;

	struct stage_spec *stages;     /* in file order */
	size_t n_stages;

	/* Stage indexes sorted by id (then file order), built by the first
	 * spec_stage_index of a spec of n_by_id != n_stages stages. */
	size_t *by_id;
	size_t n_by_id;
};

/* Frees what the walker and kind stored in opts (not opts itself), through
 * kind's table and hooks. NULL-safe. Defined with the list of kinds, in
 * stages/registry.c: spec.c calls it without knowing the kinds. */
void stage_opts_free(const struct stage_kind *kind, void *opts);

/* Frees s and everything in it. NULL-safe. */
void spec_free(struct spec *s);

/* Index of the (first) stage named id, or -1. A binary search: the first
 * call sorts the ids (kept in s->by_id, freed by spec_free). */
int spec_stage_index(const struct spec *s, const char *id);

#endif
