/*
 * config: reads a pipeline file into a spec: the YAML tree (yaml.c) walked
 * by the typed readers of option.c; the top level (pipeline, params,
 * settings, defaults, hosts) here, each stage's own options through its
 * kind's table, the kind found through the registry. Every error is a
 * diagnostic and reading carries on, so one run shows them all. The graph
 * checks (names, cycles) are dag.c's, run by config_load on the stages read.
 */
#include "core/config_load.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/units.h"
#include "core/dag.h"
#include "core/option_ctx.h"
#include "core/stage.h"
#include "expr/expr.h"

#define CONFIG_MAX_DEPTH 256
/* A pipeline file is read whole into memory: bigger files are refused with a
 * clear error before any parsing (documented in pipectl.yaml(5)). */
#define CONFIG_MAX_FILE_MIB 16

/* ------------------------------------------------------------ stages */

static const char *const stage_common_keys[] = {
	"needs", "description", "on_error", "stage_timeout", NULL
};
static const char *const top_keys[] = {
	"pipeline", "description", "params", "settings", "defaults", "hosts", "stages", NULL
};
static const char *const settings_keys[] = {
	"concurrency", "queue", "batch_size", "run_timeout", NULL
};
static const char *const defaults_keys[] = {
	"timeout", "connect_timeout", "concurrency", "max_body", "retry", "on_error",
	"stage_timeout", NULL
};
/* in the order of enum on_error, from ON_ERROR_FAIL */
static const char *const on_errors[] = { "fail", "skip", "dlq", "pass", NULL };
static const char *const host_keys[] = { "concurrency", "rate", "burst", "breaker", NULL };
static const char *const breaker_keys[] = { "failures", "cooldown", "successes", NULL };

/* ------------------------------------------------------------ resilience */

/* on_error: under m; returns ON_ERROR_UNSET when absent or invalid, and
 * the value's position in *at. */
static enum on_error read_on_error(struct opt_ctx *c, const struct ynode *m, struct pos *at)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	int i = opt_get_enum(c, m, "on_error", on_errors, &sv);

	if (i < 0)
		return ON_ERROR_UNSET;
	*at = sv.pos;
	free(sv.s);
	return (enum on_error)(ON_ERROR_FAIL + i);
}

static void pass_misplaced(struct opt_ctx *c, struct pos at)
{
	diags_add(c->d, at, "on_error: pass is only for fetch stages with needs");
}

/* ^[A-Za-z0-9_.:-]+$ */
static bool host_name_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (!*p)
		return false;
	for (; *p; p++)
		if (!(isascii(*p) && (isalnum(*p) || strchr("_.:-", *p))))
			return false;
	return true;
}

static void read_breaker(struct opt_ctx *c, const struct ynode *m, struct host_spec *h)
{
	const struct ynode *k = NULL, *v = ynode_get(m, "breaker", &k);

	if (!v || !opt_map_check(c, v, "\"breaker\"", "in breaker", breaker_keys))
		return;
	if (!ynode_get(v, "failures", NULL))
		opt_missing(c, opt_map_pos(c, k, v), "failures", "in breaker");
	opt_get_int(c, v, "failures", 1, 1000, &h->breaker_failures);
	opt_get_duration(c, v, "cooldown", &h->breaker_cooldown);
	opt_get_int(c, v, "successes", 1, 1000, &h->breaker_successes);
}

static void read_host(struct opt_ctx *c, const struct ynode *k, const struct ynode *v,
                      struct host_spec *h)
{
	struct sval rate = { NULL, { NULL, 0, 0 } };
	const struct ynode *bk = NULL;
	long long burst = 0;
	char *where;
	bool ok;

