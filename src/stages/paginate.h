/*
 * Pagination of fetch.http (Link header, `next` expression, param counter).
 * It sees only the paginate: settings, its compiled expressions and the
 * page it is asked about, never the job that fetches it, so the job code
 * (stages/http_job.c) depends on it and not the other way round. Private
 * to src/stages/.
 */
#ifndef PIPECTL_PAGINATE_H
#define PIPECTL_PAGINATE_H

#include <jansson.h>

#include "expr/expr.h"
#include "net/http.h"
#include "stages/http_opts.h"

/* What pagination needs of a stage (all borrowed). */
struct pager {
	const struct paginate_spec *spec;
	struct expr *next;             /* paginate.next, compiled; NULL unless PAGE_NEXT */
	struct expr *stop;             /* paginate.stop, compiled; NULL unless PAGE_COUNTER */
	const char *const *allow_hosts;/* NULL-terminated; may be NULL */
};

/* Where a job is in its pagination. */
struct page_at {
	const char *url;               /* of the current page */
	const char *origin;            /* the URL the job started from */
	int page;                      /* pages fetched so far */
	long long *counter;            /* param value of the current page (updated) */
};

/* dlq replay of a page of a counter pagination: the counter (and the pages
 * already fetched, in *page) from the parameter in url. */
void paginate_replay_counter(const struct paginate_spec *pg, const char *url,
                             long long *counter, int *page);

/* The next page URL after a response (doc may be NULL), or NULL when there
 * is none, or NULL with *err set (the caller frees it) when the pagination
 * cannot go on. A URL the server supplied must keep to the origin's scheme
 * and host (or allow_hosts). The caller owns the URL returned. */
char *paginate_next(const struct pager *p, const struct page_at *at,
                    const struct http_result *res, json_t *doc, char **err);

#endif
