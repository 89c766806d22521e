/*
 * config: reads a pipeline file into a spec: the YAML tree (yaml.c) walked
 * by the typed readers of option.c; the top level (pipeline, params,
 * settings, defaults, hosts) here, each stage's own options through its
 * kind's table, the kind found through the registry. Every error is a
 * diagnostic and reading carries on, so one run shows them all. The graph
 * checks (names, cycles) are dag.c's, run by config_load on the stages read.
 */
#include "core/config.h"

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

static const char *const fetch_keys[] = {
	"url", "file", "format", "method", "headers", "body", "json", "records",
	"timeout", "connect_timeout", "concurrency", "max_body", "tls_verify", "retry",
	"idempotent", "pool", "paginate", "merge", "allow_hosts", NULL
};
static const char *const transform_keys[] = { "jq", "dedupe", NULL };
static const char *const load_keys[] = { "sqlite", "file", "stdout", "http", NULL };
static const char *const loadhttp_keys[] = {
	"url", "method", "headers", "batch", "timeout", "connect_timeout", "concurrency",
	"retry", "tls_verify", "allow_hosts", NULL
};
static const char *const http_methods[] = { "POST", "PUT", "PATCH", NULL };
static const char *const sqlite_keys[] = {
	"path", "table", "key", "on_conflict", "columns", NULL
};
static const char *const loadfile_keys[] = { "path", "format", NULL };
static const char *const stdout_keys[] = { "format", NULL };
static const char *const stage_keys[] = {
	"fetch", "transform", "load", "needs", "description", "on_error", "stage_timeout", NULL
};
static const char *const kind_names[] = { "fetch", "transform", "load", NULL };
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
static const char *const paginate_keys[] = {
	"next", "link", "param", "start", "step", "stop", "max_pages", NULL
};
static const char *const page_kinds[] = { "next", "link", "param", NULL };
static const char *const host_keys[] = { "concurrency", "rate", "burst", "breaker", NULL };
static const char *const breaker_keys[] = { "failures", "cooldown", "successes", NULL };
static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL };
static const char *const fetch_formats[] = { "json", "jsonl", NULL };
static const char *const load_formats[] = { "jsonl", NULL };
/* In the order of enum on_conflict. */
static const char *const on_conflicts[] = { "replace", "merge", "ignore", NULL };

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

/* pool: must name an entry of hosts:. */
static void check_pool(struct opt_ctx *c, const struct sval *pool)
{
	const char **names;
	const char *sug;
	size_t i, n = 0;

	if (ynode_get(c->hosts, pool->s, NULL))
		return;
	names = xcalloc(c->hosts ? c->hosts->n / 2 + 1 : 1, sizeof(*names));
	for (i = 0; c->hosts && c->hosts->kind == YN_MAP && i + 1 < c->hosts->n; i += 2)
		if (c->hosts->kids[i]->kind == YN_SCALAR)
			names[n++] = c->hosts->kids[i]->s;
	sug = opt_suggest(pool->s, names, n);
	if (sug)
		diags_add(c->d, pool->pos, "unknown pool \"%s\" (did you mean \"%s\"?)",
		          pool->s, sug);
	else
		diags_add(c->d, pool->pos, "unknown pool \"%s\": hosts has no such entry", pool->s);
	free(names);
}

static void only_with_param(struct opt_ctx *c, const struct ynode *m, const char *name)
{
	const struct ynode *k = NULL;

	if (ynode_get(m, name, &k))
		diags_add(c->d, cpos(c, k), "\"%s\" is only allowed with \"param\" in paginate",
		          name);
}

