/*
 * cmd_resume: `pipectl resume RUN | --last`: continues a run that did not
 * succeed under the same id, after checking the pipeline file and params
 * did not change what it already did.
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
#include "store/state.h"
#include "base/util.h"

/* Prints the lines that differ between two texts (a short line diff). */
static void print_changes(const char *old, const char *cur)
{
	const char *a = old ? old : "", *b = cur ? cur : "";
	int line = 1, shown = 0;

	while ((*a || *b) && shown < 12) {
		const char *ae = strchr(a, '\n'), *be = strchr(b, '\n');
		size_t al = ae ? (size_t)(ae - a) : strlen(a), bl = be ? (size_t)(be - b) : strlen(b);
		if (al != bl || memcmp(a, b, al) != 0) {
			if (*a)
				fprintf(stderr, "  line %d was: %.*s\n", line, (int)al, a);
			if (*b)
				fprintf(stderr, "  line %d now: %.*s\n", line, (int)bl, b);
			shown++;
		}
		a = ae ? ae + 1 : a + al;
		b = be ? be + 1 : b + bl;
		line++;
	}
	if (shown == 12)
		fprintf(stderr, "  ...\n");
}

/* The run `pipectl resume --last` means: the newest run not succeeded. */
static int64_t last_resumable(struct state *st)
{
	struct run_row *rows = NULL;
	int n = state_runs_list(st, 0, &rows), i;
	int64_t id = 0;

	for (i = 0; i < n && !id; i++)
		if (rows[i].status != ST_SUCCEEDED)
			id = rows[i].id;
	run_rows_free(rows, n);
	return id;
}

static const struct option resume_opts[] = {
	{ "param", required_argument, NULL, 'p' },
	{ "state", required_argument, NULL, 's' },
	{ "file", required_argument, NULL, 'f' },
	{ "last", no_argument, NULL, 'L' },
	{ "force", no_argument, NULL, 'F' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "log-json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};
/*
 * pipectl resume RUN | --last: continues a failed, interrupted or killed run
 * under the same id with the same params and pipeline file.
 */
int cmd_resume(int argc, char **argv)
{
	const char *opt_state = NULL, *opt_file = NULL;
	bool last = false, force = false, dry = false, quiet = false;
	int c, rc = EXIT_OK, found;
	int64_t run = 0;
	char *state_path = NULL, *err = NULL, *text = NULL, *scope = NULL;
	long pid = 0;
	struct state *st = NULL;
	struct run_row rr;
	bool have_rr = false;
	struct diags d = { 0 };
	struct spec *s = NULL;
	struct dag *g = NULL;
	json_t *params = NULL;
	char **overrides = xcalloc((size_t)argc + 1, sizeof(char *));
	int n_over = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:s:f:qvh", resume_opts, NULL)) != -1) {
		switch (c) {
		case 'p': overrides[n_over++] = optarg; break;
		case 's': opt_state = optarg; break;
		case 'f': opt_file = optarg; break;
		case 'L': last = true; break;
		case 'F': force = true; break;
		case 'n': dry = true; break;
		case 'q': quiet = true; log_set_level(LOG_WARN); break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'j': log_set_json(true); break;
		case 'h':
			printf("usage: pipectl resume RUN | --last [--dry-run] [--force] "
			       "[-p NAME=VALUE]... [-f FILE | --state DB] [-q] [-v] [--log-json]\n");
			free(overrides);
			return EXIT_OK;
		default:
			free(overrides);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1 || (argc - optind == 1) == last) {
		free(overrides);
		return usage_error("resume", "expects a run id or --last");
	}
	if (!last) {
		char *end;
		long long v = strtoll(argv[optind], &end, 10);
		if (*end || v <= 0) {
			free(overrides);
			return usage_error("resume", "invalid run id \"%s\"", argv[optind]);
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
	if (opt_file && !(scope = cmd_scope(st, "resume", opt_file, &rc)))
		goto out;
	if (last && !(run = last_resumable(st))) {
		if (scope)
			printf("no run of pipeline \"%s\" to resume\n", scope);
		else
			printf("no run to resume\n");
		goto out;
	}
	if ((found = state_run_get(st, run, &rr)) <= 0) {
		rc = found < 0 ? EXIT_STATE : usage_error("resume", "no run %lld", (long long)run);
		goto out;
	}
	have_rr = true;
	if ((rc = cmd_scope_check("resume", scope, opt_file, &rr)) != EXIT_OK)
		goto out;
	if (rr.status == ST_SUCCEEDED) {
		printf("run %lld already succeeded: nothing to resume\n", (long long)run);
		goto out;
	}
	{
		/* A replay's stages ran on dead letters a resume does not have:
		 * it would fetch and load everything anew, and leave the dead
		 * letters unmarked. */
		int64_t of = state_run_replay_of(st, run);
		if (of < 0) {
			log_error("%s", state_errmsg(st));
			rc = EXIT_STATE;
			goto out;
		}
		if (of > 0) {
			rc = usage_error("resume", "run %lld is a dlq replay of run %lld and cannot be "
			                 "resumed; replay the dead letters again with pipectl dlq "
			                 "replay %lld", (long long)run, (long long)of, (long long)of);
			goto out;
		}
	}
	if (state_run_source(st, run, &text, &pid) < 0) {
		log_error("%s", state_errmsg(st));
		rc = EXIT_STATE;
		goto out;
	}
	s = config_load(rr.path, &d);
	if (!s || !(g = dag_build(s, &d))) {
		diags_print(&d, stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	if (strcmp(s->hash, rr.hash) != 0) {
		if (!force) {
			fprintf(stderr, "pipectl resume: %s changed since run %lld started "
			        "(sha256 %.12s, now %.12s):\n", rr.path, (long long)run, rr.hash, s->hash);
			if (text)
				print_changes(text, s->text);
			fprintf(stderr, "resume with --force to run the current file under run %lld, "
			        "or start a new run\n", (long long)run);
			rc = EXIT_USAGE;
			goto out;
		}
		log_warn("%s changed since run %lld started; resuming anyway (--force)", rr.path,
		         (long long)run);
	}
	params = json_loads(rr.params, 0, NULL);
	if (!params)
		params = json_object();
	if (n_over > 0) {
		json_t *p = run_params_override(s, params, overrides, n_over, &err);
		int affected;
		if (!p) {
			rc = usage_error("resume", "%s", err);
			goto out;
		}
		affected = run_params_changes("resume", s, params, p, st, run);
		json_decref(params);
		params = p;
		if (affected > 0 && !force) {
			fprintf(stderr, "resume with --force to go on with the new values (what was "
			        "already fetched or loaded with the old ones is kept), or start a new "
			        "run\n");
			rc = EXIT_USAGE;
			goto out;
		}
		if (affected > 0)
			log_warn("params changed what run %lld already fetched or loaded; resuming anyway "
			         "(--force)", (long long)run);
	}
	if (dry) {
		resume_plan_print(st, s, g, run);
		goto out;
	}
	state_close(st);
	st = NULL;
	rc = run_spec(s, g, params, state_path, quiet, -1, NULL, run, 0, NULL, "resume", force,
	              report_summary);
out:
	if (have_rr)
		run_row_free(&rr);
	free(text);
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
