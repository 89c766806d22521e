/*
 * secret: the registry of secret values with their encodings, the redactor
 * and the seal/unseal pair for stored requests. Each registered value is
 * expanded once into all its encodings ("forms"); matching tries the longest
 * form at each position, a first-byte table keeping the scan cheap.
 */
#include "base/secret.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define SECRET_MIN_LEN 4

/* The encodings, in order of preference when two give the same text. */
enum secret_enc {
	ENC_RAW = 0,
	ENC_JSON,                      /* inside a JSON string, as jsonw writes it */
	ENC_JSON_SLASH,                /* the same with "/" as "\/" (servers echo so) */
	ENC_JSON2,                     /* escaped twice: a JSON body echoed in JSON */
	ENC_URI,                       /* jq 1.6 @uri: keeps A-Za-z0-9 -_.!~*'() */
	ENC_URI_LC,                    /* the same, lower case hex */
	ENC_URI_RFC,                   /* RFC 3986 unreserved only: A-Za-z0-9 -_.~ */
	ENC_URI_RFC_LC,
	ENC_BASE64,                    /* standard alphabet, padded */
	ENC_N
};

/* Placeholder suffixes ("${env.NAME|@uri}"); the raw form has none. */
static const char *const enc_name[ENC_N] = {
	"", "@json", "@json_slash", "@json2", "@uri", "@uri_lc", "@uri_rfc", "@uri_rfc_lc", "@base64"
};

struct secret {
	char *name;                    /* NULL: unnamed */
	char *value;
};

struct form {
	char *text;
	size_t len;
	size_t secret;                 /* index in secrets */
	enum secret_enc enc;
};

static struct secret *secrets;
static size_t n_secrets, cap_secrets;
static struct form *forms;
static size_t n_forms, cap_forms;
static bool first_byte[256];

/* ------------------------------------------------------------ encodings */

static void enc_uri(struct buf *b, const char *s, bool rfc, bool lower)
{
	const char *keep = rfc ? "-_.~" : "-_.!~*'()";
	unsigned char c;

	for (; *s; s++) {
		c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    (c && strchr(keep, c)))
			buf_addc(b, (char)c);
		else
			buf_printf(b, lower ? "%%%02x" : "%%%02X", c);
	}
}

static void enc_base64(struct buf *b, const char *s)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i;
	unsigned long v;

	for (i = 0; i + 2 < n; i += 3) {
		v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8 | p[i + 2];
		buf_addc(b, tab[v >> 18 & 63]);
		buf_addc(b, tab[v >> 12 & 63]);
		buf_addc(b, tab[v >> 6 & 63]);
		buf_addc(b, tab[v & 63]);
	}
	if (n - i == 1) {
		v = (unsigned long)p[i] << 16;
		buf_addc(b, tab[v >> 18 & 63]);
		buf_addc(b, tab[v >> 12 & 63]);
		buf_adds(b, "==");
	} else if (n - i == 2) {
		v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8;
		buf_addc(b, tab[v >> 18 & 63]);
		buf_addc(b, tab[v >> 12 & 63]);
		buf_addc(b, tab[v >> 6 & 63]);
		buf_addc(b, '=');
	}
}

/* Returns value in encoding enc (malloc'd). */
static char *encode(const char *value, enum secret_enc enc)
{
	struct buf b;

	buf_init(&b);
	buf_add(&b, "", 0);
	switch (enc) {
	case ENC_RAW:        buf_adds(&b, value); break;
	case ENC_JSON:       buf_add_json_escaped(&b, value, strlen(value), 0); break;
	case ENC_JSON_SLASH: buf_add_json_escaped(&b, value, strlen(value), BUF_JSON_SLASH); break;
	case ENC_JSON2: {
		struct buf once;
		buf_init(&once);
		buf_add(&once, "", 0);
		buf_add_json_escaped(&once, value, strlen(value), 0);
		buf_add_json_escaped(&b, once.data, once.len, 0);
		buf_free(&once);
		break;
	}
	case ENC_URI:        enc_uri(&b, value, false, false); break;
	case ENC_URI_LC:     enc_uri(&b, value, false, true); break;
	case ENC_URI_RFC:    enc_uri(&b, value, true, false); break;
	case ENC_URI_RFC_LC: enc_uri(&b, value, true, true); break;
	case ENC_BASE64:     enc_base64(&b, value); break;
	case ENC_N:          break;
	}
	return buf_steal(&b);
}

/* ------------------------------------------------------------ registry */

static bool form_known(const char *text)
{
	size_t i;

	for (i = 0; i < n_forms; i++)
		if (strcmp(forms[i].text, text) == 0)
			return true;
	return false;
}

/* Registers value as the secret of name (NULL: unnamed). */
void secret_add(const char *name, const char *value)
{
	size_t i, k;
	int e;

	if (!value || strlen(value) < SECRET_MIN_LEN)
		return;
	for (i = 0; i < n_secrets; i++) {
		if (strcmp(secrets[i].value, value) != 0)
			continue;
		/* Known: a name learned later makes it sealable. */
		if (!secrets[i].name && name)
			secrets[i].name = xstrdup(name);
		return;
	}
	k = n_secrets;
	xgrow(&secrets, &cap_secrets, n_secrets + 1, sizeof(*secrets));
	secrets[k].name = xstrdup(name);
	secrets[k].value = xstrdup(value);
	n_secrets++;
	for (e = 0; e < ENC_N; e++) {
		char *t = encode(value, (enum secret_enc)e);
		if (strlen(t) < SECRET_MIN_LEN || form_known(t)) {
			free(t);
			continue;
		}
		xgrow(&forms, &cap_forms, n_forms + 1, sizeof(*forms));
		forms[n_forms].text = t;
		forms[n_forms].len = strlen(t);
		forms[n_forms].secret = k;
		forms[n_forms].enc = (enum secret_enc)e;
		first_byte[(unsigned char)t[0]] = true;
		n_forms++;
	}
}