	h->name = xstrdup(k->s);
	h->pos = cpos(c, k);
	h->breaker_cooldown = 30;
	h->breaker_successes = 1;
	if (!host_name_ok(k->s))
		diags_add(c->d, h->pos, "invalid host or pool name \"%s\": must contain only "
		          "letters, digits, _, ., : and -", k->s);
	where = xasprintf("in host \"%s\"", k->s);
	ok = opt_map_check(c, v, "a host", where, host_keys);
	free(where);
	if (!ok)
		return;
	opt_get_int(c, v, "concurrency", 1, 10000, &h->concurrency);
	if (opt_get_str(c, v, "rate", &rate) && rate.s) {
		double r = 0;
		if (units_rate(rate.s, &r) != 0)
			diags_add(c->d, rate.pos, "invalid rate \"%s\": expected a number "
			          "followed by /s, /m or /h", rate.s);
		else if (!(r > 0))
			diags_add(c->d, rate.pos, "invalid rate \"%s\": must be greater than 0",
			          rate.s);
		else
			h->rate = r;
	}
	free(rate.s);
	if (opt_get_integer(c, v, "burst", 1, 100000, &burst))
		h->burst = (double)burst;
	if (ynode_get(v, "burst", &bk) && !ynode_get(v, "rate", NULL))
		diags_add(c->d, cpos(c, bk), "\"burst\" is only allowed with \"rate\"");
	if (h->rate > 0 && h->burst == 0)
		h->burst = h->rate > 1 ? ceil(h->rate) : 1;
	read_breaker(c, v, h);
}

static void read_hosts(struct opt_ctx *c, const struct ynode *v)
{
	size_t i;

	if (!v || !opt_map_check(c, v, "\"hosts\"", "in hosts", NULL) || v->kind != YN_MAP)
		return;
	c->s->hosts = xcalloc(v->n / 2 + 1, sizeof(*c->s->hosts));
	for (i = 0; i + 1 < v->n; i += 2) {
		const struct ynode *k = v->kids[i];
		if (k->kind != YN_SCALAR || k->dup)
			continue;               /* bad or duplicate key: reported already */
		read_host(c, k, v->kids[i + 1], &c->s->hosts[c->s->n_hosts++]);
	}
}

/* ------------------------------------------------------------ kinds */

/* The kinds of role (registry order) into out (at most max); returns how
 * many. */
static size_t role_kinds(const char *role, const struct stage_kind **out, size_t max)
{
	size_t i, n = 0;

	for (i = 0; stage_kinds[i] && n < max; i++)
		if (stage_kinds[i]->role && strcmp(stage_kinds[i]->role, role) == 0)
			out[n++] = stage_kinds[i];
	return n;
}

/* The roles (fetch, transform, load: the keys a stage is written with), in
 * the order of the registry, then the other keys of a stage. */
static void role_names(struct opt_ctx *c)
{
	size_t i, j, n = 0, n_common = 0;

	while (stage_kinds[n])
		n++;
	while (stage_common_keys[n_common])
		n_common++;
	c->roles = xcalloc(n + 1, sizeof(*c->roles));
	c->stage_keys = xcalloc(n + n_common + 1, sizeof(*c->stage_keys));
	for (i = 0; stage_kinds[i]; i++) {
		const char *r = stage_kinds[i]->role;
		for (j = 0; r && j < c->n_roles && strcmp(c->roles[j], r) != 0; j++)
			;
		if (r && j == c->n_roles)
			c->roles[c->n_roles++] = r;
	}
	for (i = 0; i < c->n_roles; i++)
		c->stage_keys[i] = c->roles[i];
	for (j = 0; j < n_common; j++)
		c->stage_keys[i + j] = stage_common_keys[j];
}

/* "fetch, transform or load" (malloc'd). */
static char *role_list(const struct opt_ctx *c)
{
	struct buf b;
	size_t i;

	buf_init(&b);
	for (i = 0; i < c->n_roles; i++)
		buf_printf(&b, "%s%s", i == 0 ? "" : i + 1 == c->n_roles ? " or " : ", ",
		           c->roles[i]);
	return buf_steal(&b);
}

