/*
 * jsonr: a fast reader for the common case of JSON text, producing the
 * same jansson values as json_loadb(text, len, JSON_DECODE_ANY |
 * JSON_ALLOW_NUL). It reads byte by byte with no stream layer; on anything
 * it does not handle exactly as jansson does (any syntax error, a number
 * out of range, an invalid escape or UTF-8 sequence, a NUL in a key, deep
 * nesting) it gives up, and the caller parses with jansson, which then
 * produces jansson's own error message.
 */
#ifndef PIPECTL_JSONR_H
#define PIPECTL_JSONR_H

#include <stddef.h>
#include <jansson.h>

/* Parses text[0, len): one JSON value with optional surrounding
 * whitespace. Returns a new reference, or NULL when jansson must decide
 * (the text may still be valid). Safe on any thread. */
json_t *jsonr_parse(const char *text, size_t len);

/* Returns the length of the valid UTF-8 sequence (not ASCII) at p, before
 * end, or 0 when it is invalid: an overlong form, a surrogate or a code
 * point above U+10FFFF is, as for jansson and jq. */
size_t jsonr_utf8_len(const unsigned char *p, const unsigned char *end);

#endif
