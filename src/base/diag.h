/*
 * diag: diagnostics as data. Config and validation errors are collected as
 * {file, line, col, message} (1-based positions) and printed like a compiler:
 *     pipelines/x.yaml:12:5: unknown key "urll" (did you mean "url"?)
 */
#ifndef PIPECTL_DIAG_H
#define PIPECTL_DIAG_H

#include <stdio.h>
#include "base/util.h"

/* A position in a source file; line and col are 1-based, 0 when unknown. */
struct pos {
	const char *file;              /* borrowed from the spec that owns it */
	int line, col;
};

struct diag {
	char *file;
	int line, col;
	char *msg;
};

struct diags {
	struct diag *v;
	size_t n, cap;
};

void diags_add(struct diags *d, struct pos p, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* Sorts by (file, line, col) keeping insertion order for ties, then prints
 * "file:line:col: message" lines (or "file: message" when line is 0). */
void diags_print(struct diags *d, FILE *out);
void diags_free(struct diags *d);

#endif