/* Adds key to v (n of them) unless it is there already. */
static void key_add(const char **v, size_t *n, const char *key)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp(v[i], key) == 0)
			return;
	v[(*n)++] = key;
}

/* The kind of a role's mapping m that owns key (selector or, for a flat
 * kind, option), or NULL. */
static const struct stage_kind *key_owner(const struct stage_kind **kinds, size_t n,
                                          const char *key, bool options)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (kinds[i]->selector && strcmp(kinds[i]->selector, key) == 0)
			return kinds[i];
	for (i = 0; options && i < n; i++)
		if (!kinds[i]->nested && option_find(kinds[i]->options, key))
			return kinds[i];
	return NULL;
}

/* Allocates and reads the options of kind for stage st from mapping m
 * (the value of key k): a nested kind's own mapping, or the role's
 * mapping of a flat kind (keys_checked: read_role checked its keys). */
static void read_kind(struct opt_ctx *c, struct stage_spec *st, const struct stage_kind *kind,
                      const struct ynode *k, const struct ynode *m, bool keys_checked)
{
	const char *name = kind->nested ? kind->selector : kind->role;
	char *what = xasprintf("\"%s\"", name), *where = xasprintf("in %s", name);
	bool ok;

	st->kind = kind;
	st->opts = xcalloc(1, kind->opts_size ? kind->opts_size : 1);
	ok = option_walk(c, kind->options, k, m, what, where, keys_checked, st->opts);
	free(what);
	free(where);
	if (ok && kind->check)
		kind->check(c, st, k, m);
}

/* Reads option o of kind (a key of a flat role mapping m that the kind read
 * does not take) only for its errors, as a flat mapping reads every key. */
static void read_foreign(struct opt_ctx *c, const struct stage_kind *kind,
                         const struct opt *o, const struct ynode *m)
{
	void *scratch;

	if (!o)
		return;
	scratch = xcalloc(1, kind->opts_size ? kind->opts_size : 1);
	option_read(c, o, m, scratch);
	option_free(kind->options, scratch);
	if (kind->free_opts)
		kind->free_opts(scratch);
	free(scratch);
}

/*
 * The value m of a stage's role key k (fetch:, transform:, load:). A role
 * with one kind and no selector reads its options straight from m. Else
 * the selector keys present pick the kind: a nested kind reads the value
 * of its selector (load: {sqlite: {...}}), a flat one reads m itself
 * beside its selector (fetch: {url: ..., headers: ...}).
 */
