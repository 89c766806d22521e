/*
 * report: what the commands print about runs: the end-of-run summary (each
 * stage's counts, where the data went and how to look at it) and the plan
 * of a resume.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/report.h"
#include "core/spec.h"
#include "core/dag.h"
#include "core/engine.h"
#include "expr/expr.h"
#include "base/log.h"
#include "net/request.h"
#include "store/state.h"
#include "base/util.h"

void report_summary(const struct spec *s, const struct dag *g, struct state *st,
                    struct engine *e, int64_t run_id)
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
	/* Where the data went, and how to look at it: the sink kinds say. */
	for (i = 0; i < n; i++) {
		int idx = spec_stage_index(s, rows[i].stage);
		const struct stage_spec *sp;
		if (idx < 0 || rows[i].status != ST_SUCCEEDED)
			continue;
		sp = &s->stages[idx];
		if (sp->kind->describe)
			sp->kind->describe(sp, e, st, s, (long long)rows[i].stats.records_out, stderr);
	}
	(void)g;
	stage_rows_free(rows, n);
}

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
		int64_t dg = state_journal_count_digests(st, run, sp->id);
		printf("  %-20s %-7s", sp->id, act[x] == RESUME_SKIP ? "skip" :
		       act[x] == RESUME_REPLAY ? "replay" : "run");
		if (act[x] == RESUME_SKIP)
			printf(" succeeded; nothing downstream needs its records");
		else if (act[x] == RESUME_REPLAY)
			printf(" succeeded; run again for what follows");
		else
			printf(" did not finish");
		if (dg < 0)
			dg = 0;
		if (sp->kind->journaled && act[x] != RESUME_SKIP && j - dg > 0)
			printf("; %lld response%s from the journal", (long long)(j - dg),
			       j - dg == 1 ? "" : "s");
		if (sp->kind->journaled && act[x] != RESUME_SKIP && dg > 0)
			printf("; %lld fetched again (a body over %d KiB is journaled as its "
			       "digest only)", (long long)dg, REQUEST_JOURNAL_MAX_BODY / 1024);
		printf("\n");
	}
	stage_rows_free(rows, n);
	free(done);
	free(act);
}
