/*
 * cmd_status: `pipectl status [RUN]` and `pipectl runs`: read the state
 * database (read-only) and show runs and their stages as a table or JSON.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "cli/cmd.h"
#include "cli/report.h"
#include "core/spec.h"
#include "core/dag.h"
#include "base/jsonw.h"
#include "store/state.h"
#include "base/util.h"

struct read_opts {
	const char *state;
	const char *file;
	const char *stage;
	bool json;
	int limit;
};

static const struct option read_long[] = {
	{ "state", required_argument, NULL, 's' },
	{ "file", required_argument, NULL, 'f' },
	{ "json", no_argument, NULL, 'J' },
	{ "limit", required_argument, NULL, 'n' },
	{ "stage", required_argument, NULL, 'S' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Parses common options; returns the index of the first operand, or -1 on
 * error (message printed), or -2 after --help. */
static int parse_read_opts(const char *cmd, int argc, char **argv, struct read_opts *o,
                           const char *synopsis)
{
	int c;
	char *end;

	memset(o, 0, sizeof(*o));
	o->limit = 20;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:f:n:h", read_long, NULL)) != -1) {
		switch (c) {
		case 's': o->state = optarg; break;
		case 'f': o->file = optarg; break;
		case 'J': o->json = true; break;
		case 'S': o->stage = optarg; break;
		case 'n':
			o->limit = (int)strtol(optarg, &end, 10);
			if (*end || o->limit <= 0) {
				usage_error(cmd, "--limit expects a positive integer");
				return -1;
			}
			break;
		case 'h': printf("usage: pipectl %s\n", synopsis); return -2;
		default: return -1;
		}
	}
	return optind;
}

/* Opens the state database read-only; with -f, scoped to that pipeline
 * (*scope set to its name, malloc'd). NULL with *rc set on failure. */
static struct state *open_ro(const char *cmd, const struct read_opts *o, char **scope,
                             int *rc)
{
	char *path = state_path_for(o->state, o->file), *err = NULL;
	struct state *st = state_open(path, true, &err);

	*scope = NULL;
	if (!st) {
		fprintf(stderr, "pipectl: %s\n", err);
		free(err);
		*rc = EXIT_STATE;
	} else if (o->file && !(*scope = cmd_scope(st, cmd, o->file, rc))) {
		state_close(st);
		st = NULL;
	}
	free(path);
	return st;
}

static double duration(double a, double b)
{
	return (a > 0 && b >= a) ? b - a : 0;
}

static json_t *run_json(const struct run_row *r)
{
	json_t *params = json_loads(r->params, 0, NULL);

	return json_pack("{s:I, s:s, s:s, s:s, s:o, s:s, s:f, s:o, s:o}",
	                 "id", (json_int_t)r->id, "pipeline", r->pipeline, "path", r->path,
	                 "hash", r->hash, "params", params ? params : json_object(),
	                 "status", state_status_name(r->status), "started", r->started,
	                 "finished", r->finished > 0 ? json_real(r->finished) : json_null(),
	                 "error", r->error ? json_string(r->error) : json_null());
}

static void print_json(json_t *v)
{
	char *s = jsonw_dumps(v);
	printf("%s\n", s);
	free(s);
	json_decref(v);
}

/* The reasons an attempt waits, in the order they are shown. */
enum wait_reason { W_BACKOFF, W_RETRY_AFTER, W_RATE, W_CONCURRENCY, W_BREAKER, W_N };

static const char *const wait_keys[W_N] = {
	"backoff", "retry_after", "rate", "concurrency", "breaker"
};
static const char *const wait_names[W_N] = {
	"backoff", "retry-after", "rate", "concurrency", "breaker"
};

/* a's waits by reason into w. */
static void attempt_waits(const struct attempt_row *a, double w[W_N])
{
	w[W_BACKOFF] = a->wait_backoff;
	w[W_RETRY_AFTER] = a->wait_retry_after;
	w[W_RATE] = a->wait_rate;
	w[W_CONCURRENCY] = a->wait_concurrency;
	w[W_BREAKER] = a->wait_breaker;
}

/* {"backoff": s, ...} for w (a new reference), with "total" when total >= 0. */
static json_t *waits_json(const double w[W_N], double total)
{
	json_t *o = json_object();
	int i;

	for (i = 0; i < W_N; i++)
		json_object_set_new(o, wait_keys[i], json_real(w[i]));
	if (total >= 0)
		json_object_set_new(o, "total", json_real(total));
	return o;
}

