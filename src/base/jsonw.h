/*
 * jsonw: compact JSON output for records. Unlike json_dumps, reals are printed
 * with the shortest representation that reads back to the same double
 * (19.99 -> "19.99", 0.1+0.2 -> "0.30000000000000004"), and integers exactly.
 * Object keys keep insertion order.
 */
#ifndef PIPECTL_JSONW_H
#define PIPECTL_JSONW_H

#include <jansson.h>
#include "base/util.h"

/* Appends the compact JSON text of v to b. */
void jsonw_append(struct buf *b, const json_t *v);
/* Returns a malloc'd string. */
char *jsonw_dumps(const json_t *v);
/* Shortest round-trip text of a double into out (>= 32 bytes). */
void jsonw_real(double d, char *out, size_t n);

#endif