static void read_paginate(struct opt_ctx *c, const struct ynode *m, struct paginate_spec *pg)
{
	const struct ynode *k = NULL, *v = ynode_get(m, "paginate", &k), *kind_k = NULL, *x;
	bool reported = false;
	int kind = -1, link = 1;
	size_t i;

	pg->start = 1;
	pg->step = 1;
	if (!v || !opt_map_check(c, v, "\"paginate\"", "in paginate", paginate_keys))
		return;
	pg->pos = cpos(c, k);
	for (i = 0; v->kind == YN_MAP && i + 1 < v->n; i += 2) {
		const struct ynode *key = v->kids[i];
		int t;
		if (key->kind != YN_SCALAR)
			continue;
		for (t = 0; page_kinds[t] && strcmp(key->s, page_kinds[t]) != 0; t++)
			;
		if (!page_kinds[t] || key->dup)
			continue;
		if (!kind_k) {
			kind_k = key;
			kind = t;
		} else if (!reported) {
			diags_add(c->d, cpos(c, key),
			          "paginate can have only one of next, link and param");
			reported = true;
		}
	}
	if (!kind_k)
		diags_add(c->d, opt_map_pos(c, k, v), "paginate needs one of next, link or param");
	else
		pg->kind = kind == 0 ? PAGE_NEXT : kind == 1 ? PAGE_LINK : PAGE_COUNTER;
	opt_get_str(c, v, "next", &pg->next);
	opt_check_jq(c, &pg->next, "next");
	opt_get_bool(c, v, "link", &link);
	if (!link && (x = ynode_get(v, "link", NULL)))
		diags_add(c->d, cpos(c, x), "\"link\" can only be true (to not paginate, "
		          "leave paginate out)");
	opt_get_str(c, v, "param", &pg->param);
	if (pg->param.s && !*pg->param.s)
		diags_add(c->d, pg->param.pos, "\"param\" must not be empty");
	opt_get_integer(c, v, "start", LLONG_MIN, LLONG_MAX, &pg->start);
	if ((x = opt_get_integer(c, v, "step", LLONG_MIN, LLONG_MAX, &pg->step)) && pg->step == 0) {
		diags_add(c->d, cpos(c, x), "invalid value 0 for \"step\": must not be 0");
		pg->step = 1;
	}
	opt_get_str(c, v, "stop", &pg->stop);
	opt_check_jq(c, &pg->stop, "stop");
	opt_get_int(c, v, "max_pages", 1, 1000000, &pg->max_pages);
	if (pg->kind == PAGE_COUNTER && !ynode_get(v, "stop", NULL))
		diags_add(c->d, cpos(c, kind_k), "paginate with param needs stop");
	if (kind_k && pg->kind != PAGE_COUNTER) {
		only_with_param(c, v, "start");
		only_with_param(c, v, "step");
		only_with_param(c, v, "stop");
	}
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
	c->hosts = v;
	c->s->hosts = xcalloc(v->n / 2 + 1, sizeof(*c->s->hosts));
	for (i = 0; i + 1 < v->n; i += 2) {
		const struct ynode *k = v->kids[i];
		if (k->kind != YN_SCALAR || k->dup)
			continue;               /* bad or duplicate key: reported already */
		read_host(c, k, v->kids[i + 1], &c->s->hosts[c->s->n_hosts++]);
	}
}

/* The record references of a source fetch (no needs), m its fetch: mapping. */
static void check_source_records(struct opt_ctx *c, const struct stage_spec *st,
                                 const struct ynode *m)
{
	const struct fetch_spec *f = &st->u.fetch;
	const struct ynode *url = ynode_get(m, "url", NULL), *hs = ynode_get(m, "headers", NULL);
	size_t i, j;

	for (i = j = 0; url && i < f->n_urls; i++)
		opt_check_no_record(c, opt_list_item(url, &f->urls[i], &j), f->urls[i].s, true, "\"url\"",
		                st->id);
	/* The header nodes are walked in step with the headers read from them
	 * (in order, some left out): linear in their number. */
	for (i = j = 0; hs && hs->kind == YN_MAP && i + 1 < hs->n && j < f->n_headers; i += 2) {
		const struct ynode *hk = hs->kids[i];
		char *label;
		if (hk->kind != YN_SCALAR || hk->dup || strcmp(hk->s, f->headers[j].name) != 0)
			continue;
		label = xasprintf("header \"%s\"", f->headers[j].name);
		opt_check_no_record(c, hs->kids[i + 1], f->headers[j].value.s, true, label, st->id);
		free(label);
		j++;
	}
	opt_check_no_record(c, ynode_get(m, "file", NULL), f->file.s, true, "\"file\"", st->id);
	opt_check_no_record(c, ynode_get(m, "body", NULL), f->body.s, true, "\"body\"", st->id);
	opt_check_no_record(c, ynode_get(m, "json", NULL), f->json.s, false, "\"json\"", st->id);
}

/* Fan-out rules of a fetch stage (m: its fetch: mapping). */
static void check_fanout(struct opt_ctx *c, size_t idx, const struct ynode *m)
{
	const struct stage_spec *st = &c->s->stages[idx];
	const struct ynode *k = NULL, *v;

	if (st->n_needs == 0 && !c->needs_bad[idx] && m->kind == YN_MAP)
		check_source_records(c, st, m);
	if (st->n_needs > 0) {
		v = ynode_get(m, "url", NULL);
		if (v && v->kind == YN_SEQ)
			diags_add(c->d, cpos(c, v), "a fetch stage with needs takes one url template");
		if (ynode_get(m, "file", NULL))
			diags_add(c->d, c->needs_key[idx], "a file fetch cannot have needs");
	} else if (!c->needs_bad[idx] && ynode_get(m, "merge", &k)) {
		diags_add(c->d, cpos(c, k), "merge is only for fetch stages with needs");
	}
}

