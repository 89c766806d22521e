/*
 * option: the table of options a stage kind reads from its part of a
 * pipeline file, and the walker that reads a YAML mapping through such a
 * table into the kind's own options struct.
 *
 * A kind declares, for each key: its type, where it goes (offsetof into the
 * kind's options struct), its default as text, its bounds or words, flags
 * and a one-line doc. The walker reports unknown keys (with a suggestion),
 * wrong types, values out of range and missing required keys, each at its
 * file:line:col, and checks ${...} templates and jq expressions as it reads
 * them; it never stops at the first error. Cross-field rules (body vs json,
 * paginate only with url) are the kind's check hook (core/stage.h).
 *
 * The same tables feed the documentation checks: every option carries its
 * key, type, default and doc, and stage_kinds_json() (core/stage.h) writes
 * them all.
 *
 * The entry is `struct opt`, not `struct option`: <getopt.h> defines that
 * tag, and the commands include both.
 *
 * Ownership: what the walker stores in an options struct belongs to it and
 * is freed by option_free() (and the kind's free_opts hook for custom
 * fields).
 */
#ifndef PIPECTL_OPTION_H
#define PIPECTL_OPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "base/diag.h"
#include "core/spec.h"

struct ynode;                      /* core/yaml.h: a node of the YAML tree */
struct opt_ctx;                    /* the reader: diagnostics, checks, the spec */
struct opt;

enum opt_type {
	OPT_STRING = 0,                /* struct sval: any scalar but null */
	OPT_TEMPLATE,                  /* struct sval: a ${...} template, checked */
	OPT_JQ,                        /* struct sval: a jq expression, checked */
	OPT_INT,                       /* int, min..max */
	OPT_LONG,                      /* long long, min..max (both 0: any) */
	OPT_BOOL,                      /* int: 1 or 0 (OPT_INHERIT: -1 when absent) */
	OPT_DURATION,                  /* double seconds > 0; -1 when absent, no default */
	OPT_SIZE,                      /* long long bytes >= 1 (OPT_INHERIT: 0 when absent) */
	OPT_ENUM,                      /* int: index in words (OPT_WORD: struct sval) */
	OPT_STRING_LIST,               /* struct sval * at offset, size_t count at
	                                  n_offset: a string or a sequence of them */
	OPT_TEMPLATE_LIST,             /* the same, each one a checked template */
	OPT_CUSTOM,                    /* read by the option's read hook */
};

enum opt_flag {
	OPT_REQUIRED = 1u << 0,        /* "missing required key" when absent */
	OPT_INHERIT = 1u << 1,         /* absent: left unset (see the types), the kind
	                                  takes the value of defaults: */
	OPT_WORD = 1u << 2,            /* OPT_ENUM: store the word as a struct sval
	                                  (s NULL when absent) instead of its index */
	OPT_SELECTOR = 1u << 3,        /* flat kinds: this key is the kind's selector
	                                  (url, file): config picks the kind by it, so
	                                  it is required by being there (docs only) */
};

/*
 * A read hook (OPT_CUSTOM): reads value v of key k (both NULL when the key
 * is absent, so the hook can store defaults; v may be an alias node, already
 * reported) into field (the option's place in the
 * options struct). Reports its own errors through the opt_* functions
 * below. opts is the whole options struct, for hooks that fill several
 * fields.
 */
typedef void (*opt_read_fn)(struct opt_ctx *c, const struct opt *o,
                            const struct ynode *k, const struct ynode *v, void *field,
                            void *opts);
/* Frees what a read hook stored in field (the field itself is not freed). */
typedef void (*opt_free_fn)(void *field);

struct opt {
	const char *key;               /* NULL ends a table */
	enum opt_type type;
	size_t offset;                 /* of the field in the kind's options struct */
	size_t n_offset;               /* list types: of the size_t count */
	const char *def;               /* default as the docs say it, NULL: none; the
	                                  walker stores it before reading (types with
	                                  a text form: string, int, bool, duration,
	                                  size, enum) */
	double min, max;               /* OPT_INT / OPT_LONG bounds */
	const char *const *words;      /* OPT_ENUM: the accepted words, NULL-terminated */
	unsigned flags;                /* enum opt_flag */
	opt_read_fn read;              /* OPT_CUSTOM */
	opt_free_fn free;              /* OPT_CUSTOM: NULL when it stores nothing owned */
	const char *shape;             /* OPT_CUSTOM: the value's shape in the docs
	                                  ("mapping", "retry", "paginate") */
	const char *doc;               /* one line, for the docs and `pipectl kinds` */
};

/* Number of options in a NULL-key-terminated table. */
size_t option_count(const struct opt *opts);

/* The option named key in opts, or NULL. */
const struct opt *option_find(const struct opt *opts, const char *key);

/* The type's name in the docs: "string", "template", "jq", "integer",
 * "boolean", "duration", "size", "enum", "list", or o->shape. Static. */
const char *option_type_name(const struct opt *o);

/*
 * Reads mapping m (the value of key k; what names it in messages, e.g.
 * "\"sqlite\"", and where is "in sqlite") through opts into the options
 * struct at out (zeroed by the caller, the kind's opts_size bytes):
 * defaults first, then each key given. Keys of m not in opts are reported
 * as unknown (suggesting the closest), unless keys_checked: the caller
 * checked them itself (a flat kind read from its role's mapping, which
 * holds other kinds' keys too). A null value reads as an empty mapping.
 * Returns false when m is no mapping (reported) and nothing was read.
 */
bool option_walk(struct opt_ctx *c, const struct opt *opts, const struct ynode *k,
                 const struct ynode *m, const char *what, const char *where,
                 bool keys_checked, void *out);

