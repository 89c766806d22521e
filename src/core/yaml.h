/*
 * yaml: a pipeline file's YAML as a small tree of nodes that keep their
 * 1-based positions, built with libyaml's event parser (the one file that
 * includes yaml.h of libyaml). Duplicate keys, tags, aliases, several
 * documents and syntax errors are reported as diagnostics; the readers of
 * the tree (config.c, option.c, the stage kinds' hooks) ask it about
 * scalars and mappings through the functions below.
 *
 * Ownership: ytree_parse returns a tree the caller frees with ynode_free;
 * a ytext borrows the file name and text and owns its line index
 * (ytext_free).
 */
#ifndef PIPECTL_YAML_H
#define PIPECTL_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include "base/diag.h"

enum ynode_kind { YN_SCALAR, YN_MAP, YN_SEQ, YN_BAD };

/* How a scalar was written. */
enum ynode_style { YS_PLAIN, YS_SINGLE, YS_DOUBLE, YS_BLOCK };

struct ynode {
	enum ynode_kind kind;
	int line, col;                 /* 1-based start (YN_BAD: where reported) */
	enum ynode_style style;        /* scalars */
	bool anchored;                 /* had an &anchor: start mark is the anchor's */
	bool dup;                      /* a mapping key repeating an earlier one (reported) */
	char *s;                       /* scalar value (NUL-terminated), len bytes */
	size_t len;
	struct ynode **kids;           /* map: key, value, key, value...; seq: items */
	size_t n, cap;
};

/* The text a tree was parsed from, with a line index built when needed. */
struct ytext {
	const char *file;              /* borrowed: what positions name */
	const char *text;              /* borrowed */
	size_t len;
	size_t *line_start;            /* byte offset of each line (lazy) */
	size_t n_lines;
};

/* Frees t's line index (not the text). */
void ytext_free(struct ytext *t);

/*
 * Parses t into a tree. Returns the root of the first document, or NULL
 * (with a diagnostic in d) on a syntax error or an empty file; nesting
 * deeper than max_depth is an error. Problems that do not stop the parse
 * (duplicate keys, tags, aliases, several documents) are added to d too.
 */
struct ynode *ytree_parse(struct ytext *t, struct diags *d, size_t max_depth);
void ynode_free(struct ynode *n);

/* Position of n. */
struct pos ynode_pos(const struct ytext *t, const struct ynode *n);

/* Position of byte off of scalar n's value: exact when the value is the
 * source text verbatim on one line, otherwise the scalar's start. */
struct pos ynode_offset_pos(struct ytext *t, const struct ynode *n, size_t off);

/* A plain (unquoted) scalar. */
bool ynode_plain(const struct ynode *n);
/* null, ~ or empty, unquoted. */
bool ynode_is_null(const struct ynode *n);
/* 1 true, 0 false, -1 not a boolean (YAML 1.2 core schema spellings). */
int ynode_bool(const struct ynode *n);
/* What n is, for messages: "a mapping", "an integer", "a string"... */
const char *ynode_describe(const struct ynode *n);

/* Value node of key name in mapping m (the first when repeated), or NULL;
 * *key (may be NULL) gets the key node. */
const struct ynode *ynode_get(const struct ynode *m, const char *name,
                              const struct ynode **key);

/* -?[0-9]+ */
bool text_is_int(const char *s);
/* -?[0-9]+\.[0-9]*([eE][-+]?[0-9]+)? */
bool text_is_real(const char *s);

#endif
