/*
 * fuzz_template: URL templating, in two halves picked by bit 0 of byte 0.
 *
 * Text (bit 0 clear): the rest is a template's source. expr_template parses
 * it (`${...}` parts, `$${` escapes, jq string literals inside parts) and
 * compiles the jq program it builds, with jq compilation stubbed (fuzz.h),
 * so every input is a new template at full speed. Checks: a failure names
 * the offset of a "${" in the source (config.c turns it into a column); a
 * constant template renders to its text with "$${" unescaped; the env
 * names found by expr_env_refs occur in the source.
 *
 * Render (bit 0 set): byte 1 picks one of a fixed set of URL templates
 * (compiled by libjq at start-up); the rest is the record (JSON, or else
 * the bytes as one string). The URL is rendered as a fetch stage does, then
 * its host taken, a counter parameter set (name and value from the record
 * when it has them) and a relative link resolved against it.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"
#include "net/http.h"
#include "base/util.h"

static const char *const templates[] = {
	"https://api.example.com/items/${.id}",
	"https://api.example.com/search?q=${.q | @uri}&country=${params.country}",
	"https://api.example.com/${.path}?page=${.page // 1}",
	"${.url}",
	"https://api.example.com/$${literal}/${.a.b[0]}?run=${run.id}",
	"https://api.example.com/${.}",
	"https://api.example.com/${.[]?}",
	"https://api.example.com/${tostring | length}/${env.PIPECTL_FUZZ_UNSET}",
};
#define N_TEMPLATES (sizeof(templates) / sizeof(templates[0]))

static struct expr_scope scope;
static struct expr *compiled[N_TEMPLATES];

/* At exit, so that LeakSanitizer sees the compiled templates freed (a
 * live jq_state points at its stack's end, which LSan does not count). */
static void cleanup(void)
{
	size_t i;

	for (i = 0; i < N_TEMPLATES; i++)
		expr_free(compiled[i]);
	json_decref((json_t *)scope.params);
	json_decref((json_t *)scope.run);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t i, off;
	char *err = NULL;

	http_global_init();
	scope.params = json_pack("{s:s}", "country", "us");
	scope.run = json_pack("{s:i, s:s, s:s}", "id", 7, "pipeline", "fuzz", "dir", "/");
	fuzz_jq_set_mode(FUZZ_JQ_REAL);
	for (i = 0; i < N_TEMPLATES; i++) {
		compiled[i] = expr_template(templates[i], &scope, &err, &off);
		if (!compiled[i]) {
			fprintf(stderr, "%s: %s\n", templates[i], err);
			exit(2);
		}
	}
	/* From here on only the text half compiles, and it never runs what it
	 * compiled unless the template is constant (no jq at all). */
	fuzz_jq_set_mode(FUZZ_JQ_STUB);
	atexit(cleanup);
	return 0;
}

/* The text of a constant template: src with each "$${" as "${". */
static char *unescape(const char *src)
{
	struct buf b;
	size_t i;

	buf_init(&b);
	buf_add(&b, "", 0);
	for (i = 0; src[i]; i++) {
		if (src[i] == '$' && src[i + 1] == '$' && src[i + 2] == '{')
			i++;
		buf_addc(&b, src[i]);
	}
	return buf_steal(&b);
}

static void text_case(const char *src)
{
	size_t off = (size_t)-1, i, len = strlen(src);
	char *err = NULL, *out, *want;
	struct expr *e = expr_template(src, &scope, &err, &off);
	json_t *names, *v;

	if (!e) {
		FUZZ_CHECK(err != NULL, "failed without a message");
		FUZZ_CHECK(off < len && src[off] == '$' && src[off + 1] == '{',
		           "error offset does not point at a \"${\"");
		FUZZ_CHECK(off == 0 || src[off - 1] != '$' || (off >= 2 && src[off - 2] == '$'),
		           "error offset points into an escaped \"$${\"");
		free(err);
	} else {
		FUZZ_CHECK(err == NULL, "succeeded with a message");
		if (expr_template_is_const(src)) {
			out = expr_render(e, NULL, &err);
			want = unescape(src);
			FUZZ_CHECK(out && strcmp(out, want) == 0, "constant template renders wrong");
			free(out);
			free(want);
		}
		expr_free(e);
	}
	names = json_array();
	expr_env_refs(src, names);
	json_array_foreach(names, i, v)
		FUZZ_CHECK(json_string_length(v) > 0 && strstr(src, json_string_value(v)),
		           "env name not in the source");
	json_decref(names);
}

static void render_case(size_t which, const char *text, size_t len)
{
	json_t *rec = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	const char *name = "page", *value = "2";
	char *err = NULL, *url, *u;

	if (!rec)
		rec = json_stringn(text, len);
	if (!rec)                      /* not UTF-8 */
		return;
	url = expr_render(compiled[which], rec, &err);
	FUZZ_CHECK(url ? err == NULL : err != NULL, "render result and message disagree");
	if (url) {
		if (json_is_string(json_object_get(rec, "name")))
			name = json_string_value(json_object_get(rec, "name"));
		if (json_is_string(json_object_get(rec, "value")))
			value = json_string_value(json_object_get(rec, "value"));
		u = http_url_host(url);
		free(u);
		u = http_url_set_param(url, name, value);
		free(u);
		u = http_url_resolve(url, "../next?cursor=a%20b");
		free(u);
	}
	free(url);
	free(err);
	json_decref(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *src;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		if (size < 2)
			return 0;
		render_case(data[1] % N_TEMPLATES, (const char *)data + 2, size - 2);
		return 0;
	}
	src = xstrndup((const char *)data + 1, size - 1);
	text_case(src);
	free(src);
	return 0;
}