static json_t *attempt_json(const struct attempt_row *a)
{
	double w[W_N];

	attempt_waits(a, w);
	return json_pack("{s:s, s:i, s:s, s:s, s:I, s:o, s:f, s:f, s:f, s:o, s:s}",
	                 "stage", a->stage, "attempt", a->attempt, "method", a->method,
	                 "url", a->url, "http_status", (json_int_t)a->http_status,
	                 "error", a->error ? json_string(a->error) : json_null(),
	                 "started", a->started, "duration", a->duration, "wait", a->wait,
	                 "waits", waits_json(w, -1), "fingerprint", a->fingerprint);
}

/* The reasons with a wait, joined by "+" into buf ("-" when none). Waits
 * below 5ms are shown as 0.00s, so they do not name a reason either. */
static void wait_reasons(const double w[W_N], char *buf, size_t sz)
{
	size_t n = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < W_N; i++) {
		if (!(w[i] >= 0.005))
			continue;
		n += (size_t)snprintf(buf + n, n < sz ? sz - n : 0, "%s%s", n ? "+" : "",
		                      wait_names[i]);
	}
	if (n == 0)
		snprintf(buf, sz, "-");
}

/* The attempts of one stage (or all) and the run's events. */
static int show_attempts(struct state *st, int64_t run, const char *stage, bool json)
{
	struct attempt_row *a = NULL;
	struct event_row *ev = NULL;
	int n = state_attempts_list(st, run, stage, &a), ne, i;
	double sum[W_N] = { 0 }, total = 0;

	if (n < 0)
		return -1;
	ne = state_events_list(st, run, &ev);
	if (ne < 0) {
		attempt_rows_free(a, n);
		return -1;
	}
	for (i = 0; i < n; i++) {
		double w[W_N];
		int k;
		attempt_waits(&a[i], w);
		for (k = 0; k < W_N; k++)
			sum[k] += w[k];
		total += a[i].wait;
	}
	if (json) {
		json_t *out = json_object(), *arr = json_array(), *evs = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(arr, attempt_json(&a[i]));
		for (i = 0; i < ne; i++)
			if (!stage || (ev[i].stage && strcmp(ev[i].stage, stage) == 0))
				json_array_append_new(evs, json_pack("{s:s?, s:s, s:s, s:f}",
				                      "stage", ev[i].stage, "kind", ev[i].kind,
				                      "message", ev[i].message, "at", ev[i].at));
		json_object_set_new(out, "attempts", arr);
		json_object_set_new(out, "waited", waits_json(sum, total));
		json_object_set_new(out, "events", evs);
		print_json(out);
	} else {
		printf("\nattempts of %s:\n", stage ? stage : "every stage");
		printf("  %-4s %-6s %8s  %-16s %8s  %s\n", "#", "STATUS", "WAITED", "FOR", "TOOK",
		       "REQUEST / ERROR");
		for (i = 0; i < n; i++) {
			char code[16], why[96];
			double w[W_N];
			if (a[i].http_status)
				snprintf(code, sizeof(code), "%ld", a[i].http_status);
			else
				snprintf(code, sizeof(code), "-");
			attempt_waits(&a[i], w);
			wait_reasons(w, why, sizeof(why));
			printf("  %-4d %-6s %7.2fs  %-16s %7.2fs  %s %s\n", a[i].attempt, code,
			       a[i].wait, why, a[i].duration, a[i].method, a[i].url);
			if (a[i].error)
				printf("  %-4s %-6s %8s  %-16s %8s  %s\n", "", "", "", "", "", a[i].error);
		}
		if (n == 0)
			printf("  (none)\n");
		else
			printf("  waited %.2fs in all: backoff %.2fs, retry-after %.2fs, rate %.2fs, "
			       "concurrency %.2fs, breaker %.2fs\n", total, sum[W_BACKOFF],
			       sum[W_RETRY_AFTER], sum[W_RATE], sum[W_CONCURRENCY], sum[W_BREAKER]);
		for (i = 0; i < ne; i++) {
			char t[32];
			if (stage && (!ev[i].stage || strcmp(ev[i].stage, stage) != 0))
				continue;
			fmt_time(ev[i].at, t, sizeof(t));
			printf("  %s %s: %s\n", t, ev[i].kind, ev[i].message);
		}
	}
	attempt_rows_free(a, n);
	event_rows_free(ev, ne);
	return 0;
}

