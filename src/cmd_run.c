/*
 * cmd_run: `pipectl run FILE`: validate, record a run in the state database,
 * run the engine, record the outcome and tell the user where the data went.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "spec.h"
#include "dag.h"
#include "engine.h"
#include "expr.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "state.h"
#include "util.h"

/* Converts a -p value to the type of the declared default. */
static json_t *param_value(const char *name, const char *text, const json_t *decl, char **err)
{
	char *end;

	switch (json_typeof(decl)) {
	case JSON_INTEGER: {
		long long v = strtoll(text, &end, 10);
		if (!*text || *end) {
			*err = xasprintf("parameter \"%s\" expects an integer, got \"%s\"", name, text);
			return NULL;
		}
		return json_integer(v);
	}
	case JSON_REAL: {
		double v = strtod(text, &end);
		if (!*text || *end) {
			*err = xasprintf("parameter \"%s\" expects a number, got \"%s\"", name, text);
			return NULL;
		}
		return json_real(v);
	}
	case JSON_TRUE:
	case JSON_FALSE:
		if (strcmp(text, "true") == 0)
			return json_true();
		if (strcmp(text, "false") == 0)
			return json_false();
		*err = xasprintf("parameter \"%s\" expects true or false, got \"%s\"", name, text);
		return NULL;
	default:
		return json_string(text);
	}
}

/* Applies NAME=VALUE overrides to a copy of the declared params. */
static json_t *effective_params(const struct spec *s, char **overrides, int n, char **err)
{
	json_t *p = json_deep_copy(s->params);
	int i;

	for (i = 0; i < n; i++) {
		char *eq = strchr(overrides[i], '=');
		char *name;
		json_t *decl, *v;

		if (!eq || eq == overrides[i]) {
			*err = xasprintf("-p expects NAME=VALUE, got \"%s\"", overrides[i]);
			goto fail;
		}
		name = xstrndup(overrides[i], (size_t)(eq - overrides[i]));
		decl = json_object_get(p, name);
		if (!decl) {
			struct buf b;
			const char *k;
			json_t *x;
			buf_init(&b);
			json_object_foreach(s->params, k, x)
				buf_printf(&b, "%s%s", b.len ? ", " : "", k);
			*err = xasprintf("unknown parameter \"%s\" (the pipeline declares: %s)", name,
			                 b.len ? b.data : "none");
			buf_free(&b);
			free(name);
			goto fail;
		}
		v = param_value(name, eq + 1, decl, err);
		if (!v) {
			free(name);
			goto fail;
		}
		json_object_set_new(p, name, v);
		free(name);
	}
	return p;
fail:
	json_decref(p);
	return NULL;
}

static void add_refs(const struct sval *v, json_t *names)
{
	if (v->s)
		expr_env_refs(v->s, names);
}

/* Registers the values of every environment variable the pipeline reads as
 * secrets, so they are redacted from messages and the state database. */
static void register_secrets(const struct spec *s)
{
	json_t *names = json_array(), *n;
	size_t i, j;

	for (i = 0; i < s->n_stages; i++) {
		const struct stage_spec *st = &s->stages[i];
		if (st->type == STAGE_FETCH) {
			const struct fetch_spec *f = &st->u.fetch;
			for (j = 0; j < f->n_urls; j++)
				add_refs(&f->urls[j], names);
			for (j = 0; j < f->n_headers; j++)
				add_refs(&f->headers[j].value, names);
			add_refs(&f->file, names);
			add_refs(&f->body, names);
			add_refs(&f->json, names);
			add_refs(&f->records, names);
		} else if (st->type == STAGE_LOAD && st->u.load.target == LOAD_HTTP) {
			const struct fetch_spec *f = &st->u.load.http;
			for (j = 0; j < f->n_urls; j++)
				add_refs(&f->urls[j], names);
			for (j = 0; j < f->n_headers; j++)
				add_refs(&f->headers[j].value, names);
		} else if (st->type == STAGE_TRANSFORM) {
			add_refs(&st->u.transform.jq, names);
			add_refs(&st->u.transform.dedupe, names);
		}
	}
	json_array_foreach(names, i, n) {
		const char *v = getenv(json_string_value(n));
		if (v)
			log_add_secret(v);
	}
	json_decref(names);
}