static void only_with_url(struct opt_ctx *c, const struct ynode *m, const char *name)
{
	const struct ynode *k = NULL;

	if (ynode_get(m, name, &k))
		diags_add(c->d, cpos(c, k), "\"%s\" is only allowed with \"url\"", name);
}

static void read_headers(struct opt_ctx *c, const struct ynode *m, struct fetch_spec *f)
{
	const struct ynode *k = NULL, *v = ynode_get(m, "headers", &k);
	size_t i, cap = 0;

	if (!v || !opt_map_check(c, v, "\"headers\"", "in headers", NULL) || v->kind != YN_MAP)
		return;
	for (i = 0; i + 1 < v->n; i += 2) {
		const struct ynode *hk = v->kids[i], *hv = v->kids[i + 1];
		struct sval sv = { NULL, { NULL, 0, 0 } };
		char *label;

		if (hk->kind != YN_SCALAR || hk->dup)
			continue;
		if (!opt_token_ok(hk->s))
			diags_add(c->d, cpos(c, hk),
			          "invalid header name \"%s\": must be an HTTP token", hk->s);
		if (!opt_read_str(c, hv, hk->s, &sv))
			continue;
		label = xasprintf("header \"%s\"", hk->s);
		opt_check_template(c, hv, sv.s, label);
		free(label);
		xgrow(&f->headers, &cap, f->n_headers + 1, sizeof(*f->headers));
		f->headers[f->n_headers].name = xstrdup(hk->s);
		f->headers[f->n_headers].value = sv;
		f->n_headers++;
	}
}

/* allow_hosts: a host or a list of them ("host", "host:port", "*.domain",
 * "*"), never a URL. */
static void read_allow_hosts(struct opt_ctx *c, const struct ynode *m, struct fetch_spec *f)
{
	size_t i;

	opt_get_str_list(c, m, "allow_hosts", &f->allow_hosts, &f->n_allow_hosts);
	for (i = 0; i < f->n_allow_hosts; i++) {
		const char *h = f->allow_hosts[i].s, *p;
		bool bad = *h == '\0' || strchr(h, '/') != NULL || strchr(h, '@') != NULL ||
		           (h[0] == '*' && h[1] != '\0' && h[1] != '.') || strchr(h + 1, '*');
		for (p = h; *p && !bad; p++)
			if (*p == ' ' || *p == '\t' || (unsigned char)*p < 0x20)
				bad = true;
		if (bad)
			diags_add(c->d, f->allow_hosts[i].pos, "invalid host \"%s\" in "
			          "\"allow_hosts\": expected a host name, host:port, *.domain or *",
			          h);
	}
}

static void read_fetch(struct opt_ctx *c, const struct ynode *k, const struct ynode *m,
                       struct fetch_spec *f)
{
	const struct ynode *url, *file, *body;
	size_t i, j;