int cmd_status(int argc, char **argv)
{
	struct read_opts o;
	struct state *st;
	struct run_row run;
	struct stage_row *rows = NULL;
	int64_t id = 0;
	int first = parse_read_opts("status", argc, argv, &o,
	                            "status [RUN] [--stage ID] [-f FILE | --state DB] [--json]");
	int rc = EXIT_OK, n, i, found;
	char t1[32], t2[32], *scope = NULL;

	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	if (argc - first > 1)
		return usage_error("status", "expects at most one run id");
	if (argc - first == 1) {
		char *end;
		long long v = strtoll(argv[first], &end, 10);
		if (*end || v <= 0)
			return usage_error("status", "invalid run id \"%s\"", argv[first]);
		id = v;
	}
	st = open_ro("status", &o, &scope, &rc);
	if (!st)
		return rc;
	found = state_run_get(st, id, &run);
	if (found <= 0) {
		if (found < 0)
			fprintf(stderr, "pipectl: %s\n", state_errmsg(st));
		else if (id)
			fprintf(stderr, "pipectl status: no run %lld\n", (long long)id);
		else if (scope)
			fprintf(stderr, "pipectl status: no runs of pipeline \"%s\" recorded yet\n",
			        scope);
		else
			fprintf(stderr, "pipectl status: no runs recorded yet\n");
		state_close(st);
		free(scope);
		return found < 0 ? EXIT_STATE : EXIT_USAGE;
	}
	rc = cmd_scope_check("status", scope, o.file, &run);
	free(scope);
	if (rc != EXIT_OK) {
		run_row_free(&run);
		state_close(st);
		return rc;
	}
	n = state_stages_list(st, run.id, &rows);
	if (n < 0) {
		fprintf(stderr, "pipectl: %s\n", state_errmsg(st));
		run_row_free(&run);
		state_close(st);
		return EXIT_STATE;
	}
	if (o.stage) {
		for (i = 0; i < n && strcmp(rows[i].stage, o.stage) != 0; i++)
			;
		if (i == n) {
			fprintf(stderr, "pipectl status: run %lld has no stage \"%s\"\n",
			        (long long)run.id, o.stage);
			rc = EXIT_USAGE;
		} else if (show_attempts(st, run.id, o.stage, o.json) != 0) {
			fprintf(stderr, "pipectl: %s\n", state_errmsg(st));
			rc = EXIT_STATE;
		}
		stage_rows_free(rows, n);
		run_row_free(&run);
		state_close(st);
		return rc;
	}
	if (o.json) {
		json_t *out = json_object(), *stages = json_array();
		json_object_set_new(out, "run", run_json(&run));
		for (i = 0; i < n; i++) {
			const struct stage_row *r = &rows[i];
			json_array_append_new(stages, json_pack(
				"{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:o}",
				"stage", r->stage, "kind", r->kind, "status", state_status_name(r->status),
				"records_in", (json_int_t)r->stats.records_in,
				"records_out", (json_int_t)r->stats.records_out,
				"errors", (json_int_t)r->stats.errors,
				"requests", (json_int_t)r->stats.requests,
				"started", r->started > 0 ? json_real(r->started) : json_null(),
				"finished", r->finished > 0 ? json_real(r->finished) : json_null(),
				"error", r->error ? json_string(r->error) : json_null()));
		}
		json_object_set_new(out, "stages", stages);
		print_json(out);
	} else {
		fmt_time(run.started, t1, sizeof(t1));
		fmt_time(run.finished, t2, sizeof(t2));
		printf("run %lld  %s  %s\n", (long long)run.id, run.pipeline,
		       state_status_name(run.status));
		printf("  file      %s (sha256 %.12s)\n", run.path, run.hash);
		printf("  params    %s\n", run.params);
		printf("  started   %s\n", t1);
		if (run.finished > 0)
			printf("  finished  %s (%.2fs)\n", t2, duration(run.started, run.finished));
		if (run.error)
			printf("  error     %s\n", run.error);
		printf("\n%-20s %-12s %-11s %10s %10s %7s %9s %8s\n", "STAGE", "KIND", "STATUS",
		       "IN", "OUT", "ERRORS", "REQUESTS", "TIME");
		for (i = 0; i < n; i++) {
			const struct stage_row *r = &rows[i];
			char tm[32] = "-";
			if (r->finished > 0)
				snprintf(tm, sizeof(tm), "%.2fs", duration(r->started, r->finished));
			printf("%-20s %-12s %-11s %10lld %10lld %7lld %9lld %8s\n", r->stage, r->kind,
			       state_status_name(r->status), (long long)r->stats.records_in,
			       (long long)r->stats.records_out, (long long)r->stats.errors,
			       (long long)r->stats.requests, tm);
		}
		for (i = 0, found = 0; i < n; i++) {
			if (!rows[i].error)
				continue;
			if (!found++)
				printf("\nerrors:\n");
			printf("  %s: %s\n", rows[i].stage, rows[i].error);
		}
		{
			int64_t j = state_journal_count(st, run.id, NULL);
			if (j >= 0)
				printf("\njournal: %lld response%s recorded\n", (long long)j,
				       j == 1 ? "" : "s");
		}
		if (run.status != ST_SUCCEEDED) {
			/* Which stages a resume would skip, replay or run. */
			struct diags d = { 0 };
			struct spec *sp = config_load(run.path, &d);
			struct dag *g = sp ? dag_build(sp, &d) : NULL;
			printf("\n");
			if (g)
				resume_plan_print(st, sp, g, run.id);
			else
				printf("(cannot read %s to plan a resume)\n", run.path);
			dag_free(g);
			spec_free(sp);
			diags_free(&d);
		}
	}
	stage_rows_free(rows, n);
	run_row_free(&run);
	state_close(st);
	return rc;
}

