/*
 * Pagination of fetch.http: the next page of a job after a response, from
 * the Link header, a `next` expression, or a counter parameter (with its
 * `stop` expression), and the counter of a dead-lettered page on dlq
 * replay. A URL the server supplied must keep to the job's origin.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "expr/expr.h"
#include "stages/paginate.h"
#include "base/util.h"

/* dlq replay of a page of a counter pagination: the counter (and the
 * pages already fetched) from the stored URL's parameter, so the next
 * page follows it instead of starting over. */
void replay_counter(struct stage *st, struct job *j)
{
	const struct paginate_spec *pg = &fspec(st)->paginate;
	const char *q = strchr(j->url, '?'), *end = strchr(j->url, '#');
	size_t n = strlen(pg->param.s);

	while (q && *q && (!end || q < end)) {
		q++;
		if (strncmp(q, pg->param.s, n) == 0 && q[n] == '=') {
			char *e;
			long long v = strtoll(q + n + 1, &e, 10);
			if (e != q + n + 1) {
				j->counter = v;
				if (pg->step != 0 && (v - pg->start) / pg->step >= 0)
					j->page = (int)((v - pg->start) / pg->step);
			}
			return;
		}
		q = strchr(q, '&');
	}
}

static char *next_page_url(struct stage *st, struct job *j, const struct http_result *res,
                           json_t *doc, char **err);

/* Next page URL for job j after a response (doc may be NULL), or NULL
 * (with *err set when the pagination cannot go on). A URL the server
 * supplied must keep to the job's scheme and host (or allow_hosts). */
char *next_page(struct stage *st, struct job *j, const struct http_result *res,
                json_t *doc, char **err)
{
	struct fetch_http *c = st->ctx;
	char *next = next_page_url(st, j, res, doc, err), *why;

	if (next && (why = http_url_supplied_check(j->origin, next,
	                                           (const char *const *)c->allow_hosts))) {
		*err = xasprintf("%s: next page %s refused: %s", j->url, next, why);
		free(why);
		free(next);
		next = NULL;
	}
	return next;
}

static char *next_page_url(struct stage *st, struct job *j, const struct http_result *res,
                           json_t *doc, char **err)
{
	struct fetch_http *c = st->ctx;
	const struct paginate_spec *pg = &fspec(st)->paginate;
	char *msg = NULL, *next = NULL;

	if (pg->kind == PAGE_NONE || (pg->max_pages > 0 && j->page >= pg->max_pages))
		return NULL;
	if (pg->kind == PAGE_LINK) {
		const char *link = res ? http_result_header(res, "Link") : NULL;
		char *t = link ? http_link_next(link) : NULL;
		if (t) {
			next = http_url_resolve(j->url, t);
			free(t);
		}
		return next;
	}
	if (!doc) {
		*err = xasprintf("%s: paginate needs a JSON document (format: json)", j->url);
		return NULL;
	}
	if (pg->kind == PAGE_NEXT) {
		json_t *v = expr_eval1(c->page_next, doc, &msg);
		if (!v) {
			*err = xasprintf("%s: paginate \"next\" failed: %s", j->url, msg);
			free(msg);
			return NULL;
		}
		if (json_is_string(v) && json_string_length(v) > 0) {
			next = http_url_resolve(j->url, json_string_value(v));
			if (!next)
				*err = xasprintf("%s: paginate \"next\" gave a URL that does not parse: %s",
				                 j->url, json_string_value(v));
		} else if (!json_is_null(v) && !json_is_string(v) && !json_is_false(v)) {
			*err = xasprintf("%s: paginate \"next\" must give a URL string or null",
			                 j->url);
		}
		json_decref(v);
		return next;
	}
	/* PAGE_COUNTER */
	{
		json_t *v = expr_eval1(c->page_stop, doc, &msg);
		char num[32];
		if (!v) {
			*err = xasprintf("%s: paginate \"stop\" failed: %s", j->url, msg);
			free(msg);
			return NULL;
		}
		if (!json_is_false(v) && !json_is_null(v)) {
			json_decref(v);
			return NULL;
		}
		json_decref(v);
		j->counter += pg->step;
		snprintf(num, sizeof(num), "%lld", j->counter);
		return http_url_set_param(j->url, pg->param.s, num);
	}
}