	f->timeout = -1;
	f->connect_timeout = -1;
	f->tls_verify = -1;
	f->idempotent = -1;
	if (!opt_map_check(c, m, "\"fetch\"", "in fetch", fetch_keys))
		return;
	url = opt_get_str_list(c, m, "url", &f->urls, &f->n_urls);
	if (url && url->kind == YN_SEQ && url->n == 0)
		diags_add(c->d, cpos(c, url), "\"url\" must list at least one URL");
	for (i = j = 0; i < f->n_urls; i++)
		opt_check_template(c, opt_list_item(url, &f->urls[i], &j), f->urls[i].s, "\"url\"");
	file = opt_get_str(c, m, "file", &f->file);
	if (file && f->file.s)
		opt_check_template(c, file, f->file.s, "\"file\"");
	url = ynode_get(m, "url", NULL);
	file = ynode_get(m, "file", NULL);
	if (url && file) {
		diags_add(c->d, cpos(c, opt_later_key(m, "url", "file")),
		          "fetch cannot have both \"url\" and \"file\"");
	} else if (!url && !file) {
		diags_add(c->d, opt_map_pos(c, k, m), "fetch needs one of \"url\" or \"file\"");
	} else if (file) {
		only_with_url(c, m, "method");
		only_with_url(c, m, "headers");
		only_with_url(c, m, "body");
		only_with_url(c, m, "json");
		only_with_url(c, m, "idempotent");
		only_with_url(c, m, "pool");
		only_with_url(c, m, "paginate");
		only_with_url(c, m, "allow_hosts");
	}
	f->format = opt_get_enum(c, m, "format", fetch_formats, NULL) == 1 ? FMT_JSONL : FMT_JSON;
	opt_get_enum(c, m, "method", methods, &f->method);
	read_headers(c, m, f);
	body = opt_get_str(c, m, "body", &f->body);
	if (body && f->body.s)
		opt_check_template(c, body, f->body.s, "\"body\"");
	opt_get_str(c, m, "json", &f->json);
	opt_check_jq(c, &f->json, "json");
	if (ynode_get(m, "body", NULL) && ynode_get(m, "json", NULL))
		diags_add(c->d, cpos(c, opt_later_key(m, "body", "json")),
		          "fetch cannot have both \"body\" and \"json\"");
	opt_get_str(c, m, "records", &f->records);
	opt_check_jq(c, &f->records, "records");
	opt_get_duration(c, m, "timeout", &f->timeout);
	opt_get_duration(c, m, "connect_timeout", &f->connect_timeout);
	opt_get_int(c, m, "concurrency", 1, 10000, &f->concurrency);
	opt_get_size(c, m, "max_body", &f->max_body);
	opt_get_bool(c, m, "tls_verify", &f->tls_verify);
	opt_get_retry(c, m, &f->retry);
	opt_get_bool(c, m, "idempotent", &f->idempotent);
	if (opt_get_str(c, m, "pool", &f->pool) && f->pool.s)
		check_pool(c, &f->pool);
	read_paginate(c, m, &f->paginate);
	read_allow_hosts(c, m, f);
	opt_get_str(c, m, "merge", &f->merge);
	opt_check_jq(c, &f->merge, "merge");
}

static void read_transform(struct opt_ctx *c, const struct ynode *k, const struct ynode *m,
                           struct transform_spec *t)
{
	if (!opt_map_check(c, m, "\"transform\"", "in transform", transform_keys))
		return;
	opt_get_str(c, m, "jq", &t->jq);
	opt_check_jq(c, &t->jq, "jq");
	opt_get_str(c, m, "dedupe", &t->dedupe);
	opt_check_jq(c, &t->dedupe, "dedupe");
	if (!ynode_get(m, "jq", NULL) && !ynode_get(m, "dedupe", NULL))
		diags_add(c->d, opt_map_pos(c, k, m),
		          "transform needs at least one of \"jq\" or \"dedupe\"");
}

/* True when a and b are equal ignoring ASCII case, as SQLite compares
 * identifiers. */
static bool ident_eq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
			return false;
	return *a == *b;
}

/* sqlite columns: a column name or a sequence of them (SQLite compares them without
 * regard to case, so "Name" and "name" are the same column). */
static void read_columns(struct opt_ctx *c, const struct ynode *m, struct load_spec *l)
{
	size_t i, j;

	opt_get_str_list(c, m, "columns", &l->columns, &l->n_columns);
	for (i = 0; i < l->n_columns; i++) {
		if (!*l->columns[i].s) {
			diags_add(c->d, l->columns[i].pos, "\"columns\" names must not be empty");
			continue;
		}
		for (j = 0; j < i; j++)
			if (ident_eq(l->columns[i].s, l->columns[j].s)) {
				diags_add(c->d, l->columns[i].pos, "duplicate column \"%s\" in "
				          "\"columns\" (SQLite column names ignore case)",
				          l->columns[i].s);
				break;
			}
	}
}

static void read_on_conflict(struct opt_ctx *c, const struct ynode *m, struct load_spec *l)
{
	struct sval sv = { NULL, { NULL, 0, 0 } };
	int v = opt_get_enum(c, m, "on_conflict", on_conflicts, &sv);

	if (v < 0)
		return;
	l->on_conflict = (enum on_conflict)v;
	if (!l->n_key)
		diags_add(c->d, sv.pos, "\"on_conflict\" needs a \"key\": without one every "
		          "record is a new row");
	free(sv.s);
}

