/* Unit tests for secret.c: the encodings redacted, seal/unseal round trips,
 * placeholders rendered from the environment, unset variables. */
#include <stdlib.h>
#include <string.h>

#include "base/secret.h"
#include "tap.h"

#define PW "Pw\"&\\1/+q= Zk"

static void test_redact(void)
{
	static const char *const leaks[] = {
		"raw " PW " end",
		"json Pw\\\"&\\\\1/+q= Zk end",
		"slash Pw\\\"&\\\\1\\/+q= Zk end",
		"twice Pw\\\\\\\"&\\\\\\\\1/+q= Zk end",
		"uri Pw%22%26%5C1%2F%2Bq%3D%20Zk end",
		"uri lower Pw%22%26%5c1%2f%2bq%3d%20Zk end",
		"base64 UHciJlwxLytxPSBaaw== end",
	};
	size_t i;
	char *r;

	setenv("T_PW", PW, 1);
	secret_add("T_PW", PW);
	for (i = 0; i < sizeof(leaks) / sizeof(leaks[0]); i++) {
		r = secret_redact(leaks[i]);
		ok(!strstr(r, "Zk") && strstr(r, "***") && strstr(r, " end"),
		   "redacted: %s -> %s", leaks[i], r);
		free(r);
	}
	r = secret_redact("short abc stays");
	is_str(r, "short abc stays", "text without a secret is unchanged");
	free(r);
	secret_add(NULL, "abc");
	r = secret_redact("short abc stays");
	is_str(r, "short abc stays", "values under 4 bytes are not secrets");
	free(r);
}

static void test_seal(void)
{
	const char *in = "u?k=Pw%22%26%5C1%2F%2Bq%3D%20Zk {\"t\":\"Pw\\\"&\\\\1/+q= Zk\"} $x ${y} $$ $" PW;
	char *sealed, *back, *err = NULL;
	size_t n;

	sealed = secret_seal(in, strlen(in), &n);
	is_str(sealed, "u?k=${env.T_PW|@uri} {\"t\":\"${env.T_PW|@json}\"} $x $${y} $$$ $$${env.T_PW}",
	       "sealed: placeholders, literal $ escaped");
	is_int((long)n, (long)strlen(sealed), "sealed length");
	back = secret_unseal(sealed, n, &n, &err);
	is_str(back, in, "unsealed with the same environment: the original text");
	free(back);

	setenv("T_PW", "Rotated/Key", 1);
	back = secret_unseal(sealed, strlen(sealed), NULL, &err);
	is_str(back, "u?k=Rotated%2FKey {\"t\":\"Rotated/Key\"} $x ${y} $$ $Rotated/Key",
	       "unsealed with the current value, in each encoding");
	free(back);

	unsetenv("T_PW");
	back = secret_unseal(sealed, strlen(sealed), NULL, &err);
	ok(back == NULL, "unset variable: no text");
	ok(err && strstr(err, "T_PW is not set"), "unset variable: named (%s)", err ? err : "");
	free(err);
	free(sealed);

	/* Bytes after a NUL are sealed too. */
	{
		const char bin[] = "a\0" PW;
		sealed = secret_seal(bin, sizeof(bin) - 1, &n);
		ok(n == 2 + strlen("${env.T_PW}") && memcmp(sealed + 2, "${env.T_PW}", n - 2) == 0,
		   "sealed past a NUL byte");
		free(sealed);
	}
}

int main(void)
{
	test_redact();
	test_seal();
	secret_clear();
	return done_testing();
}
