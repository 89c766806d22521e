/*
 * test_jsonw: compact JSON output — string escapes, shortest round-trip
 * reals, exact integers, nesting and key order.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonw.h"
#include "tap.h"

/* Dumps v (stolen) with jsonw and compares with want. */
static void check_dump(json_t *v, const char *want, const char *what)
{
	char *s = jsonw_dumps(v);

	is_str(s, want, "%s", what);
	free(s);
	json_decref(v);
}

static void check_real(double d, const char *want)
{
	char out[64];

	jsonw_real(d, out, sizeof(out));
	is_str(out, want, "real %s", want);
}

static void test_scalars(void)
{
	check_dump(json_null(), "null", "null");
	check_dump(json_true(), "true", "true");
	check_dump(json_false(), "false", "false");
	check_dump(json_integer(0), "0", "integer 0");
	check_dump(json_integer(-42), "-42", "negative integer");
	check_dump(json_integer(9007199254740993LL), "9007199254740993",
	           "integer above 2^53 stays exact");
	check_dump(json_integer(INT64_MAX), "9223372036854775807", "int64 max");
	check_dump(json_integer(INT64_MIN), "-9223372036854775808", "int64 min");
	{
		char *s = jsonw_dumps(NULL);
		is_str(s, "null", "NULL value writes null");
		free(s);
	}
}

static void test_reals(void)
{
	check_real(0.1, "0.1");
	check_real(19.99, "19.99");
	check_real(1e300, "1e+300");
	check_real(0.1 + 0.2, "0.30000000000000004");
	check_real(-0.0, "-0.0");
	check_real(2.0, "2.0");
	check_real(-3.5, "-3.5");
	check_real(1.0 / 3.0, "0.3333333333333333");
	check_real(5e-324, "4.94065645841247e-324");
	check_real(1e23, "1e+23");
	check_real(9007199254740993.0, "9007199254740992.0");
	check_real(DBL_MAX, "1.7976931348623157e+308");
	check_real(NAN, "null");
	check_real(INFINITY, "null");
	check_real(-INFINITY, "null");
	check_dump(json_real(19.99), "19.99", "json_real 19.99");
	check_dump(json_real(100.0), "100.0", "integral real keeps .0");
	check_dump(json_real(1e16), "1e+16", "large integral real in exponent form");
}

/* Random bit patterns: the text must read back to the same double, via
 * strtod and via jansson (so it is valid JSON and still a real). */
static void test_real_roundtrip(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	int i, bad_strtod = 0, bad_json = 0, tried = 0;
	char out[64];
	double d;

	for (i = 0; i < 20000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(&d, &x, sizeof(d));
		if (isnan(d) || isinf(d))
			continue;
		tried++;
		jsonw_real(d, out, sizeof(out));
		if (strtod(out, NULL) != d || strlen(out) > 24)
			bad_strtod++;
		{
			json_t *v = json_loads(out, JSON_DECODE_ANY, NULL);
			if (!v || !json_is_real(v) || json_real_value(v) != d)
				bad_json++;
			json_decref(v);
		}
	}
	ok(tried > 19000, "tried %d random doubles", tried);
	is_int(bad_strtod, 0, "every real reads back with strtod");
	is_int(bad_json, 0, "every real reads back as a JSON real");
}

static void test_strings(void)
{
	check_dump(json_string("plain"), "\"plain\"", "plain string");
	check_dump(json_string("q\"b\\s/"), "\"q\\\"b\\\\s/\"", "quote and backslash");
	check_dump(json_string("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"", "short escapes");
	check_dump(json_string("\x01\x1f\x7f"), "\"\\u0001\\u001f\x7f\"",
	           "other control characters as \\u00XX");
	check_dump(json_stringn("a\0b", 3), "\"a\\u0000b\"", "embedded NUL");
	check_dump(json_string("caf\xc3\xa9 \xe2\x82\xac"), "\"caf\xc3\xa9 \xe2\x82\xac\"",
	           "UTF-8 kept as is");
	check_dump(json_string(""), "\"\"", "empty string");
}

static void test_containers(void)
{
	json_t *o = json_object();

	check_dump(json_array(), "[]", "empty array");
	check_dump(json_object(), "{}", "empty object");
	json_object_set_new(o, "z", json_integer(1));
	json_object_set_new(o, "a", json_integer(2));
	json_object_set_new(o, "m", json_integer(3));
	json_object_set_new(o, "a", json_integer(4));
	check_dump(o, "{\"z\":1,\"a\":4,\"m\":3}", "keys keep insertion order");
	check_dump(json_pack("{s:[i,{s:n,s:f}],s:b,s:{}}", "a", 1, "b", "c", 0.5,
	                     "d", 1, "e"),
	           "{\"a\":[1,{\"b\":null,\"c\":0.5}],\"d\":true,\"e\":{}}", "nesting");
	o = json_object();
	json_object_setn_new(o, "k\0\"", 3, json_string("v"));
	check_dump(o, "{\"k\\u0000\\\"\":\"v\"}", "key with NUL and quote escaped");
}

static void test_append(void)
{
	struct buf b;
	json_t *v = json_integer(7);

	buf_init(&b);
	buf_adds(&b, "x=");
	jsonw_append(&b, v);
	buf_addc(&b, ';');
	jsonw_append(&b, v);
	is_str(b.data, "x=7;7", "append adds to existing buffer");
	is_int(b.len, 5, "buffer length");
	buf_free(&b);
	json_decref(v);
}

int main(void)
{
	test_scalars();
	test_reals();
	test_real_roundtrip();
	test_strings();
	test_containers();
	test_append();
	return done_testing();
}