static void read_role(struct opt_ctx *c, struct stage_spec *st, const char *role,
                      const struct ynode *k, const struct ynode *m)
{
	const struct stage_kind *kinds[64], *chosen = NULL, *first_flat = NULL;
	const struct ynode *sel_k = NULL, *sel_v = NULL;
	size_t n = role_kinds(role, kinds, ARRAY_LEN(kinds)), i, j, n_keys = 0, n_sel = 0;
	const char **keys;
	char *what, *where;
	bool ok;

	if (n == 1 && !kinds[0]->selector) {
		read_kind(c, st, kinds[0], k, m, false);
		return;
	}
	/* The keys of the role's mapping: every selector, then the options of
	 * the flat kinds. */
	keys = xcalloc(1 + n + 64 * n, sizeof(*keys));
	for (i = 0; i < n; i++)
		if (kinds[i]->selector)
			key_add(keys, &n_keys, kinds[i]->selector);
	for (i = 0; i < n; i++) {
		if (kinds[i]->nested)
			continue;
		if (!first_flat)
			first_flat = kinds[i];
		for (j = 0; kinds[i]->options && kinds[i]->options[j].key; j++) {
			if (n_keys >= 64 * n)
				break;
			key_add(keys, &n_keys, kinds[i]->options[j].key);
		}
	}
	what = xasprintf("\"%s\"", role);
	where = xasprintf("in %s", role);
	ok = opt_map_check(c, m, what, where, keys);
	free(what);
	free(where);
	if (!ok)
		goto done;
	/* The selectors given, in file order: the first picks the kind. */
	for (i = 0; m->kind == YN_MAP && i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		const struct stage_kind *kk;
		if (key->kind != YN_SCALAR || key->dup ||
		    !(kk = key_owner(kinds, n, key->s, false)))
			continue;
		n_sel++;
		if (!chosen) {
			chosen = kk;
			sel_k = key;
			sel_v = m->kids[i + 1];
			continue;
		}
		/* Flat kinds are named in the order of the registry, as "url" and
		 * "file" always were; nested ones in file order. */
		if (!chosen->nested && !kk->nested) {
			size_t a = 0, b = 0;
			for (j = 0; j < n; j++) {
				if (kinds[j] == chosen)
					a = j;
				if (kinds[j] == kk)
					b = j;
			}
			opt_error(c, cpos(c, key), "%s cannot have both \"%s\" and \"%s\"", role,
			          kinds[a < b ? a : b]->selector, kinds[a < b ? b : a]->selector);
		} else {
			opt_error(c, cpos(c, key), "%s cannot have both \"%s\" and \"%s\"", role,
			          sel_k->s, key->s);
		}
		if (!kk->nested)
			read_foreign(c, kk, option_find(kk->options, key->s), m);
	}
	if (!chosen) {
		struct buf b;
		size_t n_sels = 0;
		for (i = 0; i < n; i++)
			n_sels += kinds[i]->selector != NULL;
		buf_init(&b);
		for (i = j = 0; i < n; i++) {
			if (!kinds[i]->selector)
				continue;
			j++;
			buf_printf(&b, "%s\"%s\"", j == 1 ? "" : j == n_sels ? " or " : ", ",
			           kinds[i]->selector);
		}
		opt_error(c, opt_map_pos(c, k, m), "%s needs one of %s", role, b.data);
		buf_free(&b);
		/* A flat mapping is read all the same, for the errors in it. */
		if (first_flat)
			read_kind(c, st, first_flat, k, m, true);
		goto done;
	}
	/* Keys of other flat kinds: an error when one kind was given, and
	 * read for their own errors in any case. */
	for (i = 0; m->kind == YN_MAP && i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		const struct stage_kind *owner;
		if (key->kind != YN_SCALAR || key->dup || key_owner(kinds, n, key->s, false))
			continue;
		if (!chosen->nested && option_find(chosen->options, key->s))
			continue;
		if (!(owner = key_owner(kinds, n, key->s, true)))
			continue;
		if (n_sel == 1)
			opt_error(c, cpos(c, key), "\"%s\" is only allowed with \"%s\"", key->s,
			          owner->selector);
		read_foreign(c, owner, option_find(owner->options, key->s), m);
	}
	if (chosen->nested)
		read_kind(c, st, chosen, sel_k, sel_v, false);
	else
		read_kind(c, st, chosen, k, m, true);
done:
	free(keys);
}

