/*
 * report: what the commands print about runs (see report.c).
 */
#ifndef PIPECTL_REPORT_H
#define PIPECTL_REPORT_H

#include <stdint.h>

struct spec;
struct dag;
struct state;
struct engine;

/* Prints to stderr each stage's counts of run run_id, and where the data
 * of the loads that succeeded went and how to look at it (a
 * run_summary_fn). Everything is borrowed. */
void report_summary(const struct spec *s, const struct dag *g, struct state *st,
                    struct engine *e, int64_t run_id);

/* Prints, stage by stage, what `pipectl resume RUN` would do. */
void resume_plan_print(struct state *st, const struct spec *s, const struct dag *g,
                       int64_t run);

#endif