static void read_table(struct opt_ctx *c, const struct ynode *m, struct load_spec *l)
{
	size_t i;

	opt_get_str(c, m, "table", &l->table);
	if (l->table.s && !opt_name_ok(l->table.s, false, ""))
		diags_add(c->d, l->table.pos, "invalid table name \"%s\": must start with a "
		          "letter or _ and contain only letters, digits and _", l->table.s);
	opt_get_str_list(c, m, "key", &l->key, &l->n_key);
	for (i = 0; i < l->n_key; i++) {
		size_t j;
		if (!*l->key[i].s)
			diags_add(c->d, l->key[i].pos, "\"key\" column names must not be empty");
		for (j = 0; j < i; j++)
			if (ident_eq(l->key[i].s, l->key[j].s)) {
				diags_add(c->d, l->key[i].pos, "duplicate column \"%s\" in \"key\"",
				          l->key[i].s);
				break;
			}
	}
	read_columns(c, m, l);
	read_on_conflict(c, m, l);
}

/* A sink's path: a template (params, run, env), rendered once per run. */
static void read_load_path(struct opt_ctx *c, const struct ynode *m, struct load_spec *l)
{
	if (opt_get_str(c, m, "path", &l->path) && l->path.s)
		opt_check_template(c, ynode_get(m, "path", NULL), l->path.s, "\"path\"");
}

static void read_load(struct opt_ctx *c, const struct ynode *k, const struct ynode *m,
                      struct load_spec *l)
{
	const struct ynode *tk = NULL, *tv = NULL;
	size_t i;

	l->format = FMT_JSONL;
	if (!opt_map_check(c, m, "\"load\"", "in load", load_keys))
		return;
	for (i = 0; m->kind == YN_MAP && i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		int t;
		if (key->kind != YN_SCALAR)
			continue;
		for (t = 0; load_keys[t] && strcmp(key->s, load_keys[t]) != 0; t++)
			;
		if (!load_keys[t] || key->dup)
			continue;
		if (tk) {
			diags_add(c->d, cpos(c, key), "load cannot have both \"%s\" and \"%s\"",
			          tk->s, key->s);
			continue;
		}
		tk = key;
		tv = m->kids[i + 1];
		l->target = (enum load_target)t;
	}
	if (!tk) {
		diags_add(c->d, opt_map_pos(c, k, m),
		          "load needs one of \"sqlite\", \"file\", \"stdout\" or \"http\"");
		return;
	}
	switch (l->target) {
	case LOAD_SQLITE:
		if (!opt_map_check(c, tv, "\"sqlite\"", "in sqlite", sqlite_keys))
			return;
		if (!ynode_get(tv, "path", NULL))
			opt_missing(c, opt_map_pos(c, tk, tv), "path", "in sqlite");
		if (!ynode_get(tv, "table", NULL))
			opt_missing(c, opt_map_pos(c, tk, tv), "table", "in sqlite");
		read_load_path(c, tv, l);
		read_table(c, tv, l);
		break;
	case LOAD_FILE:
		if (!opt_map_check(c, tv, "\"file\"", "in file", loadfile_keys))
			return;
		if (!ynode_get(tv, "path", NULL))
			opt_missing(c, opt_map_pos(c, tk, tv), "path", "in file");
		read_load_path(c, tv, l);
		opt_get_enum(c, tv, "format", load_formats, NULL);
		break;
	case LOAD_STDOUT:
		if (!opt_map_check(c, tv, "\"stdout\"", "in stdout", stdout_keys))
			return;
		opt_get_enum(c, tv, "format", load_formats, NULL);
		break;
	case LOAD_HTTP: {
		struct fetch_spec *f = &l->http;
		const struct ynode *url;
		f->timeout = -1;
		f->connect_timeout = -1;
		f->tls_verify = -1;
		f->idempotent = 1;
		l->batch = 1;
		if (!opt_map_check(c, tv, "\"http\"", "in http", loadhttp_keys))
			return;
		if (!ynode_get(tv, "url", NULL))
			opt_missing(c, opt_map_pos(c, tk, tv), "url", "in http");
		url = opt_get_str_list(c, tv, "url", &f->urls, &f->n_urls);
		if (url && url->kind == YN_SEQ)
			diags_add(c->d, cpos(c, url), "\"url\" of an http load is one URL template");
		else if (url && f->n_urls == 1)
			opt_check_template(c, url, f->urls[0].s, "\"url\"");
		opt_get_enum(c, tv, "method", http_methods, &f->method);
		read_headers(c, tv, f);
		opt_get_int(c, tv, "batch", 1, 10000, &l->batch);
		opt_get_duration(c, tv, "timeout", &f->timeout);
		opt_get_duration(c, tv, "connect_timeout", &f->connect_timeout);
		opt_get_int(c, tv, "concurrency", 1, 10000, &f->concurrency);
		opt_get_bool(c, tv, "tls_verify", &f->tls_verify);
		opt_get_retry(c, tv, &f->retry);
		read_allow_hosts(c, tv, f);
		break;
	}
	}
}