static void read_stage(struct opt_ctx *c, const struct ynode *k, const struct ynode *m, size_t idx)
{
	struct stage_spec *st = &c->s->stages[idx];
	const struct ynode *kind_k = NULL, *kind_v = NULL, *nk = NULL;
	struct pos on_error_at = { NULL, 0, 0 };
	const char *role = NULL;
	char *where;
	size_t i;

	st->stage_timeout = -1;
	st->id = xstrdup(k->s);
	st->pos = cpos(c, k);
	c->stage = idx;
	if (!opt_name_ok(st->id, false, "-"))
		diags_add(c->d, st->pos, "invalid stage id \"%s\": must start with a letter "
		          "or _ and contain only letters, digits, _ and -", st->id);
	if (m->kind == YN_BAD)
		return;
	if (m->kind != YN_MAP && !ynode_is_null(m)) {
		diags_add(c->d, cpos(c, m), "expected a mapping for stage \"%s\", got %s",
		          st->id, ynode_describe(m));
		return;
	}
	where = xasprintf("in stage \"%s\"", st->id);
	opt_map_check(c, m, "a stage", where, c->stage_keys);
	free(where);
	for (i = 0; m->kind == YN_MAP && i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		size_t t;
		if (key->kind != YN_SCALAR)
			continue;
		for (t = 0; t < c->n_roles && strcmp(key->s, c->roles[t]) != 0; t++)
			;
		if (t == c->n_roles || key->dup)
			continue;
		if (kind_k) {
			diags_add(c->d, cpos(c, key), "stage \"%s\" has both %s and %s", st->id,
			          kind_k->s, key->s);
			continue;
		}
		kind_k = key;
		kind_v = m->kids[i + 1];
		role = c->roles[t];
	}
	if (ynode_get(m, "needs", &nk)) {
		size_t n0 = c->d->n;
		c->needs_key[idx] = cpos(c, nk);
		opt_get_str_list(c, m, "needs", &st->needs, &st->n_needs);
		c->needs_bad[idx] = c->d->n != n0;
		for (i = 0; i < st->n_needs; i++) {
			size_t j;
			for (j = 0; j < i; j++)
				if (strcmp(st->needs[i].s, st->needs[j].s) == 0) {
					diags_add(c->d, st->needs[i].pos,
					          "duplicate stage \"%s\" in needs of \"%s\"",
					          st->needs[i].s, st->id);
					break;
				}
		}
	}
	opt_get_plain_str(c, m, "description", &st->description);
	st->on_error = read_on_error(c, m, &on_error_at);
	opt_get_duration(c, m, "stage_timeout", &st->stage_timeout);
	if (!kind_k) {
		char *list = role_list(c);
		diags_add(c->d, st->pos, "stage \"%s\" needs one of %s", st->id, list);
		free(list);
		return;
	}
	st->type_pos = cpos(c, kind_k);
	c->role[idx] = role;
	read_role(c, st, role, kind_k, kind_v);
	/* pass: only a fan-out stage (a source kind that also takes input) has
	 * an input record to pass on. */
	if (st->on_error == ON_ERROR_PASS && !c->needs_bad[idx] &&
	    !(st->kind && st->kind->source && st->kind->push && st->n_needs > 0))
		pass_misplaced(c, on_error_at);
}

/* True when some kind of role may run without needs (a source). */
static bool role_source(const char *role)
{
	const struct stage_kind *kinds[64];
	size_t n = role_kinds(role, kinds, ARRAY_LEN(kinds)), i;

	for (i = 0; i < n; i++)
		if (kinds[i]->source)
			return true;
	return false;
}

/* Graph rules that depend on the stage kind (dag.c checks names and cycles;
 * the fan-out rules are the kinds' check hooks). */
static void check_kind_needs(struct opt_ctx *c)
{
	size_t i;

	for (i = 0; i < c->s->n_stages; i++) {
		const struct stage_spec *st = &c->s->stages[i];
		if (!c->role[i])
			continue;
		if (!role_source(c->role[i]) && st->n_needs == 0 && !c->needs_bad[i])
			diags_add(c->d, c->needs_key[i].line ? c->needs_key[i] : st->pos,
			          "%s stage \"%s\" needs an upstream stage (needs:)",
			          c->role[i], st->id);
	}
}

