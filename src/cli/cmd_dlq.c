/*
 * cmd_dlq: `pipectl dlq list [RUN]` shows dead letters (records or requests
 * that failed for good in a stage with on_error: dlq); `pipectl dlq replay
 * RUN` runs them again through their stage and everything downstream of it,
 * as a new run, and marks those that went through (cmd_replay.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cli/cmd.h"
#include "base/jsonw.h"
#include "store/state.h"
#include "base/util.h"

struct dlq_opts {
	const char *state, *file, *stage;
	bool json, all;
};

static const struct option dlq_long[] = {
	{ "state", required_argument, NULL, 's' },
	{ "file", required_argument, NULL, 'f' },
	{ "stage", required_argument, NULL, 'S' },
	{ "json", no_argument, NULL, 'J' },
	{ "all", no_argument, NULL, 'a' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse(int argc, char **argv, struct dlq_opts *o, int64_t *run)
{
	int c;

	memset(o, 0, sizeof(*o));
	*run = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:f:h", dlq_long, NULL)) != -1) {
		switch (c) {
		case 's': o->state = optarg; break;
		case 'f': o->file = optarg; break;
		case 'S': o->stage = optarg; break;
		case 'J': o->json = true; break;
		case 'a': o->all = true; break;
		case 'h':
			printf("usage: pipectl dlq list [RUN] [--stage ID] [--all] [-f FILE | --state DB] [--json]\n"
			       "       pipectl dlq replay RUN [--stage ID] [-f FILE | --state DB]\n");
			return 1;
		default: return -1;
		}
	}
	if (argc - optind > 1) {
		usage_error("dlq", "expects at most one run id");
		return -1;
	}
	if (argc - optind == 1) {
		char *end;
		long long v = strtoll(argv[optind], &end, 10);
		if (*end || v <= 0) {
			usage_error("dlq", "invalid run id \"%s\"", argv[optind]);
			return -1;
		}
		*run = v;
	}
	return 0;
}

static int dlq_list(int argc, char **argv)
{
	struct dlq_opts o;
	int64_t run;
	int rc = parse(argc, argv, &o, &run), n, i, shown = 0;
	char *path, *err = NULL;
	struct state *st;
	struct dlq_row *rows = NULL;
	json_t *arr = NULL;

	if (rc)
		return rc > 0 ? EXIT_OK : EXIT_USAGE;
	path = state_path_for(o.state, o.file);
	st = state_open(path, true, &err);
	free(path);
	if (!st) {
		fprintf(stderr, "pipectl: %s\n", err);
		free(err);
		return EXIT_STATE;
	}
	if (o.file) {
		char *scope = cmd_scope(st, "dlq list", o.file, &rc);
		struct run_row rr;
		int found = 0;
		if (scope && run > 0 && (found = state_run_get(st, run, &rr)) > 0) {
			rc = cmd_scope_check("dlq list", scope, o.file, &rr);
			run_row_free(&rr);
		}
		free(scope);
		if (rc != 0 || found < 0) {
			if (found < 0)
				fprintf(stderr, "pipectl: %s\n", state_errmsg(st));
			state_close(st);
			return found < 0 ? EXIT_STATE : rc;
		}
	}
	n = state_dlq_list(st, run, o.stage, &rows);
	if (n < 0) {
		fprintf(stderr, "pipectl: %s\n", state_errmsg(st));
		state_close(st);
		return EXIT_STATE;
	}
	if (o.json)
		arr = json_array();
	else
		printf("%-6s %-6s %-20s %-20s %s\n", "ID", "RUN", "STAGE", "CREATED", "ERROR / PAYLOAD");
	for (i = 0; i < n; i++) {
		const struct dlq_row *r = &rows[i];
		char t[32];
		if (r->replayed && !o.all)
			continue;
		shown++;
		if (o.json) {
			json_t *payload = json_loads(r->payload, JSON_DECODE_ANY, NULL);
			json_t *att = json_loads(r->attempts, 0, NULL);
			json_array_append_new(arr, json_pack("{s:I, s:I, s:s, s:o, s:s, s:o, s:f, s:b}",
				"id", (json_int_t)r->id, "run_id", (json_int_t)r->run_id,
				"stage", r->stage, "payload", payload ? payload : json_string(r->payload),
				"error", r->error, "attempts", att ? att : json_array(),
				"created", r->created, "replayed", r->replayed));
			continue;
		}
		fmt_time(r->created, t, sizeof(t));
		printf("%-6lld %-6lld %-20s %-20s %s%s\n", (long long)r->id, (long long)r->run_id,
		       r->stage, t, r->error, r->replayed ? " (replayed)" : "");
		printf("%-6s %-6s %-20s %-20s %.200s\n", "", "", "", "", r->payload);
	}
	if (o.json) {
		char *s = jsonw_dumps(arr);
		printf("%s\n", s);
		free(s);
		json_decref(arr);
	} else if (shown == 0) {
		printf("(no dead letters)\n");
	}
	dlq_rows_free(rows, n);
	state_close(st);
	return EXIT_OK;
}

int cmd_dlq(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("dlq", "expects list or replay (see pipectl dlq --help)");
	if (strcmp(argv[1], "list") == 0)
		return dlq_list(argc - 1, argv + 1);
	if (strcmp(argv[1], "replay") == 0)
		return cmd_dlq_replay(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		printf("usage: pipectl dlq list [RUN] [--stage ID] [--all] [-f FILE | --state DB] [--json]\n"
		       "       pipectl dlq replay RUN [--stage ID] [-f FILE | --state DB]\n");
		return EXIT_OK;
	}
	return usage_error("dlq", "unknown subcommand \"%s\" (expected list or replay)", argv[1]);
}