/* Forgets every secret. */
void secret_clear(void)
{
	size_t i;

	for (i = 0; i < n_secrets; i++) {
		free(secrets[i].name);
		free(secrets[i].value);
	}
	for (i = 0; i < n_forms; i++)
		free(forms[i].text);
	free(secrets);
	free(forms);
	secrets = NULL;
	forms = NULL;
	n_secrets = cap_secrets = n_forms = cap_forms = 0;
	memset(first_byte, 0, sizeof(first_byte));
}

/* The longest form that s[0, n) starts with, or NULL. */
static const struct form *match(const char *s, size_t n)
{
	const struct form *best = NULL;
	size_t i;

	if (n == 0 || !first_byte[(unsigned char)s[0]])
		return NULL;
	for (i = 0; i < n_forms; i++) {
		const struct form *f = &forms[i];
		if (f->len <= n && (!best || f->len > best->len) &&
		    memcmp(s, f->text, f->len) == 0)
			best = f;
	}
	return best;
}

/* Returns s with every form replaced by "***" (malloc'd). */
char *secret_redact(const char *s)
{
	const struct form *f;
	struct buf b;
	size_t i, n;

	if (!s)
		return NULL;
	if (n_forms == 0)
		return xstrdup(s);
	n = strlen(s);
	buf_init(&b);
	buf_add(&b, "", 0);
	for (i = 0; i < n; ) {
		if ((f = match(s + i, n - i))) {
			buf_adds(&b, "***");
			i += f->len;
		} else {
			buf_addc(&b, s[i++]);
		}
	}
	return buf_steal(&b);
}

/* ------------------------------------------------------------ seal */

/* Returns s[0, len) with forms as placeholders (malloc'd). */
char *secret_seal(const char *s, size_t len, size_t *out_len)
{
	const struct form *f;
	struct buf b;
	size_t i;

	buf_init(&b);
	buf_add(&b, "", 0);
	for (i = 0; i < len; ) {
		if ((f = match(s + i, len - i))) {
			const struct secret *sc = &secrets[f->secret];
			if (!sc->name)
				buf_adds(&b, "***");
			else if (f->enc == ENC_RAW)
				buf_printf(&b, "${env.%s}", sc->name);
			else
				buf_printf(&b, "${env.%s|%s}", sc->name, enc_name[f->enc]);
			i += f->len;
			continue;
		}
		if (s[i] == '$' && i + 1 < len &&
		    (s[i + 1] == '{' || s[i + 1] == '$' || match(s + i + 1, len - i - 1))) {
			buf_adds(&b, "$$");
			i++;
		} else {
			/* Bytes that start no form and are no '$' are copied
			 * as one run: a response body is mostly that. */
			size_t j = i + 1;
			while (j < len && s[j] != '$' && !first_byte[(unsigned char)s[j]])
				j++;
			buf_add(&b, s + i, j - i);
			i = j;
		}
	}
	if (out_len)
		*out_len = b.len;
	return buf_steal(&b);
}

static bool name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* At s[0, n) (just after "${"): parses "env.NAME}" or "env.NAME|@enc}".
 * Returns the length parsed (through '}') with the name in name[0, *name_len)
 * and the encoding in *enc, or 0 when it is not a placeholder. */
static size_t parse_placeholder(const char *s, size_t n, size_t *name_len,
                                enum secret_enc *enc)
{
	size_t i = 4, k;
	int e;

	if (n < 6 || memcmp(s, "env.", 4) != 0)
		return 0;
	while (i < n && name_char(s[i]))
		i++;
	*name_len = i - 4;
	if (*name_len == 0 || i >= n)
		return 0;
	if (s[i] == '}') {
		*enc = ENC_RAW;
		return i + 1;
	}
	if (s[i] != '|')
		return 0;
	i++;
	for (e = 1; e < ENC_N; e++) {
		k = strlen(enc_name[e]);
		if (i + k < n && memcmp(s + i, enc_name[e], k) == 0 && s[i + k] == '}') {
			*enc = (enum secret_enc)e;
			return i + k + 1;
		}
	}
	return 0;
}

/* Renders sealed text with the current environment (malloc'd), or NULL
 * with *err when a variable is not set. */
char *secret_unseal(const char *s, size_t len, size_t *out_len, char **err)
{
	struct buf b;
	size_t i, k, name_len;
	enum secret_enc enc;

	*err = NULL;
	buf_init(&b);
	buf_add(&b, "", 0);
	for (i = 0; i < len; ) {
		if (s[i] == '$' && i + 1 < len && s[i + 1] == '$') {
			buf_addc(&b, '$');
			i += 2;
			continue;
		}
		if (s[i] == '$' && i + 1 < len && s[i + 1] == '{' &&
		    (k = parse_placeholder(s + i + 2, len - i - 2, &name_len, &enc)) > 0) {
			char *name = xstrndup(s + i + 6, name_len), *t;
			const char *v = getenv(name);
			if (!v) {
				*err = xasprintf("environment variable %s is not set", name);
				free(name);
				buf_free(&b);
				return NULL;
			}
			secret_add(name, v);
			t = encode(v, enc);
			buf_adds(&b, t);
			free(t);
			free(name);
			i += 2 + k;
			continue;
		}
		buf_addc(&b, s[i++]);
	}
	if (out_len)
		*out_len = b.len;
	return buf_steal(&b);
}
