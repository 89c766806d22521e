/*
 * Pagination of fetch.http (Link header, `next` expression, param counter)
 * for the jobs of stages/http_job.h. Private to src/stages/.
 */
#ifndef PIPECTL_PAGINATE_H
#define PIPECTL_PAGINATE_H

#include <jansson.h>

#include "net/http.h"
#include "stages/http_job.h"

/* dlq replay of a page of a counter pagination: sets j->counter and
 * j->page from the parameter in j->url. */
void replay_counter(struct stage *st, struct job *j);

/* The next page URL for job j after a response (doc may be NULL), or NULL
 * when there is none, or NULL with *err set (the caller frees it) when the
 * pagination cannot go on. The caller owns the URL returned. */
char *next_page(struct stage *st, struct job *j, const struct http_result *res,
                json_t *doc, char **err);

#endif