static void read_stages(struct opt_ctx *c, const struct ynode *k, const struct ynode *m)
{
	size_t i, n = 0;

	if (m->kind == YN_BAD)
		return;
	if (m->kind != YN_MAP && !ynode_is_null(m)) {
		diags_add(c->d, cpos(c, m), "expected a mapping for \"stages\", got %s",
		          ynode_describe(m));
		return;
	}
	if (m->kind != YN_MAP || m->n == 0) {
		diags_add(c->d, cpos(c, k), "\"stages\" must define at least one stage");
		return;
	}
	c->s->stages = xcalloc(m->n / 2, sizeof(*c->s->stages));
	c->role = xcalloc(m->n / 2, sizeof(*c->role));
	c->needs_key = xcalloc(m->n / 2, sizeof(*c->needs_key));
	c->needs_bad = xcalloc(m->n / 2, sizeof(*c->needs_bad));
	for (i = 0; i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		if (key->kind != YN_SCALAR || key->dup)
			continue;               /* bad or duplicate key: reported already */
		read_stage(c, key, m->kids[i + 1], n++);
		c->s->n_stages = n;
	}
	check_kind_needs(c);
}

/* ------------------------------------------------------------ top level */

static json_t *scalar_json(const struct ynode *v)
{
	int b;

	if (!ynode_plain(v))
		return json_string(v->s);
	if (ynode_is_null(v))
		return json_null();
	if ((b = ynode_bool(v)) >= 0)
		return json_boolean(b);
	if (text_is_int(v->s)) {
		long long x;
		errno = 0;
		x = strtoll(v->s, NULL, 10);
		if (!errno)
			return json_integer(x);
		return json_real(strtod(v->s, NULL));
	}
	if (text_is_real(v->s))
		return json_real(strtod(v->s, NULL));
	return json_string(v->s);
}

static void read_params(struct opt_ctx *c, const struct ynode *m)
{
	size_t i;

	if (!m || !opt_map_check(c, m, "\"params\"", "in params", NULL) || m->kind != YN_MAP)
		return;
	for (i = 0; i + 1 < m->n; i += 2) {
		const struct ynode *k = m->kids[i], *v = m->kids[i + 1];
		json_t *j;
		if (k->kind != YN_SCALAR || k->dup)
			continue;
		if (!opt_name_ok(k->s, false, ""))
			diags_add(c->d, cpos(c, k), "invalid parameter name \"%s\": must start "
			          "with a letter or _ and contain only letters, digits and _", k->s);
		if (v->kind == YN_BAD)
			continue;
		if (v->kind != YN_SCALAR) {
			diags_add(c->d, cpos(c, v), "expected a scalar for parameter \"%s\", got %s",
			          k->s, ynode_describe(v));
			continue;
		}
		j = scalar_json(v);
		if (!j) {
			diags_add(c->d, cpos(c, v), "parameter \"%s\" is not valid UTF-8", k->s);
			continue;
		}
		json_object_set_new(c->s->params, k->s, j);
	}
}

