/*
 * cmd_scope: `-f FILE` names a pipeline, not only a state database. Every
 * pipeline in a directory shares .pipectl/state.db, so with -f a command
 * sees only the runs of the pipeline in FILE (by its `pipeline:` name).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "base/diag.h"
#include "core/spec.h"
#include "store/state.h"
#include "base/util.h"

/* True when a run's recorded path names file: the same text, or the same
 * file after resolving both (a run records the path as it was given). */
static bool same_file(const char *recorded, const char *file)
{
	char *a, *b;
	bool same;

	if (strcmp(recorded, file) == 0)
		return true;
	a = realpath(recorded, NULL);
	b = realpath(file, NULL);
	same = a && b && strcmp(a, b) == 0;
	free(a);
	free(b);
	return same;
}

/* Says which runs of file were recorded under another pipeline name (the
 * file's `pipeline:` changed since), since the scope leaves them out. */
static void note_renamed(struct state *st, const char *cmd, const char *file,
                         const char *name)
{
	struct run_row *rows = NULL;
	int n = state_runs_list(st, 0, &rows), i, j;

	for (i = 0; i < n; i++) {
		int count = 0;
		bool seen = false;
		if (strcmp(rows[i].pipeline, name) == 0 || !same_file(rows[i].path, file))
			continue;
		for (j = 0; j < i && !seen; j++)
			seen = strcmp(rows[j].pipeline, rows[i].pipeline) == 0 &&
			       same_file(rows[j].path, file);
		if (seen)
			continue;
		for (j = i; j < n; j++)
			count += strcmp(rows[j].pipeline, rows[i].pipeline) == 0 &&
			         same_file(rows[j].path, file);
		fprintf(stderr, "pipectl %s: note: %s now names its pipeline \"%s\"; %d run%s "
		        "recorded under its former name \"%s\" %s left out (newest: run %lld; "
		        "--state DB shows every run)\n",
		        cmd, file, name, count, count == 1 ? "" : "s", rows[i].pipeline,
		        count == 1 ? "is" : "are", (long long)rows[i].id);
	}
	run_rows_free(rows, n);
}

/*
 * With -f FILE (file not NULL), limits st to the runs of the pipeline FILE
 * defines (state_set_scope) and returns its name (malloc'd; caller frees);
 * notes runs of FILE recorded under a former name. Returns NULL when file
 * is NULL (no scope, *rc untouched), or when FILE does not load (its
 * diagnostics printed, *rc = EXIT_USAGE).
 */
char *cmd_scope(struct state *st, const char *cmd, const char *file, int *rc)
{
	struct diags d = { 0 };
	struct spec *s;
	char *name;

	if (!file)
		return NULL;
	s = config_load(file, &d);
	if (!s) {
		diags_print(&d, stderr);
		fprintf(stderr, "pipectl %s: -f %s: the pipeline file must load to name the "
		        "pipeline (use --state DB to read the database without it)\n", cmd, file);
		diags_free(&d);
		*rc = EXIT_USAGE;
		return NULL;
	}
	name = xstrdup(s->name);
	spec_free(s);
	diags_free(&d);
	state_set_scope(st, NULL);
	note_renamed(st, cmd, file, name);
	state_set_scope(st, name);
	return name;
}

/* Checks that run r belongs to scope (NULL: anything does). Returns 0, or
 * prints why not and returns EXIT_USAGE. */
int cmd_scope_check(const char *cmd, const char *scope, const char *file,
                    const struct run_row *r)
{
	if (!scope || strcmp(r->pipeline, scope) == 0)
		return 0;
	return usage_error(cmd, "run %lld is a run of pipeline \"%s\", not of \"%s\" (%s)",
	                   (long long)r->id, r->pipeline, scope, file);
}
