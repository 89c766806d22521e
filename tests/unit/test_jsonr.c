/*
 * test_jsonr: the fast JSON reader against jansson. Whatever jsonr accepts,
 * json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL) must accept with the same
 * value (types, key order, bytes); hand-made, random and mutated texts.
 * The common forms must take the fast path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonr.h"
#include "base/util.h"
#include "tap.h"

static char *dump(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));

	return s ? s : xstrdup("(undumpable)");
}

/* 1: jsonr parsed text as jansson does; 0: jsonr declined (2 when
 * jansson reads it); -1: they differ (printed). */
static int compare(const char *text, size_t len)
{
	json_error_t je;
	json_t *a = jsonr_parse(text, len);
	json_t *b = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	int rc = 0;

	if (a) {
		char *da = dump(a), *db = b ? dump(b) : xasprintf("ERROR %s", je.text);
		rc = strcmp(da, db) == 0 ? 1 : -1;
		if (rc < 0)
			printf("#   text [%.*s]\n#   jsonr:   %s\n#   jansson: %s\n",
			       (int)(len > 200 ? 200 : len), text, da, db);
		free(da);
		free(db);
	}
	else if (b)
		rc = 2;
	json_decref(a);
	json_decref(b);
	return rc;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static const char *const strings[] = {
	"", "a", "SKU-0000001", "caf\xc3\xa9", "\\u00e9", "\\ud83d\\ude00", "tab\\tnl\\n",
	"q\\\"b\\\\s\\/", "\\b\\f\\r", "nul\\u0000x", "\xe2\x82\xac\xf0\x9f\x98\x80",
	"k k", "\\u0041\\u00DF",
};

static const char *const numbers[] = {
	"0", "-0", "1", "-1", "42", "19.99", "1.0", "0.5", "-0.0", "1e3", "1E-3", "2.5e+10",
	"9223372036854775807", "-9223372036854775808", "9007199254740993",
	"123456789012345678", "1.7976931348623157e308", "4.9e-324", "1e-400",
};

static void gen(struct buf *b, int depth)
{
	unsigned i, n;

	switch (rnd(depth > 4 ? 5 : 8)) {
	case 0: buf_adds(b, rnd(2) ? "true" : "false"); break;
	case 1: buf_adds(b, "null"); break;
	case 2: buf_adds(b, numbers[rnd(sizeof(numbers) / sizeof(numbers[0]))]); break;
	case 3:
	case 4:
		buf_printf(b, "\"%s\"", strings[rnd(sizeof(strings) / sizeof(strings[0]))]);
		break;
	case 5:
	case 6:
		buf_addc(b, '{');
		n = rnd(5);
		for (i = 0; i < n; i++) {
			if (i)
				buf_adds(b, rnd(2) ? "," : " , ");
			buf_printf(b, "\"%s\"%s", strings[rnd(sizeof(strings) / sizeof(strings[0]))],
			           rnd(2) ? ":" : " :\t");
			gen(b, depth + 1);
		}
		buf_addc(b, '}');
		break;
	default:
		buf_addc(b, '[');
		n = rnd(4);
		for (i = 0; i < n; i++) {
			if (i)
				buf_adds(b, rnd(2) ? "," : " ,\r\n");
			gen(b, depth + 1);
		}
		buf_addc(b, ']');
		break;
	}
}

int main(void)
{
	static const char *const hand[] = {
		"{\"id\":7,\"sku\":\"SKU-0000007\",\"name\":\"Product 7\",\"price\":7.07,\"qty\":7,"
		"\"tags\":[\"x\",\"y\"],\"meta\":{\"warehouse\":\"w7\",\"updated\":\"2026-11-25T00:00:00Z\"}}",
		"  {\"a\" : [1, 2.5, \"x\", true, false, null, {}], \"b\": {\"c\": []}}\r",
		"\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\"",
		"{\"a\":1,\"a\":2}", "[]", "{}", "0", "-0", "1.5e3", "true", "null", "\"\"",
		"{\"\xc3\xa9\":\"\xe2\x82\xac\"}", "{\"n\":\"a\\u0000b\"}",
		"[9223372036854775807,-9223372036854775808,1e-400]",
	};
	static const char *const declined[] = {
		"", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\"}", "01", "1.", ".5", "-", "1e", "+1",
		"tru", "truex", "nul", "[1 2]", "{\"a\":1 \"b\":2}", "\"abc", "\"a\\x\"",
		"\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\u12\"", "\"a\x01\"",
		"\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "{\"a\\u0000b\":1}",
		"9223372036854775808", "-9223372036854775809", "1e400", "-1e400", "1 2", "{} x",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]"
		"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		"NaN", "Infinity", "'a'", "{a:1}", "[1]]", "1x",
	};
	size_t i, k;
	int bad = 0, fast = 0, valid = 0, n = 0;
	struct buf b;

	for (i = 0; i < sizeof(hand) / sizeof(hand[0]); i++)
		is_int(compare(hand[i], strlen(hand[i])), 1, "fast and same as jansson: %.40s", hand[i]);
	for (i = 0; i < sizeof(declined) / sizeof(declined[0]); i++) {
		json_t *v = jsonr_parse(declined[i], strlen(declined[i]));
		char *d = xstrdup(declined[i]), *q;
		for (q = d; *q; q++)
			if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x80 || *q == '#')
				*q = '_';
		ok(!v, "left to jansson: %.40s", d);
		free(d);
		json_decref(v);
	}
	/* A NUL byte in the text itself. */
	ok(!jsonr_parse("\"a\0b\"", 5), "a raw NUL byte is left to jansson");

	buf_init(&b);
	for (i = 0; i < 3000; i++) {
		int rc;
		buf_reset(&b);
		if (rnd(4) == 0)
			buf_adds(&b, " \t");
		gen(&b, 0);
		if (rnd(4) == 0)
			buf_adds(&b, "\r\n ");
		rc = compare(b.data, b.len);
		bad += rc < 0;
		fast += rc == 1;
		valid += rc >= 1;
		n++;
		/* Mutations: a byte changed, dropped or the text cut short. */
		for (k = 0; k < 4 && b.len > 0; k++) {
			struct buf m;
			size_t at = rnd((unsigned)b.len);
			static const char bytes[] = "\"\\{}[],:0-.eE+ tfnu\x01\x80\xc3\xff\0";
			buf_init(&m);
			buf_add(&m, b.data, b.len);
			switch (rnd(3)) {
			case 0: m.data[at] = bytes[rnd(sizeof(bytes) - 1)]; break;
			case 1: memmove(m.data + at, m.data + at + 1, m.len - at - 1); m.len--; break;
			default: m.len = at; break;
			}
			rc = compare(m.data ? m.data : "", m.len);
			bad += rc < 0;
			n++;
			buf_free(&m);
		}
	}
	buf_free(&b);
	is_int(bad, 0, "%d random and mutated texts: whatever jsonr reads, jansson reads the same", n);
	is_int(fast, valid, "random texts jansson reads take the fast path (%d of %d)", fast, valid);
	return done_testing();
}
