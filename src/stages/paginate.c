/*
 * Pagination of fetch.http: the next page of a job after a response, from
 * the Link header, a `next` expression, or a counter parameter (with its
 * `stop` expression), and the counter of a dead-lettered page on dlq
 * replay. A URL the server supplied must keep to the job's origin.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stages/paginate.h"
#include "base/util.h"

/* dlq replay of a page of a counter pagination: the counter (and the
 * pages already fetched) from the stored URL's parameter, so the next
 * page follows it instead of starting over. */
void paginate_replay_counter(const struct paginate_spec *pg, const char *url,
                             long long *counter, int *page)
{
	const char *q = strchr(url, '?'), *end = strchr(url, '#');
	size_t n = strlen(pg->param.s);

	while (q && *q && (!end || q < end)) {
		q++;
		if (strncmp(q, pg->param.s, n) == 0 && q[n] == '=') {
			char *e;
			long long v = strtoll(q + n + 1, &e, 10);
			long long d;
			if (e != q + n + 1) {
				*counter = v;
				/* The URL is stored data: no value of it may overflow. */
				if (pg->step != 0 && !__builtin_sub_overflow(v, pg->start, &d) &&
				    !(d == LLONG_MIN && pg->step == -1) && d / pg->step >= 0)
					*page = d / pg->step > INT_MAX ? INT_MAX : (int)(d / pg->step);
			}
			return;
		}
		q = strchr(q, '&');
	}
}

static char *next_page_url(const struct pager *p, const struct page_at *at,
                           const struct http_result *res, json_t *doc, char **err);

char *paginate_next(const struct pager *p, const struct page_at *at,
                    const struct http_result *res, json_t *doc, char **err)
{
	char *next = next_page_url(p, at, res, doc, err), *why;

	if (next && (why = http_url_supplied_check(at->origin, next, p->allow_hosts))) {
		*err = xasprintf("%s: next page %s refused: %s", at->url, next, why);
		free(why);
		free(next);
		next = NULL;
	}
	return next;
}

static char *next_page_url(const struct pager *p, const struct page_at *at,
                           const struct http_result *res, json_t *doc, char **err)
{
	const struct paginate_spec *pg = p->spec;
	char *msg = NULL, *next = NULL;

	if (pg->kind == PAGE_NONE || (pg->max_pages > 0 && at->page >= pg->max_pages))
		return NULL;
	if (pg->kind == PAGE_LINK) {
		const char *link = res ? http_result_header(res, "Link") : NULL;
		char *t = link ? http_link_next(link) : NULL;
		if (t) {
			next = http_url_resolve(at->url, t);
			free(t);
		}
		return next;
	}
	if (!doc) {
		*err = xasprintf("%s: paginate needs a JSON document (format: json)", at->url);
		return NULL;
	}
	if (pg->kind == PAGE_NEXT) {
		json_t *v = expr_eval1(p->next, doc, &msg);
		if (!v) {
			*err = xasprintf("%s: paginate \"next\" failed: %s", at->url, msg);
			free(msg);
			return NULL;
		}
		if (json_is_string(v) && json_string_length(v) > 0) {
			next = http_url_resolve(at->url, json_string_value(v));
			if (!next)
				*err = xasprintf("%s: paginate \"next\" gave a URL that does not parse: %s",
				                 at->url, json_string_value(v));
		} else if (!json_is_null(v) && !json_is_string(v) && !json_is_false(v)) {
			*err = xasprintf("%s: paginate \"next\" must give a URL string or null",
			                 at->url);
		}
		json_decref(v);
		return next;
	}
	/* PAGE_COUNTER */
	{
		json_t *v = expr_eval1(p->stop, doc, &msg);
		char num[32];
		if (!v) {
			*err = xasprintf("%s: paginate \"stop\" failed: %s", at->url, msg);
			free(msg);
			return NULL;
		}
		if (!json_is_false(v) && !json_is_null(v)) {
			json_decref(v);
			return NULL;
		}
		json_decref(v);
		if (__builtin_add_overflow(*at->counter, pg->step, at->counter)) {
			*err = xasprintf("%s: paginate \"%s\" would go past %lld", at->url,
			                 pg->param.s, pg->step > 0 ? LLONG_MAX : LLONG_MIN);
			return NULL;
		}
		snprintf(num, sizeof(num), "%lld", *at->counter);
		return http_url_set_param(at->url, pg->param.s, num);
	}
}
