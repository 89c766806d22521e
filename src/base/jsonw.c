/*
 * jsonw: compact JSON writer for records. Reals get the shortest text that
 * reads back to the same double and always look like reals ("2.0", not "2");
 * integers are exact; object keys keep jansson's insertion order.
 */
#include "base/jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Writes the shortest of %.15g/%.16g/%.17g that strtod's back to d (%.17g
 * always does). The text always parses as a JSON real: ".0" is appended
 * when it has neither a '.' nor an exponent. NaN and infinities, which JSON
 * cannot express, become "null".
 */
void jsonw_real(double d, char *out, size_t n)
{
	static const int precs[] = { 15, 16, 17 };
	size_t i, len;
	char *p;

	if (n == 0)
		return;
	if (isnan(d) || isinf(d)) {
		snprintf(out, n, "null");
		return;
	}
	for (i = 0; i < ARRAY_LEN(precs); i++) {
		snprintf(out, n, "%.*g", precs[i], d);
		if (strtod(out, NULL) == d)
			break;
	}
	/* A locale with a decimal comma would break JSON; normalise it. */
	for (p = out; *p; p++) {
		if (*p == ',')
			*p = '.';
	}
	if (!strpbrk(out, ".e")) {
		len = strlen(out);
		if (len + 3 <= n)
			memcpy(out + len, ".0", 3);
	}
}

/* Appends s (n bytes, may hold NULs) as a quoted JSON string. Bytes >= 0x80
 * are copied as is: jansson strings are UTF-8. */
static void jsonw_string(struct buf *b, const char *s, size_t n)
{
	size_t i, run = 0;
	unsigned char c;
	char esc[8];

	buf_addc(b, '"');
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		buf_add(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"':  buf_add(b, "\\\"", 2); break;
		case '\\': buf_add(b, "\\\\", 2); break;
		case '\b': buf_add(b, "\\b", 2); break;
		case '\f': buf_add(b, "\\f", 2); break;
		case '\n': buf_add(b, "\\n", 2); break;
		case '\r': buf_add(b, "\\r", 2); break;
		case '\t': buf_add(b, "\\t", 2); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			buf_adds(b, esc);
			break;
		}
	}
	buf_add(b, s + run, n - run);
	buf_addc(b, '"');
}

/* Appends the compact JSON text of v to b; a NULL v writes "null". */
void jsonw_append(struct buf *b, const json_t *v)
{
	/* jansson's iteration API takes non-const pointers; nothing is changed. */
	json_t *mv = (json_t *)v;
	const char *key;
	size_t klen, i;
	json_t *item;
	char num[40];
	bool first = true;

	switch (v ? json_typeof(v) : JSON_NULL) {
	case JSON_NULL:
		buf_add(b, "null", 4);
		break;
	case JSON_TRUE:
		buf_add(b, "true", 4);
		break;
	case JSON_FALSE:
		buf_add(b, "false", 5);
		break;
	case JSON_INTEGER:
		buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		jsonw_real(json_real_value(v), num, sizeof(num));
		buf_adds(b, num);
		break;
	case JSON_STRING:
		jsonw_string(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_ARRAY:
		buf_addc(b, '[');
		json_array_foreach(mv, i, item) {
			if (i > 0)
				buf_addc(b, ',');
			jsonw_append(b, item);
		}
		buf_addc(b, ']');
		break;
	case JSON_OBJECT:
		buf_addc(b, '{');
		json_object_keylen_foreach(mv, key, klen, item) {
			if (!first)
				buf_addc(b, ',');
			first = false;
			jsonw_string(b, key, klen);
			buf_addc(b, ':');
			jsonw_append(b, item);
		}
		buf_addc(b, '}');
		break;
	}
}

/* Returns the compact JSON text of v as a malloc'd string (caller frees). */
char *jsonw_dumps(const json_t *v)
{
	struct buf b;

	buf_init(&b);
	jsonw_append(&b, v);
	return buf_steal(&b);
}