int cmd_runs(int argc, char **argv)
{
	struct read_opts o;
	struct state *st;
	struct run_row *rows = NULL;
	int first = parse_read_opts("runs", argc, argv, &o,
	                            "runs [-n LIMIT] [-f FILE | --state DB] [--json]");
	int rc = EXIT_OK, n, i;
	char *scope = NULL;

	if (first == -2)
		return EXIT_OK;
	if (first < 0)
		return EXIT_USAGE;
	if (argc - first > 0)
		return usage_error("runs", "takes no operands");
	st = open_ro("runs", &o, &scope, &rc);
	if (!st)
		return rc;
	free(scope);
	n = state_runs_list(st, o.limit, &rows);
	if (n < 0) {
		fprintf(stderr, "pipectl: %s\n", state_errmsg(st));
		state_close(st);
		return EXIT_STATE;
	}
	if (o.json) {
		json_t *arr = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(arr, run_json(&rows[i]));
		print_json(arr);
	} else {
		printf("%-6s %-24s %-11s %-20s %9s\n", "ID", "PIPELINE", "STATUS", "STARTED",
		       "DURATION");
		for (i = 0; i < n; i++) {
			char t[32], d[32] = "-";
			fmt_time(rows[i].started, t, sizeof(t));
			if (rows[i].finished > 0)
				snprintf(d, sizeof(d), "%.2fs",
				         duration(rows[i].started, rows[i].finished));
			printf("%-6lld %-24s %-11s %-20s %9s\n", (long long)rows[i].id,
			       rows[i].pipeline, state_status_name(rows[i].status), t, d);
		}
	}
	run_rows_free(rows, n);
	state_close(st);
	return rc;
}

/* pipectl gc --older-than AGE: deletes finished runs that ended before
 * now - AGE, with their stages, attempts, journal, dead letters and events.
 * AGE is a duration (90m, 12h) or days (30d). */
int cmd_gc(int argc, char **argv)
{
	const char *state = NULL, *file = NULL, *age = NULL;
	double secs = 0;
	int i, rc = EXIT_OK;
	char *path, *err = NULL;
	struct state *st;
	int64_t deleted = 0;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((strcmp(a, "--older-than") == 0) && i + 1 < argc)
			age = argv[++i];
		else if (strncmp(a, "--older-than=", 13) == 0)
			age = a + 13;
		else if ((strcmp(a, "--state") == 0 || strcmp(a, "-s") == 0) && i + 1 < argc)
			state = argv[++i];
		else if ((strcmp(a, "--file") == 0 || strcmp(a, "-f") == 0) && i + 1 < argc)
			file = argv[++i];
		else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			printf("usage: pipectl gc --older-than AGE [-f FILE | --state DB]\n");
			return EXIT_OK;
		} else
			return usage_error("gc", "unexpected argument \"%s\"", a);
	}
	if (!age)
		return usage_error("gc", "expects --older-than AGE (e.g. 30d, 12h)");
	{
		size_t n = strlen(age);
		char *end;
		if (n > 1 && age[n - 1] == 'd') {
			secs = strtod(age, &end) * 86400;
			if (end != age + n - 1 || secs <= 0)
				secs = -1;
		} else if (parse_duration(age, &secs) != 0) {
			secs = -1;
		}
		if (secs < 0)
			return usage_error("gc", "invalid age \"%s\": expected a number followed by "
			                   "ms, s, m, h or d", age);
	}
	path = state_path_for(state, file);
	if (access(path, F_OK) != 0) {
		fprintf(stderr, "pipectl: no state database at %s\n", path);
		free(path);
		return EXIT_STATE;
	}
	st = state_open(path, false, &err);
	free(path);
	if (!st) {
		fprintf(stderr, "pipectl: %s\n", err);
		free(err);
		return EXIT_STATE;
	}
	if (file) {
		char *scope = cmd_scope(st, "gc", file, &rc);
		if (!scope) {
			state_close(st);
			return rc;
		}
		free(scope);
	}
	if (state_gc(st, now_wall() - secs, &deleted) != 0) {
		fprintf(stderr, "pipectl: %s\n", state_errmsg(st));
		rc = EXIT_STATE;
	} else {
		printf("deleted %lld run%s older than %s\n", (long long)deleted,
		       deleted == 1 ? "" : "s", age);
	}
	state_close(st);
	return rc;
}
