/* Unit tests for util.c, diag.c and log.c's redaction. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/diag.h"
#include "base/log.h"
#include "base/util.h"
#include "tap.h"

int main(void)
{
	struct buf b;
	char hex[65], tmpl[] = "/tmp/pipectl-util-XXXXXX", *p, *dir;
	struct stat sb;

	buf_init(&b);
	buf_adds(&b, "abc");
	buf_printf(&b, "-%d-", 42);
	buf_addc(&b, 'z');
	is_str(b.data, "abc-42-z", "buf appends strings, formats and chars");
	is_int(b.len, 8, "buf length tracks content");
	buf_reset(&b);
	is_str(b.data, "", "buf_reset empties");
	buf_free(&b);

	buf_init(&b);
	buf_add_json_escaped(&b, "a\"b\\c/\n\x01\x7f\xc3\xa9", 11, 0);
	is_str(b.data, "a\\\"b\\\\c/\\n\\u0001\x7f\xc3\xa9",
	       "json escape: quote, backslash, short and \\u escapes; '/', 0x7f and UTF-8 kept");
	buf_reset(&b);
	buf_add_json_escaped(&b, "a/\x7f", 2, BUF_JSON_SLASH);
	is_str(b.data, "a\\/", "json escape: BUF_JSON_SLASH escapes '/', stops at n");
	buf_reset(&b);
	buf_add_json_escaped(&b, "\x7f", 1, BUF_JSON_DEL);
	is_str(b.data, "\\u007f", "json escape: BUF_JSON_DEL escapes 0x7f");
	buf_free(&b);

	sha256_hex("abc", 3, hex);
	is_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	       "sha256 of \"abc\" matches the FIPS 180-2 vector");

	is_int(edit_distance("url", "urll"), 1, "edit distance: one insertion");
	is_int(edit_distance("timeout", "timeuot"), 2, "edit distance: transposition is 2");
	is_int(edit_distance("", "abc"), 3, "edit distance from empty");

	p = path_dir("a/b/c.yaml"); is_str(p, "a/b", "path_dir of a nested path"); free(p);
	p = path_dir("c.yaml"); is_str(p, ".", "path_dir of a bare name"); free(p);
	p = path_dir("/c.yaml"); is_str(p, "/", "path_dir at the root"); free(p);
	p = path_join("a/b", "x.db"); is_str(p, "a/b/x.db", "path_join relative"); free(p);
	p = path_join("a/b", "/abs/x.db"); is_str(p, "/abs/x.db", "path_join keeps absolute"); free(p);
	p = path_join(".", "x.db"); is_str(p, "x.db", "path_join with dot"); free(p);

	ok(mkdtemp(tmpl) != NULL, "mkdtemp");
	dir = xasprintf("%s/one/two/three", tmpl);
	is_int(mkdir_p(dir, 0755), 0, "mkdir_p creates nested directories");
	ok(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode), "nested directory exists");
	is_int(mkdir_p(dir, 0755), 0, "mkdir_p on an existing directory succeeds");
	p = xasprintf("%s/file", tmpl);
	{
		FILE *f = fopen(p, "w");
		fputs("hello\n", f);
		fclose(f);
	}
	{
		char *sub = xasprintf("%s/sub", p);
		ok(mkdir_p(sub, 0755) != 0, "mkdir_p under a regular file fails");
		free(sub);
	}
	{
		size_t len = 0;
		char *text = read_file(p, &len);
		is_str(text, "hello\n", "read_file returns the content");
		is_int(len, 6, "read_file returns the length");
		free(text);
		ok(read_file("/nonexistent/file", &len) == NULL, "read_file of a missing file fails");
	}
	unlink(p);
	free(p);
	rmdir(dir);
	free(dir);
	dir = xasprintf("%s/one/two", tmpl); rmdir(dir); free(dir);
	dir = xasprintf("%s/one", tmpl); rmdir(dir); free(dir);
	rmdir(tmpl);

	{
		char t[32];
		fmt_time(0, t, sizeof(t));
		is_str(t, "-", "fmt_time of an unset time");
		fmt_time(1764103417.5, t, sizeof(t));
		is_str(t, "2025-11-25T20:43:37Z", "fmt_time formats UTC ISO-8601");
	}

	log_add_secret("s3cr3t-token");
	log_add_secret("abc");          /* too short: ignored */
	p = redact("GET https://x/?key=s3cr3t-token&abc=1");
	is_str(p, "GET https://x/?key=***&abc=1", "redact replaces secrets, keeps short values");
	free(p);
	log_free_secrets();
	p = redact("s3cr3t-token");
	is_str(p, "s3cr3t-token", "no secrets registered: unchanged");
	free(p);

	{
		struct diags d = { 0 };
		struct pos a = { "f.yaml", 3, 5 }, b2 = { "f.yaml", 1, 2 };
		char *out = NULL;
		size_t outlen = 0;
		FILE *mem = open_memstream(&out, &outlen);
		diags_add(&d, a, "second %s", "error");
		diags_add(&d, b2, "first");
		diags_print(&d, mem);
		fclose(mem);
		is_str(out, "f.yaml:1:2: first\nf.yaml:3:5: second error\n",
		       "diagnostics print sorted as file:line:col: message");
		free(out);
		diags_free(&d);
	}
	return done_testing();
}
