/*
 * cmd_replay: `pipectl dlq replay RUN`: the dead letters of a run go
 * through their stage again in a new run (the other dlq subcommands are in
 * cmd_dlq.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "cli/report.h"
#include "core/run.h"
#include "core/spec.h"
#include "core/dag.h"
#include "base/log.h"
#include "base/secret.h"
#include "store/state.h"
#include "base/util.h"

static const struct option replay_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "param", required_argument, NULL, 'p' },
	{ "state", required_argument, NULL, 's' },
	{ "file", required_argument, NULL, 'f' },
	{ "stage", required_argument, NULL, 'S' },
	{ "quiet", no_argument, NULL, 'q' },
	{ NULL, 0, NULL, 0 },
};

/*
 * pipectl dlq replay RUN [--stage ID]: the dead letters of RUN (not yet
 * replayed) go through their stage again, and on through what follows it,
 * in a new run of the same pipeline file with the same params. When that
 * run succeeds they are marked replayed; any that fail again are
 * dead-lettered again under the new run.
 */
int cmd_dlq_replay(int argc, char **argv)
{
	const char *opt_state = NULL, *opt_file = NULL, *opt_stage = NULL;
	bool quiet = false;
	int c, rc = EXIT_OK, n = 0, i, idx = -1;
	int64_t run = 0, new_run = 0;
	char *state_path = NULL, *err = NULL, *scope = NULL;
	struct state *st = NULL;
	struct run_row rr;
	bool have_rr = false;
	struct dlq_row *rows = NULL;
	struct diags d = { 0 };
	struct spec *s = NULL;
	struct dag *g = NULL;
	json_t *params = NULL, *payloads = json_array();
	const char *stage = NULL;
	char **overrides = xcalloc((size_t)argc + 1, sizeof(char *));
	int n_over = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:s:f:qh", replay_opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			printf("usage: pipectl dlq replay RUN [--stage ID] [-p NAME=VALUE]... "
			       "[-f FILE | --state DB] [-q]\n");
			json_decref(payloads);
			free(overrides);
			return EXIT_OK;
		case 'p': overrides[n_over++] = optarg; break;
		case 's': opt_state = optarg; break;
		case 'f': opt_file = optarg; break;
		case 'S': opt_stage = optarg; break;
		case 'q': quiet = true; log_set_level(LOG_WARN); break;
		default: json_decref(payloads); free(overrides); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		json_decref(payloads);
		free(overrides);
		return usage_error("dlq replay", "expects one run id");
	}
	{
		char *end;
		long long v = strtoll(argv[optind], &end, 10);
		if (*end || v <= 0) {
			json_decref(payloads);
			free(overrides);
			return usage_error("dlq replay", "invalid run id \"%s\"", argv[optind]);
		}
		run = v;
	}
	state_path = state_path_for(opt_state, opt_file);
	st = state_open(state_path, false, &err);
	if (!st) {
		log_error("%s", err);
		rc = EXIT_STATE;
		goto out;
	}
	if (opt_file && !(scope = cmd_scope(st, "dlq replay", opt_file, &rc)))
		goto out;
	if ((i = state_run_get(st, run, &rr)) <= 0) {
		rc = i < 0 ? EXIT_STATE : usage_error("dlq replay", "no run %lld", (long long)run);
		goto out;
	}
	have_rr = true;
	if ((rc = cmd_scope_check("dlq replay", scope, opt_file, &rr)) != EXIT_OK)
		goto out;
	n = state_dlq_list(st, run, opt_stage, &rows);
	if (n < 0) {
		log_error("%s", state_errmsg(st));
		rc = EXIT_STATE;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (rows[i].replayed)
			continue;
		if (stage && strcmp(stage, rows[i].stage) != 0) {
			rc = usage_error("dlq replay", "run %lld has dead letters in several stages "
			                 "(%s, %s, ...): choose one with --stage", (long long)run,
			                 stage, rows[i].stage);
			goto out;
		}
		stage = rows[i].stage;
	}
	if (!stage) {
		printf("run %lld has no dead letters to replay\n", (long long)run);
		goto out;
	}
	for (i = 0; i < n; i++) {
		json_t *p;
		if (rows[i].replayed || strcmp(rows[i].stage, stage) != 0)
			continue;
		{
			/* The letter keeps ${env.NAME} placeholders, not secrets:
			 * render them with this process's environment. */
			char *msg = NULL;
			char *text = secret_unseal(rows[i].payload, strlen(rows[i].payload), NULL,
			                           &msg);
			if (!text) {
				rc = usage_error("dlq replay", "dead letter %lld of stage %s cannot "
				                 "be sent again: %s", (long long)rows[i].id,
				                 rows[i].stage, msg);
				free(msg);
				goto out;
			}
			p = json_loads(text, JSON_DECODE_ANY, NULL);
			free(text);
		}
		if (!p) {
			log_error("dead letter %lld has an unreadable payload", (long long)rows[i].id);
			rc = EXIT_STATE;
			goto out;
		}
		json_array_append_new(payloads, p);
	}
	s = config_load(rr.path, &d);
	if (!s || !(g = dag_build(s, &d))) {
		diags_print(&d, stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	if (strcmp(s->hash, rr.hash) != 0)
		log_warn("%s changed since run %lld; replaying with the current file", rr.path,
		         (long long)run);
	idx = spec_stage_index(s, stage);
	if (idx < 0) {
		rc = usage_error("dlq replay", "stage \"%s\" is no longer in %s", stage, rr.path);
		goto out;
	}
	params = json_loads(rr.params, 0, NULL);
	if (!params)
		params = json_object();
	if (n_over > 0) {
		json_t *p = run_params_override(s, params, overrides, n_over, &err);
		if (!p) {
			rc = usage_error("dlq replay", "%s", err);
			goto out;
		}
		run_params_changes("dlq replay", s, params, p, NULL, run);
		json_decref(params);
		params = p;
	}
	log_info("replaying %zu dead letters of run %lld through stage %s",
	         json_array_size(payloads), (long long)run, stage);
	/* The state database is opened again by the run. */
	state_close(st);
	st = NULL;
	rc = run_spec(s, g, params, state_path, quiet, idx, payloads, 0, run, &new_run,
	              "dlq replay", false, report_summary);
	if (rc == EXIT_OK) {
		st = state_open(state_path, false, &err);
		if (!st) {
			log_error("%s", err);
			rc = EXIT_STATE;
			goto out;
		}
		state_begin(st);
		for (i = 0; i < n; i++)
			if (!rows[i].replayed && strcmp(rows[i].stage, stage) == 0)
				state_dlq_mark_replayed(st, rows[i].id);
		if (state_commit(st) != 0) {
			log_error("cannot mark the dead letters replayed: %s", state_errmsg(st));
			rc = EXIT_STATE;
		}
	}
out:
	if (have_rr)
		run_row_free(&rr);
	dlq_rows_free(rows, n);
	json_decref(payloads);
	json_decref(params);
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	state_close(st);
	free(err);
	free(scope);
	free(state_path);
	free(overrides);
	log_free_secrets();
	return rc;
}
