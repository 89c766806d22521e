/*
 * expr: the one place that talks to libjq. Programs are compiled once and run
 * per record; `${...}` templates compile to a single jq string-interpolation
 * program. All jansson <-> jv conversion lives in expr.c.
 *
 * Scope available to every expression and template:
 *   .          the current record (or document, for fetch `records:`)
 *   params     the run's parameters (object), e.g. params.country
 *   env        the process environment (jq builtin), e.g. env.API_KEY
 *   run        {"id": <run id>, "pipeline": <name>, "dir": <absolute dir of the pipeline file>,
 *               "started": "<UTC ISO 8601>", "date": "<YYYY-MM-DD>"} (the run's creation)
 * They come with each run of a program, so one compiled program serves every
 * scope.
 *
 * Compiling is shared process-wide: each distinct text (program or template)
 * is compiled once, whatever the scope, and the texts registered with
 * expr_prepare() before the next compile are compiled together, paying
 * libjq's compile of its builtins once for all of them. Programs compiled
 * together share one jq_state, which is safe because each run ends before
 * expr_run/expr_eval1/expr_render returns; it also means that expr is for
 * one thread: compile, run and free on the same one (jq 1.6's values are
 * not thread-safe either).
 *
 * Numbers: jq 1.6 computes with doubles. Integral results come back as JSON
 * integers and 19.99 stays 19.99. An integer beyond 2^53 that a program passes
 * through unchanged (a projection like {id, big}) is restored exactly; one
 * that takes part in arithmetic gets jq's double result.
 */
#ifndef PIPECTL_EXPR_H
#define PIPECTL_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct expr;

/* Runs after which a handle compiled with others gets a jq program of its
 * own with its scope bound (one more compile, then the per-run dispatch of
 * the shared program is saved on every later run). */
#define EXPR_HOT_RUNS 10000

/* The bindings (params, run) used when compiling. Borrowed, not stolen. */
struct expr_scope {
	const json_t *params;          /* object, may be NULL (= {}) */
	const json_t *run;             /* object, may be NULL (= {}) */
};

/*
 * Compiles a jq program. On error returns NULL and sets *err to a malloc'd
 * message with jq's own words (e.g. "syntax error, unexpected INVALID_CHARACTER
 * (Unix shell quoting issues?) at <top-level>, line 1"). Caller frees *err.
 */
struct expr *expr_compile(const char *src, const struct expr_scope *scope, char **err);

/*
 * Compiles a template string (into one jq program): literal text with
 * ${jq expression} parts.
 * "$${" is a literal "${". Non-string results are JSON-encoded (jq tostring).
 * On a template that does not parse (unterminated "${", empty "${}") or an
 * expression that does not compile: NULL, *err set, and *err_offset the byte
 * offset in src of the offending "${" (so callers can point at a column).
 */
struct expr *expr_template(const char *src, const struct expr_scope *scope,
                           char **err, size_t *err_offset);

/* True when the template src contains no ${...} (constant string). */
bool expr_template_is_const(const char *src);

/*
 * Runs e on input (borrowed). Each output is appended (stolen) to out, a
 * jansson array. Returns 0, or -1 with *err set (malloc'd; jq's error text,
 * e.g. 'Cannot index number with "x"'). Outputs appended before an error
 * stay in out.
 */
int expr_run(struct expr *e, const json_t *input, json_t *out, char **err);

/*
 * Runs e expecting exactly one output; returns it (new reference) or NULL
 * with *err set. Zero outputs and more than one output are errors.
 */
json_t *expr_eval1(struct expr *e, const json_t *input, char **err);

/* Runs a template; returns a malloc'd string or NULL with *err set. */
char *expr_render(struct expr *e, const json_t *input, char **err);

/* Frees the handle e (the compiled program stays cached); NULL is fine. */
void expr_free(struct expr *e);

/* Registers src (a template when tmpl, else a jq program) to be compiled
 * with the others registered when a compile is next needed. Nothing is
 * reported here: errors come from expr_check/expr_compile/expr_template. */
void expr_prepare(const char *src, bool tmpl);

/* Checks that src (a template when tmpl, else a jq program) compiles, from
 * the cache or compiling it (with everything registered). Returns 0, or -1
 * with *err (malloc'd; the message expr_compile/expr_template give) and,
 * for a template, *err_offset (may be NULL). */
int expr_check(const char *src, bool tmpl, char **err, size_t *err_offset);

/* The number of programs libjq compiled in this process (for tests). */
unsigned long expr_compiles(void);

/* Frees the cached programs no handle holds (for tests, and at exit). */
void expr_cache_clear(void);
/* Turns the fast path for simple programs (expr/project.h) on (the
 * default) or off for the programs compiled after it. For tests, which
 * compare it with jq. */
void expr_set_fast_path(bool on);

/* Names of env variables a template or program reads via env.NAME or
 * $ENV.NAME (best effort), appended to names (json array of strings). Used
 * to redact secret values from logs and state. */
void expr_env_refs(const char *src, json_t *names);

/* Names of env variables src (a ${...} template when tmpl, else a jq
 * program) reads without giving a default: a reference followed by "//" in
 * its ${...} part (or program), as in ${env.X // ""}, has one. Appended to
 * names (json array of strings), each once. Best effort, like
 * expr_env_refs. */
void expr_env_undefaulted(const char *src, bool tmpl, json_t *names);

/* The byte offset in src (a template when tmpl, else a jq program) of the
 * first reference to the input record (".id" in "${.id}"), or (size_t)-1
 * when there is none. Conservative: "." in function arguments (map(.x)) or
 * after a pipe (params | .x) is not counted. */
size_t expr_input_ref(const char *src, bool tmpl);

#endif
