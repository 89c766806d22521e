/*
 * http_opts: what fetch.http, fetch.file and load.http share about their
 * options (see http_opts.h): the readers of headers and paginate, the
 * checks and refs of the two fetch kinds (written in one mapping), the
 * URLs and headers a request goes to. Each kind's table is in its file.
 */
#include "stages/http_opts.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "core/yaml.h"
#include "expr/expr.h"

static const char *const page_kinds[] = { "next", "link", "param", NULL };
static const char *const paginate_keys[] = {
	"next", "link", "param", "start", "step", "stop", "max_pages", NULL
};

/* ------------------------------------------------------------ readers */

/* headers: a mapping of header names to templates. The struct is the
 * fetch_spec at opts (a load_http_opts starts with one). */
void http_opts_read_headers(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                         const struct ynode *v, void *field, void *opts)
{
	struct fetch_spec *f = opts;
	size_t i, cap = 0;

	(void)o;
	(void)k;
	(void)field;
	if (!v || !opt_map_check(c, v, "\"headers\"", "in headers", NULL) || v->kind != YN_MAP)
		return;
	for (i = 0; i + 1 < v->n; i += 2) {
		const struct ynode *hk = v->kids[i], *hv = v->kids[i + 1];
		struct sval sv = { NULL, { NULL, 0, 0 } };
		char *label;

		if (hk->kind != YN_SCALAR || hk->dup)
			continue;
		if (!opt_token_ok(hk->s))
			opt_error(c, opt_pos(c, hk),
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

static void only_with_param(struct opt_ctx *c, const struct ynode *m, const char *name)
{
	const struct ynode *k = NULL;

	if (opt_get(m, name, &k))
		opt_error(c, opt_pos(c, k), "\"%s\" is only allowed with \"param\" in paginate",
		          name);
}

void http_opts_read_paginate(struct opt_ctx *c, const struct opt *o, const struct ynode *k,
                          const struct ynode *v, void *field, void *opts)
{
	struct paginate_spec *pg = field;
	const struct ynode *kind_k = NULL, *x;
	bool reported = false;
	int kind = -1, link = 1;
	size_t i;

	(void)o;
	(void)opts;
	pg->start = 1;
	pg->step = 1;
	if (!v || !opt_map_check(c, v, "\"paginate\"", "in paginate", paginate_keys))
		return;
	pg->pos = opt_pos(c, k);
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
			opt_error(c, opt_pos(c, key),
			          "paginate can have only one of next, link and param");
			reported = true;
		}
	}
	if (!kind_k)
		opt_error(c, opt_map_pos(c, k, v), "paginate needs one of next, link or param");
	else
		pg->kind = kind == 0 ? PAGE_NEXT : kind == 1 ? PAGE_LINK : PAGE_COUNTER;
	opt_get_str(c, v, "next", &pg->next);
	opt_check_jq(c, &pg->next, "next");
	opt_get_bool(c, v, "link", &link);
	if (!link && (x = opt_get(v, "link", NULL)))
		opt_error(c, opt_pos(c, x), "\"link\" can only be true (to not paginate, "
		          "leave paginate out)");
	opt_get_str(c, v, "param", &pg->param);
	if (pg->param.s && !*pg->param.s)
		opt_error(c, pg->param.pos, "\"param\" must not be empty");
	opt_get_integer(c, v, "start", LLONG_MIN, LLONG_MAX, &pg->start);
	if ((x = opt_get_integer(c, v, "step", LLONG_MIN, LLONG_MAX, &pg->step)) &&
	    pg->step == 0) {
		opt_error(c, opt_pos(c, x), "invalid value 0 for \"step\": must not be 0");
		pg->step = 1;
	}
	opt_get_str(c, v, "stop", &pg->stop);
	opt_check_jq(c, &pg->stop, "stop");
	opt_get_int(c, v, "max_pages", 1, 1000000, &pg->max_pages);
	if (pg->kind == PAGE_COUNTER && !opt_get(v, "stop", NULL))
		opt_error(c, opt_pos(c, kind_k), "paginate with param needs stop");
	if (kind_k && pg->kind != PAGE_COUNTER) {
		only_with_param(c, v, "start");
		only_with_param(c, v, "step");
		only_with_param(c, v, "stop");
	}
}

void http_opts_free_paginate(void *field)
{
	struct paginate_spec *pg = field;

	free(pg->next.s);
	free(pg->param.s);
	free(pg->stop.s);
	pg->next.s = pg->param.s = pg->stop.s = NULL;
}


/* ------------------------------------------------------------ checks */

/* pool: must name an entry of hosts:. */
static void check_pool(struct opt_ctx *c, const struct sval *pool)
{
	const struct spec *s = opt_spec(c);
	const char **names = xcalloc(s->n_hosts + 1, sizeof(*names));
	const char *sug;
	size_t i;

	for (i = 0; i < s->n_hosts; i++) {
		if (strcmp(s->hosts[i].name, pool->s) == 0) {
			free(names);
			return;
		}
		names[i] = s->hosts[i].name;
	}
	sug = opt_suggest(pool->s, names, s->n_hosts);
	if (sug)
		opt_error(c, pool->pos, "unknown pool \"%s\" (did you mean \"%s\"?)", pool->s, sug);
	else
		opt_error(c, pool->pos, "unknown pool \"%s\": hosts has no such entry", pool->s);
	free(names);
}

/* allow_hosts: a host or a list of them ("host", "host:port", "*.domain",
 * "*"), never a URL. */
void http_opts_check_allow_hosts(struct opt_ctx *c, const struct fetch_spec *f)
{
	size_t i;

	for (i = 0; i < f->n_allow_hosts; i++) {
		const char *h = f->allow_hosts[i].s, *p;
		bool bad = *h == '\0' || strchr(h, '/') != NULL || strchr(h, '@') != NULL ||
		           (h[0] == '*' && h[1] != '\0' && h[1] != '.') || strchr(h + 1, '*');
		for (p = h; *p && !bad; p++)
			if (*p == ' ' || *p == '\t' || (unsigned char)*p < 0x20)
				bad = true;
		if (bad)
			opt_error(c, f->allow_hosts[i].pos, "invalid host \"%s\" in "
			          "\"allow_hosts\": expected a host name, host:port, *.domain or *",
			          h);
	}
}

/* The record references of a source fetch (no needs), m its fetch: mapping. */
static void check_source_records(struct opt_ctx *c, const struct stage_spec *st,
                                 const struct fetch_spec *f, const struct ynode *m)
{
	const struct ynode *url = opt_get(m, "url", NULL), *hs = opt_get(m, "headers", NULL);
	size_t i, j;

	for (i = j = 0; url && i < f->n_urls; i++)
		opt_check_no_record(c, opt_list_item(url, &f->urls[i], &j), f->urls[i].s, true,
		                    "\"url\"", st->id);
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
	opt_check_no_record(c, opt_get(m, "file", NULL), f->file.s, true, "\"file\"", st->id);
	opt_check_no_record(c, opt_get(m, "body", NULL), f->body.s, true, "\"body\"", st->id);
	opt_check_no_record(c, opt_get(m, "json", NULL), f->json.s, false, "\"json\"", st->id);
}

void fetch_opts_check(struct opt_ctx *c, struct stage_spec *sp, const struct ynode *k,
                      const struct ynode *m)
{
	struct fetch_spec *f = sp->opts;
	const struct ynode *v, *mk = NULL;

	(void)k;
	v = opt_get(m, "url", NULL);
	if (v && v->kind == YN_SEQ && v->n == 0)
		opt_error(c, opt_pos(c, v), "\"url\" must list at least one URL");
	if (opt_get(m, "body", NULL) && opt_get(m, "json", NULL))
		opt_error(c, opt_pos(c, opt_later_key(m, "body", "json")),
		          "fetch cannot have both \"body\" and \"json\"");
	if (f->pool.s)
		check_pool(c, &f->pool);
	http_opts_check_allow_hosts(c, f);
	/* fan-out rules */
	if (sp->n_needs == 0 && !opt_needs_bad(c) && m->kind == YN_MAP)
		check_source_records(c, sp, f, m);
	if (sp->n_needs > 0) {
		if (v && v->kind == YN_SEQ)
			opt_error(c, opt_pos(c, v), "a fetch stage with needs takes one url template");
		if (opt_get(m, "file", NULL))
			opt_error(c, opt_needs_pos(c), "a file fetch cannot have needs");
	} else if (!opt_needs_bad(c) && opt_get(m, "merge", &mk)) {
		opt_error(c, opt_pos(c, mk), "merge is only for fetch stages with needs");
	}
}


/* ------------------------------------------------------------ refs */

/* The URLs and headers of f: what a request goes to. */
void http_opts_target_refs(const struct fetch_spec *f, stage_ref_fn fn, void *arg)
{
	unsigned use = REF_SECRETS | REF_ENV | REF_PARAM;
	size_t i;

	for (i = 0; i < f->n_urls; i++)
		fn(arg, &f->urls[i], true, use, "\"url\"");
	for (i = 0; i < f->n_headers; i++)
		fn(arg, &f->headers[i].value, true, use, "a header");
}

void fetch_opts_refs(const struct stage_spec *sp, stage_ref_fn fn, void *arg)
{
	const struct fetch_spec *f = sp->opts;
	unsigned use = REF_SECRETS | REF_ENV | REF_PARAM;

	http_opts_target_refs(f, fn, arg);
	fn(arg, &f->file, true, use, "\"file\"");
	fn(arg, &f->body, true, use, "\"body\"");
	fn(arg, &f->json, false, use, "\"json\"");
	fn(arg, &f->records, false, REF_SECRETS | REF_PARAM, "\"records\"");
	fn(arg, &f->merge, false, REF_PARAM, "\"merge\"");
	fn(arg, &f->method, true, REF_PARAM, "\"method\"");
	fn(arg, &f->paginate.next, false, REF_PARAM, "\"next\"");
	fn(arg, &f->paginate.stop, false, REF_PARAM, "\"stop\"");
}




const struct fetch_spec *http_opts_fetch(const struct stage_spec *sp)
{
	if (sp->kind->sink)
		return &((const struct load_http_opts *)sp->opts)->http;
	return sp->opts;
}

void http_opts_free(void *opts)
{
	struct fetch_spec *f = opts;
	size_t i;

	for (i = 0; i < f->n_headers; i++) {
		free(f->headers[i].name);
		free(f->headers[i].value.s);
	}
	free(f->headers);
	f->headers = NULL;
	f->n_headers = 0;
}
