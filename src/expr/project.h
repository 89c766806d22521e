/*
 * project: an exact fast path for simple jq programs, evaluated directly on
 * jansson values without libjq. It understands a strict subset of jq:
 *
 *   .                      identity
 *   .a  .a.b  ."k"  .["k"]  .a["k"]  .a."k"    paths (no spaces inside)
 *   .[]  .items[]  .a.b[]                      iteration (arrays, objects)
 *   {a, "k", b: .c.d, "k": .x, c: .}           object construction (values are
 *                                              paths without iteration)
 *   T | T | ...                                a pipe of the above
 *
 * Anything else (keywords as names, escapes in strings, `?`, `..`, numbers,
 * functions, comments) is outside the subset: project_parse returns NULL
 * and jq runs the program. Every program the subset accepts is valid jq
 * with the same meaning.
 *
 * Results are what expr (jq 1.6 plus pipectl's number handling, expr.h)
 * gives for the same program and input. Where that needs jq's own words or
 * its double arithmetic (indexing or iterating a value of the wrong type,
 * numbers of magnitude 2^53 or more, strings that are not valid UTF-8),
 * project_run declines and the caller runs jq on that input.
 */
#ifndef PIPECTL_PROJECT_H
#define PIPECTL_PROJECT_H

#include <jansson.h>

struct project;

/* Parses src. Returns the program (caller frees with project_free), or
 * NULL when src is outside the subset. */
struct project *project_parse(const char *src);

/*
 * Runs p on input (borrowed; NULL is null). On success appends each output
 * (a new reference; parts of input are shared, not copied) to out and
 * returns 0. Returns -1, with out unchanged, when jq must decide for this
 * input (see above).
 */
int project_run(const struct project *p, const json_t *input, json_t *out);

void project_free(struct project *p);

#endif
