/*
 * option_ctx: the state of one read of a pipeline file, shared by config.c
 * (the top level) and option.c (the readers and the walker). Private to
 * those two: the stage kinds see struct opt_ctx as opaque (option.h).
 */
#ifndef PIPECTL_OPTION_CTX_H
#define PIPECTL_OPTION_CTX_H

#include <stdbool.h>
#include <jansson.h>
#include "base/diag.h"
#include "core/spec.h"
#include "core/yaml.h"
#include "expr/expr.h"

/* One checked expression: text -> outcome (err NULL when it compiled;
 * known once done). */
struct expr_check {
	bool is_template;
	char *src;
	char *err;
	size_t err_offset;
	bool done;
};

/* A diagnostic that depends on whether an expression compiles. The file's
 * expressions are compiled together once it has been read (libjq compiles
 * its builtins per compile), so these wait until then and take the place
 * in the list of diagnostics they would have had (at). */
enum expr_use_kind {
	USE_JQ,                        /* "invalid jq expression in ..." */
	USE_TEMPLATE,                  /* "invalid template in ...", at its "${" */
	USE_NO_RECORD,                 /* msg at pos, unless the text does not compile */
};

struct expr_use {
	enum expr_use_kind kind;
	size_t check;                  /* index in checks */
	size_t at;                     /* the number of diagnostics before it */
	struct pos pos;                /* USE_JQ, USE_NO_RECORD */
	struct ynode node;             /* USE_TEMPLATE: the scalar (kids NULL, s a copy) */
	char *text;                    /* the name or label; USE_NO_RECORD: the message */
};

struct opt_ctx {
	struct spec *s;
	struct diags *d;
	struct ytext text;             /* s->text, with its line index */
	struct expr_check *checks;
	size_t n_checks, cap_checks;
	struct expr_use *uses;         /* waiting for the compile of the checks */
	size_t n_uses, cap_uses;
	json_t *run;                   /* {"id":0,"pipeline":name} */
	struct expr_scope scope;
	const char **role;             /* per stage: the fetch/transform/load key read
	                                  (a kind's role string), NULL if none */
	const char **roles;            /* every role, in registry order */
	size_t n_roles;
	const char **stage_keys;       /* the keys a stage may have: roles and common */
	struct pos *needs_key;         /* per stage: the needs: key (line 0 if absent) */
	bool *needs_bad;               /* per stage: needs: had errors of its own */
	size_t stage;                  /* the stage being read */
};

static inline struct pos cpos(const struct opt_ctx *c, const struct ynode *n)
{
	return ynode_pos(&c->text, n);
}

/* Reports what waits for the file's expressions to compile (see struct
 * expr_use), then frees what the readers cached in c (not c, not the
 * spec). */
void opt_ctx_release(struct opt_ctx *c);

#endif