static void print_summary(const struct spec *s, const struct dag *g, struct state *st,
                          int64_t run_id)
{
	struct stage_row *rows = NULL;
	int n = state_stages_list(st, run_id, &rows), i;

	if (n <= 0)
		return;
	fprintf(stderr, "  %-20s %-12s %-11s %10s %10s %7s %9s\n", "STAGE", "KIND", "STATUS",
	        "IN", "OUT", "ERRORS", "REQUESTS");
	for (i = 0; i < n; i++)
		fprintf(stderr, "  %-20s %-12s %-11s %10lld %10lld %7lld %9lld\n", rows[i].stage,
		        rows[i].kind, state_status_name(rows[i].status),
		        (long long)rows[i].stats.records_in, (long long)rows[i].stats.records_out,
		        (long long)rows[i].stats.errors, (long long)rows[i].stats.requests);
	/* Where the data went, and how to look at it. */
	for (i = 0; i < n; i++) {
		int idx = spec_stage_index(s, rows[i].stage);
		const struct stage_spec *sp;
		char *path;
		if (idx < 0 || rows[i].status != ST_SUCCEEDED)
			continue;
		sp = &s->stages[idx];
		if (sp->type != STAGE_LOAD || sp->u.load.target == LOAD_STDOUT)
			continue;
		if (sp->u.load.target == LOAD_HTTP) {
			fprintf(stderr, "%s: %lld records delivered (%s %s)\n", rows[i].stage,
			        (long long)rows[i].stats.records_out,
			        sp->u.load.http.method.s ? sp->u.load.http.method.s : "POST",
			        sp->u.load.http.urls ? sp->u.load.http.urls[0].s : "");
			continue;
		}
		path = path_join(s->dir, sp->u.load.path.s);
		if (sp->u.load.target == LOAD_SQLITE)
			fprintf(stderr, "%s: %lld records in table \"%s\" of %s\n"
			        "  look: sqlite3 %s 'SELECT * FROM \"%s\" LIMIT 10'\n",
			        rows[i].stage, (long long)rows[i].stats.records_out, sp->u.load.table.s,
			        path, path, sp->u.load.table.s);
		else
			fprintf(stderr, "%s: %lld records in %s\n  look: head %s\n", rows[i].stage,
			        (long long)rows[i].stats.records_out, path, path);
		free(path);
	}
	(void)g;
	stage_rows_free(rows, n);
}

