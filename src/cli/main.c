/*
 * main: command dispatch only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "core/stage.h"
#include "base/util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *synopsis;
};

static const struct command commands[] = {
	{ "run", cmd_run, "run FILE [-p NAME=VALUE]... [--state DB] [-q] [-v] [--log-json]" },
	{ "resume", cmd_resume, "resume RUN | --last [--dry-run] [--force] [-p NAME=VALUE]... [-f FILE | --state DB]" },
	{ "validate", cmd_validate, "validate FILE..." },
	{ "status", cmd_status, "status [RUN] [--stage ID] [-f FILE | --state DB] [--json]" },
	{ "runs", cmd_runs, "runs [-n LIMIT] [-f FILE | --state DB] [--json]" },
	{ "gc", cmd_gc, "gc --older-than AGE [-f FILE | --state DB]" },
	{ "dlq", cmd_dlq, "dlq list [RUN] [--stage ID] [--all] [-f FILE | --state DB] [--json]\n"
	                  "  pipectl dlq replay RUN [--stage ID] [-p NAME=VALUE]... [-f FILE | --state DB]" },
};

char *state_path_for(const char *opt_state, const char *pipeline_path)
{
	const char *env = getenv("PIPECTL_STATE");
	char *dir, *p;

	if (opt_state && *opt_state)
		return xstrdup(opt_state);
	if (env && *env)
		return xstrdup(env);
	if (!pipeline_path)
		return xstrdup(".pipectl/state.db");
	dir = path_dir(pipeline_path);
	p = path_join(dir, ".pipectl/state.db");
	free(dir);
	return p;
}

int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pipectl %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return EXIT_USAGE;
}

static void usage(FILE *out)
{
	size_t i;

	fprintf(out, "usage: pipectl COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < ARRAY_LEN(commands); i++)
		fprintf(out, "  pipectl %s\n", commands[i].synopsis);
	fprintf(out, "\n  pipectl --version | --help\n\nSee pipectl(1) and pipectl.yaml(5).\n");
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("pipectl %s\n", PACKAGE_VERSION);
		return EXIT_OK;
	}
	/* Not in the usage: every stage kind's option table as JSON, for the
	 * checks that the tables, the schema and pipectl.yaml(5) agree. */
	if (strcmp(argv[1], "kinds") == 0 && argc == 3 && strcmp(argv[2], "--json") == 0) {
		json_t *kinds = stage_kinds_json();
		int rc = json_dumpf(kinds, stdout, JSON_INDENT(2)) == 0 ? EXIT_OK : EXIT_USAGE;
		json_decref(kinds);
		putchar('\n');
		return rc;
	}
	for (i = 0; i < ARRAY_LEN(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "pipectl: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