/* Reads the one option o from mapping m into out (no default, no
 * unknown-key check): for a key a caller reads only for its errors. */
void option_read(struct opt_ctx *c, const struct opt *o, const struct ynode *m, void *out);

/* Frees what option_walk stored in out (strings, lists, custom fields);
 * out itself is not freed. NULL-safe. */
void option_free(const struct opt *opts, void *out);

/* ---- for read and check hooks: the YAML tree and the reader's context */

/* Position of n in the file. */
struct pos opt_pos(const struct opt_ctx *c, const struct ynode *n);

/* Adds the diagnostic fmt at p. */
void opt_error(struct opt_ctx *c, struct pos p, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* The diagnostics collected so far (to tell whether a hook reported one). */
size_t opt_errors(const struct opt_ctx *c);

/* The spec being read (params, name, hosts so far). */
const struct spec *opt_spec(const struct opt_ctx *c);

/* Value node of key in mapping m (the first when repeated), or NULL; *key
 * (may be NULL) gets the key node. */
const struct ynode *opt_get(const struct ynode *m, const char *key, const struct ynode **k);

/* The key node of the later of keys a and b of m (both present). */
const struct ynode *opt_later_key(const struct ynode *m, const char *a, const char *b);

/* Where to report something about mapping v given under key k. */
struct pos opt_map_pos(const struct opt_ctx *c, const struct ynode *k, const struct ynode *v);

/* Reads scalar v (not null) into out (replacing a copy there); name is
 * what messages call it. Returns false (reported) when v is no string. */
bool opt_read_str(struct opt_ctx *c, const struct ynode *v, const char *name, struct sval *out);

/* Checks template src read from node (errors at the offending column);
 * label names it ("\"url\"", "header \"X\""). */
void opt_check_template(struct opt_ctx *c, const struct ynode *node, const char *src,
                        const char *label);

/* Checks the jq expression in sv (if set); name is the key. */
void opt_check_jq(struct opt_ctx *c, const struct sval *sv, const char *name);

/* Reports a source stage's template or jq program src (read from node)
 * that refers to the input record; label names it, stage is the id. */
void opt_check_no_record(struct opt_ctx *c, const struct ynode *node, const char *src,
                         bool tmpl, const char *label, const char *stage);

/* Checks that v (the value of a key; what names it in messages) is a
 * mapping (null counts as an empty one) and reports keys not in allowed
 * (NULL-terminated; NULL: any key), suggesting the closest; where is "in
 * fetch" etc. Returns false when v is no mapping. */
bool opt_map_check(struct opt_ctx *c, const struct ynode *v, const char *what,
                   const char *where, const char *const *allowed);

/* "missing required key \"name\" where" at p. */
void opt_missing(struct opt_ctx *c, struct pos p, const char *name, const char *where);

/* The best candidate among cands for a misspelt name, or NULL. */
const char *opt_suggest(const char *name, const char *const *cands, size_t n);

/* ^[A-Za-z_][A-Za-z0-9_]*$ (digit_first: a digit may start it; extra:
 * further characters allowed after the first). */
bool opt_name_ok(const char *s, bool digit_first, const char *extra);

/* An HTTP token: [!#$%&'*+.^_`|~0-9A-Za-z-]+ */
bool opt_token_ok(const char *s);

/* Readers of key name of mapping m, each reporting a wrong value. They
 * leave *out alone when the key is absent or its value invalid. */
const struct ynode *opt_get_str(struct opt_ctx *c, const struct ynode *m, const char *name,
                                struct sval *out);   /* returns the value node */
void opt_get_plain_str(struct opt_ctx *c, const struct ynode *m, const char *name,
                       char **out);
const struct ynode *opt_get_integer(struct opt_ctx *c, const struct ynode *m,
                                    const char *name, long long lo, long long hi,
                                    long long *out);  /* the node when read */
void opt_get_int(struct opt_ctx *c, const struct ynode *m, const char *name, long long lo,
                 long long hi, int *out);
void opt_get_bool(struct opt_ctx *c, const struct ynode *m, const char *name, int *out);
void opt_get_duration(struct opt_ctx *c, const struct ynode *m, const char *name,
                      double *out);
void opt_get_size(struct opt_ctx *c, const struct ynode *m, const char *name,
                  long long *out);
/* Returns the index in vals (NULL-terminated), or -1; keep (may be NULL)
 * gets the word with its position. */
int opt_get_enum(struct opt_ctx *c, const struct ynode *m, const char *name,
                 const char *const *vals, struct sval *keep);
/* A string or a sequence of strings, appended to *v / *n (copies).
 * Returns the value node (NULL when absent); an empty sequence is fine. */
const struct ynode *opt_get_str_list(struct opt_ctx *c, const struct ynode *m,
                                     const char *name, struct sval **v, size_t *n);
/* The same for value node v of key name. */
void opt_read_str_list(struct opt_ctx *c, const struct ynode *v, const char *name,
                       struct sval **list, size_t *n);
/* The node that sv of list was read from (list itself when a scalar);
 * the search starts at *from (0 for the first value) and moves it on. */
const struct ynode *opt_list_item(const struct ynode *list, const struct sval *sv,
                                  size_t *from);

/* retry: under m into r (a struct retry_spec). opt_read_retry is the same
 * as a read hook (field: the struct retry_spec), opt_free_retry its free. */
void opt_get_retry(struct opt_ctx *c, const struct ynode *m, struct retry_spec *r);
void opt_read_retry(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                    const struct ynode *v, void *field, void *opts);
void opt_free_retry(void *field);

/* The stage being read: whether its needs: had errors of their own, and
 * where its needs: key is (line 0 when absent). */
bool opt_needs_bad(const struct opt_ctx *c);
struct pos opt_needs_pos(const struct opt_ctx *c);


#endif