static const struct option run_opts[] = {
	{ "param", required_argument, NULL, 'p' },
	{ "state", required_argument, NULL, 's' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "log-json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/*
 * Runs spec (already validated, graph built) with params, recording it in the
 * state database at state_path. A dlq replay passes replay_stage >= 0 and
 * the payloads. *run_id is set once the run is recorded. Returns the exit
 * code.
 */
static int run_spec(const struct spec *s, const struct dag *g, json_t *params,
                    const char *state_path, bool quiet, int replay_stage, json_t *replay,
                    int64_t resume_id, int64_t *run_id_out)
{
	struct state *st = NULL;
	struct engine *e = NULL;
	char *err = NULL, *params_json = NULL;
	int64_t run_id = 0;
	enum run_status result;
	double t0;
	int rc = EXIT_OK;

	register_secrets(s);
	st = state_open(state_path, false, &err);
	if (!st) {
		log_error("%s", err);
		rc = EXIT_STATE;
		goto out;
	}
	params_json = jsonw_dumps(params);
	t0 = now_mono();
	if (resume_id > 0) {
		run_id = resume_id;
		if (state_run_reopen(st, run_id, (long)getpid()) != 0) {
			log_error("cannot record the resume: %s", state_errmsg(st));
			rc = EXIT_STATE;
			goto out;
		}
		log_info("run %lld of %s resumed (state: %s)", (long long)run_id, s->path,
		         state_path);
	} else {
		if (state_run_create(st, s->name, s->path, s->hash, params_json, now_wall(),
		                     &run_id) != 0 ||
		    state_run_set_source(st, run_id, s->text, (long)getpid()) != 0) {
			log_error("cannot record the run: %s", state_errmsg(st));
			rc = EXIT_STATE;
			goto out;
		}
		log_info("run %lld of %s started (state: %s)", (long long)run_id, s->path,
		         state_path);
	}
	if (run_id_out)
		*run_id_out = run_id;

	{
		struct engine_opts o = { .spec = s, .dag = g, .params = params, .state = st,
		                         .run_id = run_id, .quiet = quiet,
		                         .replay_stage = replay_stage, .replay = replay,
		                         .resume = resume_id > 0 };
		e = engine_create(&o, &err);
	}
	if (!e) {
		char *r = redact(err);
		log_error("%s", r);
		state_run_finish(st, run_id, ST_FAILED, r, now_wall());
		free(r);
		rc = EXIT_RUN_FAILED;
		goto out;
	}
	result = engine_run(e);
	{
		const char *failed_stage = NULL;
		const char *msg = engine_first_error(e, &failed_stage);
		char *run_err = NULL;
		if (result == ST_INTERRUPTED)
			run_err = xasprintf("interrupted by %s", engine_signal(e) == SIGINT ? "SIGINT" :
			                    "SIGTERM");
		else if (msg)
			run_err = xasprintf("stage %s: %s", failed_stage, msg);
		if (state_run_finish(st, run_id, result, run_err, now_wall()) != 0) {
			log_error("cannot record the end of the run: %s", state_errmsg(st));
			rc = EXIT_STATE;
		}
		free(run_err);
	}
	if (!quiet)
		print_summary(s, g, st, run_id);
	if (result == ST_SUCCEEDED) {
		log_info("run %lld succeeded in %.2fs", (long long)run_id, now_mono() - t0);
	} else if (result == ST_INTERRUPTED) {
		log_warn("run %lld interrupted after %.2fs", (long long)run_id, now_mono() - t0);
		rc = 128 + engine_signal(e);
	} else {
		log_error("run %lld failed after %.2fs (details: pipectl status %lld)",
		          (long long)run_id, now_mono() - t0, (long long)run_id);
		if (rc == EXIT_OK)
			rc = EXIT_RUN_FAILED;
	}
out:
	engine_destroy(e);
	state_close(st);
	free(err);
	free(params_json);
	return rc;
}

int cmd_run(int argc, char **argv)
{
	char **overrides = xcalloc((size_t)argc + 1, sizeof(char *));
	int n_over = 0, c, rc = EXIT_OK;
	const char *opt_state = NULL;
	bool quiet = false;
	struct diags d = { 0 };
	struct spec *s = NULL;
	struct dag *g = NULL;
	json_t *params = NULL;
	char *err = NULL, *state_path = NULL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:s:qvh", run_opts, NULL)) != -1) {
		switch (c) {
		case 'p': overrides[n_over++] = optarg; break;
		case 's': opt_state = optarg; break;
		case 'q': quiet = true; log_set_level(LOG_WARN); break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'j': log_set_json(true); break;
		case 'h':
			printf("usage: pipectl run FILE [-p NAME=VALUE]... [--state DB] [-q] [-v] [--log-json]\n");
			free(overrides);
			return EXIT_OK;
		default:
			free(overrides);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		free(overrides);
		return usage_error("run", "expects one pipeline file (see pipectl run --help)");
	}
	s = config_load(argv[optind], &d);
	if (!s) {
		diags_print(&d, stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	g = dag_build(s, &d);
	if (!g) {
		diags_print(&d, stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	params = effective_params(s, overrides, n_over, &err);
	if (!params) {
		rc = usage_error("run", "%s", err);
		goto out;
	}
	state_path = state_path_for(opt_state, s->path);
	rc = run_spec(s, g, params, state_path, quiet, -1, NULL, 0, NULL);
out:
	json_decref(params);
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	free(err);
	free(state_path);
	free(overrides);
	log_free_secrets();
	return rc;
}

static const struct option replay_opts[] = {
	{ "help", no_argument, NULL, 'h' },
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
	char *state_path = NULL, *err = NULL;
	struct state *st = NULL;
	struct run_row rr;
	bool have_rr = false;
	struct dlq_row *rows = NULL;
	struct diags d = { 0 };
	struct spec *s = NULL;
	struct dag *g = NULL;
	json_t *params = NULL, *payloads = json_array();
	const char *stage = NULL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:f:qh", replay_opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			printf("usage: pipectl dlq replay RUN [--stage ID] [-f FILE | --state DB] [-q]\n");
			json_decref(payloads);
			return EXIT_OK;
		case 's': opt_state = optarg; break;
		case 'f': opt_file = optarg; break;
		case 'S': opt_stage = optarg; break;
		case 'q': quiet = true; log_set_level(LOG_WARN); break;
		default: json_decref(payloads); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		json_decref(payloads);
		return usage_error("dlq replay", "expects one run id");
	}
	{
		char *end;
		long long v = strtoll(argv[optind], &end, 10);
		if (*end || v <= 0) {
			json_decref(payloads);
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
	if ((i = state_run_get(st, run, &rr)) <= 0) {
		rc = i < 0 ? EXIT_STATE : usage_error("dlq replay", "no run %lld", (long long)run);
		goto out;
	}
	have_rr = true;
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
		p = json_loads(rows[i].payload, JSON_DECODE_ANY, NULL);
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
	log_info("replaying %zu dead letters of run %lld through stage %s",
	         json_array_size(payloads), (long long)run, stage);
	/* The state database is opened again by the run. */
	state_close(st);
	st = NULL;
	rc = run_spec(s, g, params, state_path, quiet, idx, payloads, 0, &new_run);
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
	free(state_path);
	log_free_secrets();
	return rc;
}

/* ------------------------------------------------------------ resume */

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

void resume_plan_print(struct state *st, const struct spec *s, const struct dag *g,
                       int64_t run)
{
	struct stage_row *rows = NULL;
	int n = state_stages_list(st, run, &rows), i;
	bool *done = xcalloc(s->n_stages, sizeof(*done));
	enum resume_action *act = xcalloc(s->n_stages, sizeof(*act));
	size_t k;

	for (i = 0; i < n; i++) {
		int idx = spec_stage_index(s, rows[i].stage);
		if (idx >= 0 && rows[i].status == ST_SUCCEEDED)
			done[idx] = true;
	}
	engine_resume_plan(g, done, act);
	printf("resume of run %lld would:\n", (long long)run);
	for (k = 0; k < g->n; k++) {
		size_t x = g->order[k];
		const struct stage_spec *sp = &s->stages[x];
		int64_t j = state_journal_count(st, run, sp->id);
		printf("  %-20s %-7s", sp->id, act[x] == RESUME_SKIP ? "skip" :
		       act[x] == RESUME_REPLAY ? "replay" : "run");
		if (act[x] == RESUME_SKIP)
			printf(" succeeded; nothing downstream needs its records");
		else if (act[x] == RESUME_REPLAY)
			printf(" succeeded; run again for what follows");
		else
			printf(" did not finish");
		if (sp->type == STAGE_FETCH && act[x] != RESUME_SKIP && j > 0)
			printf("; %lld response%s from the journal", (long long)j, j == 1 ? "" : "s");
		printf("\n");
	}
	stage_rows_free(rows, n);
	free(done);
	free(act);
}

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
	char *state_path = NULL, *err = NULL, *text = NULL;
	long pid = 0;
	struct state *st = NULL;
	struct run_row rr;
	bool have_rr = false;
	struct diags d = { 0 };
	struct spec *s = NULL;
	struct dag *g = NULL;
	json_t *params = NULL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:f:qvh", resume_opts, NULL)) != -1) {
		switch (c) {
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
			       "[-f FILE | --state DB] [-q] [-v] [--log-json]\n");
			return EXIT_OK;
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1 || (argc - optind == 1) == last)
		return usage_error("resume", "expects a run id or --last");
	if (!last) {
		char *end;
		long long v = strtoll(argv[optind], &end, 10);
		if (*end || v <= 0)
			return usage_error("resume", "invalid run id \"%s\"", argv[optind]);
		run = v;
	}
	state_path = state_path_for(opt_state, opt_file);
	st = state_open(state_path, false, &err);
	if (!st) {
		log_error("%s", err);
		rc = EXIT_STATE;
		goto out;
	}
	if (last && !(run = last_resumable(st))) {
		printf("no run to resume\n");
		goto out;
	}
	if ((found = state_run_get(st, run, &rr)) <= 0) {
		rc = found < 0 ? EXIT_STATE : usage_error("resume", "no run %lld", (long long)run);
		goto out;
	}
	have_rr = true;
	if (rr.status == ST_SUCCEEDED) {
		printf("run %lld already succeeded: nothing to resume\n", (long long)run);
		goto out;
	}
	if (state_run_source(st, run, &text, &pid) < 0) {
		log_error("%s", state_errmsg(st));
		rc = EXIT_STATE;
		goto out;
	}
	if (rr.status == ST_RUNNING && pid > 0 && pid != (long)getpid() &&
	    (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
		rc = usage_error("resume", "run %lld is still running (pid %ld)", (long long)run, pid);
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
	if (dry) {
		resume_plan_print(st, s, g, run);
		goto out;
	}
	params = json_loads(rr.params, 0, NULL);
	if (!params)
		params = json_object();
	state_close(st);
	st = NULL;
	rc = run_spec(s, g, params, state_path, quiet, -1, NULL, run, NULL);
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
	free(state_path);
	log_free_secrets();
	return rc;
}