static void read_top(struct opt_ctx *c, const struct ynode *root)
{
	struct spec *s = c->s;
	const struct ynode *k = NULL, *v;
	struct pos top = cpos(c, root), at = { NULL, 0, 0 };

	if (root->kind != YN_MAP) {
		diags_add(c->d, top, "the top level of a pipeline file must be a mapping, got %s",
		          ynode_describe(root));
		return;
	}
	opt_map_check(c, root, "the pipeline", "at the top level", top_keys);

	if (!ynode_get(root, "pipeline", NULL)) {
		opt_missing(c, top, "pipeline", "at the top level");
	} else {
		struct sval name = { NULL, { NULL, 0, 0 } };
		opt_get_str(c, root, "pipeline", &name);
		if (name.s && !opt_name_ok(name.s, true, "_.-"))
			diags_add(c->d, name.pos, "invalid pipeline name \"%s\": must start with a "
			          "letter or digit and contain only letters, digits, _, . and -",
			          name.s);
		s->name = name.s;
	}
	opt_get_plain_str(c, root, "description", &s->description);
	read_params(c, ynode_get(root, "params", NULL));

	v = ynode_get(root, "settings", &k);
	if (v && opt_map_check(c, v, "\"settings\"", "in settings", settings_keys)) {
		int q = s->queue_high;
		opt_get_int(c, v, "concurrency", 1, 10000, &s->concurrency);
		opt_get_int(c, v, "queue", 1, 10000000, &q);
		s->queue_high = q;
		s->queue_low = q / 2;
		opt_get_int(c, v, "batch_size", 1, 100000, &s->batch_size);
		opt_get_duration(c, v, "run_timeout", &s->run_timeout);
	}
	v = ynode_get(root, "defaults", &k);
	if (v && opt_map_check(c, v, "\"defaults\"", "in defaults", defaults_keys)) {
		opt_get_duration(c, v, "timeout", &s->timeout);
		opt_get_duration(c, v, "connect_timeout", &s->connect_timeout);
		opt_get_int(c, v, "concurrency", 1, 10000, &s->stage_concurrency);
		opt_get_size(c, v, "max_body", &s->max_body);
		opt_get_retry(c, v, &s->retry);
		s->on_error = read_on_error(c, v, &at);
		if (s->on_error == ON_ERROR_PASS)
			pass_misplaced(c, at);
		if (s->on_error == ON_ERROR_UNSET || s->on_error == ON_ERROR_PASS)
			s->on_error = ON_ERROR_FAIL;
		opt_get_duration(c, v, "stage_timeout", &s->stage_timeout);
	}
	read_hosts(c, ynode_get(root, "hosts", NULL));

	/* expressions are checked with the file's params and name in scope */
	c->run = json_pack("{s:i, s:s}", "id", 0, "pipeline", s->name ? s->name : "");
	c->scope.params = s->params;
	c->scope.run = c->run;

	v = ynode_get(root, "stages", &k);
	if (!v)
		opt_missing(c, top, "stages", "at the top level");
	else
		read_stages(c, k, v);
	if (s->n_stages > 0)
		dag_free(dag_build(s, c->d));
}

static void spec_defaults(struct spec *s)
{
	s->params = json_object();
	s->concurrency = 64;
	s->queue_high = 10000;
	s->queue_low = 5000;
	s->batch_size = 500;
	s->timeout = 30;
	s->connect_timeout = 10;
	s->stage_concurrency = 16;
	s->max_body = 64LL << 20;
	retry_policy_default(&s->retry.p);
	s->on_error = ON_ERROR_FAIL;
	s->stage_timeout = -1;
	s->run_timeout = -1;
}

struct spec *config_load(const char *path, struct diags *d)
{
	struct spec *s = xcalloc(1, sizeof(*s));
	struct opt_ctx c;
	struct ynode *root;
	size_t n0 = d->n;

	memset(&c, 0, sizeof(c));
	c.s = s;
	c.d = d;
	s->path = xstrdup(path);
	s->dir = path_dir(path);
	spec_defaults(s);
	s->text = read_file_max(path, (size_t)CONFIG_MAX_FILE_MIB << 20, &s->text_len);
	if (!s->text) {
		struct pos p = { s->path, 0, 0 };
		if (errno == EFBIG)
			diags_add(d, p, "file too large: a pipeline file may hold at most "
			          "%d MiB (%d bytes)", CONFIG_MAX_FILE_MIB, CONFIG_MAX_FILE_MIB << 20);
		else
			diags_add(d, p, "cannot read: %s", strerror(errno));
		spec_free(s);
		return NULL;
	}
	sha256_hex(s->text, s->text_len, s->hash);

	c.text.file = s->path;
	c.text.text = s->text;
	c.text.len = s->text_len;
	role_names(&c);
	root = ytree_parse(&c.text, d, CONFIG_MAX_DEPTH);
	if (root)
		read_top(&c, root);
	ynode_free(root);

	opt_ctx_release(&c);
	free(c.role);
	free(c.roles);
	free(c.stage_keys);
	free(c.needs_key);
	free(c.needs_bad);
	json_decref(c.run);
	if (d->n != n0) {
		spec_free(s);
		return NULL;
	}
	return s;
}