static void read_stage(struct opt_ctx *c, const struct ynode *k, const struct ynode *m, size_t idx)
{
	struct stage_spec *st = &c->s->stages[idx];
	const struct ynode *kind_k = NULL, *kind_v = NULL, *nk = NULL;
	struct pos on_error_at = { NULL, 0, 0 };
	char *where;
	size_t i;

	st->stage_timeout = -1;
	st->id = xstrdup(k->s);
	st->pos = cpos(c, k);
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
	opt_map_check(c, m, "a stage", where, stage_keys);
	free(where);
	for (i = 0; m->kind == YN_MAP && i + 1 < m->n; i += 2) {
		const struct ynode *key = m->kids[i];
		int t;
		if (key->kind != YN_SCALAR)
			continue;
		for (t = 0; kind_names[t] && strcmp(key->s, kind_names[t]) != 0; t++)
			;
		if (!kind_names[t] || key->dup)
			continue;
		if (kind_k) {
			diags_add(c->d, cpos(c, key), "stage \"%s\" has both %s and %s", st->id,
			          kind_k->s, key->s);
			continue;
		}
		kind_k = key;
		kind_v = m->kids[i + 1];
		st->type = (enum stage_type)t;
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
		diags_add(c->d, st->pos, "stage \"%s\" needs one of fetch, transform or load",
		          st->id);
		return;
	}
	st->type_pos = cpos(c, kind_k);
	c->kind_known[idx] = true;
	switch (st->type) {
	case STAGE_FETCH:
		/* A kind that owns its options (fetch: {sqlite: {...}}) is read
		 * through its table, until the reader walks every kind's. */
		if (kind_v->kind == YN_MAP && ynode_get(kind_v, "sqlite", NULL)) {
			static const char *const alone[] = { "sqlite", NULL };
			const struct ynode *sk, *sv = ynode_get(kind_v, "sqlite", &sk);
			st->kind = stage_kind_find("fetch", "sqlite");
			st->opts = xcalloc(1, st->kind->opts_size);
			c->stage = idx;
			opt_map_check(c, kind_v, "\"fetch\"", "in fetch", alone);
			if (option_walk(c, st->kind->options, sk, sv, "\"sqlite\"", "in sqlite", NULL,
			                st->opts))
				st->kind->check(c, st, sk, sv);
			break;
		}
		read_fetch(c, kind_k, kind_v, &st->u.fetch);
		if (!st->u.fetch.records.s) {
			st->u.fetch.records.s = xstrdup(".");
			st->u.fetch.records.pos = st->type_pos;
		}
		check_fanout(c, idx, kind_v);
		break;
	case STAGE_TRANSFORM:
		read_transform(c, kind_k, kind_v, &st->u.transform);
		break;
	case STAGE_LOAD:
		read_load(c, kind_k, kind_v, &st->u.load);
		break;
	}
	if (st->on_error == ON_ERROR_PASS && !c->needs_bad[idx] &&
	    !(st->type == STAGE_FETCH && st->n_needs > 0))
		pass_misplaced(c, on_error_at);
}

/* Graph rules that depend on the stage kind (dag.c checks names and cycles;
 * the fan-out rules of fetch stages are in check_fanout). */
static void check_kind_needs(struct opt_ctx *c)
{
	size_t i;

	for (i = 0; i < c->s->n_stages; i++) {
		const struct stage_spec *st = &c->s->stages[i];
		if (!c->kind_known[i])
			continue;
		if (st->type != STAGE_FETCH && st->n_needs == 0 && !c->needs_bad[i])
			diags_add(c->d, c->needs_key[i].line ? c->needs_key[i] : st->pos,
			          "%s stage \"%s\" needs an upstream stage (needs:)",
			          kind_names[st->type], st->id);
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
	c->kind_known = xcalloc(m->n / 2, sizeof(*c->kind_known));
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
	root = ytree_parse(&c.text, d, CONFIG_MAX_DEPTH);
	if (root)
		read_top(&c, root);
	ynode_free(root);

	opt_ctx_release(&c);
	free(c.kind_known);
	free(c.needs_key);
	free(c.needs_bad);
	json_decref(c.run);
	if (d->n != n0) {
		spec_free(s);
		return NULL;
	}
	return s;
}

