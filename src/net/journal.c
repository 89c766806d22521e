/*
 * journal: the response journal and the rows a requester buffers for the
 * state database (see request.h). Successful responses, attempts and
 * events are buffered and written in one transaction per group of answers
 * (group commit, see journal_group_commit in core/engine.c); a resumed
 * run's requests whose
 * answers the journal holds are answered from it without any network.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonw.h"
#include "base/log.h"
#include "base/secret.h"
#include "base/util.h"
#include "net/request_int.h"

void requester_flush(struct requester *rq, struct state *st)
{
	size_t i;

	for (i = 0; i < rq->n_rows; i++) {
		struct attempt_row *a = &rq->rows[i];
		if (st && state_attempt_add(st, a) != 0)
			log_warn("cannot record an attempt: %s", state_errmsg(st));
		free(a->stage);
		free(a->fingerprint);
		free(a->method);
		free(a->url);
		free(a->error);
	}
	rq->n_rows = 0;
	for (i = 0; i < rq->n_events; i++) {
		struct event_row *e = &rq->events[i];
		if (st && state_event_add(st, e->run_id, e->stage, e->kind, e->message, e->at) != 0)
			log_warn("cannot record an event: %s", state_errmsg(st));
		free(e->stage);
		free(e->kind);
		free(e->message);
	}
	rq->n_events = 0;
	for (i = 0; i < rq->n_jrows; i++) {
		struct jrow *j = &rq->jrows[i];
		if (st && state_journal_put(st, rq->run_id, j->stage, j->fingerprint, &j->e) != 0)
			log_warn("cannot journal a response: %s", state_errmsg(st));
		free(j->stage);
		journal_entry_free(&j->e);
	}
	rq->n_jrows = 0;
}

size_t requester_journal_pending(const struct requester *rq)
{
	return rq->n_jrows;
}

double requester_journal_age(const struct requester *rq)
{
	return rq->n_jrows > 0 ? now_mono() - rq->jfirst : 0;
}

int requester_commit(struct requester *rq)
{
	size_t n = rq->n_jrows;

	if (!rq->journal)
		return 0;
	if (state_begin(rq->journal) != 0) {
		/* The rows stay buffered: the next commit (or the progress
		 * timer's) writes them. */
		log_debug("cannot journal %zu responses yet: %s", n, state_errmsg(rq->journal));
		return -1;
	}
	requester_flush(rq, rq->journal);
	if (state_commit(rq->journal) != 0) {
		log_warn("cannot journal %zu responses: %s", n, state_errmsg(rq->journal));
		return -1;
	}
	if (n > 0)
		log_debug("journal: committed %zu responses", n);
	return 0;
}

void requester_use_journal(struct requester *rq, struct state *st, bool serve)
{
	rq->journal = st;
	rq->serve = serve;
}

int64_t requester_journal_hits(const struct requester *rq)
{
	return rq->hits;
}

/* Buffers a successful response for the journal. */
void journal_add(struct request *r, const struct http_result *res)
{
	struct requester *rq = r->rq;
	struct jrow *j;
	json_t *h;
	size_t i;

	if (!rq->journal || r->from_journal)
		return;
	if (rq->n_jrows == 0)
		rq->jfirst = now_mono();
	xgrow(&rq->jrows, &rq->cap_jrows, rq->n_jrows + 1, sizeof(*rq->jrows));
	j = &rq->jrows[rq->n_jrows++];
	memset(j, 0, sizeof(*j));
	j->stage = xstrdup(r->stage);
	memcpy(j->fingerprint, r->fingerprint, sizeof(j->fingerprint));
	j->e.status = res->status;
	h = json_object();
	for (i = 0; i < res->n_headers; i++)
		json_object_set_new(h, res->headers[i].name, json_string(res->headers[i].value));
	{
		/* Secrets (env values a template read) never reach the state
		 * database, even when a server echoes them back. A resume
		 * serves these responses as if they came from the server (a
		 * next-page link holding the key is followed): they are sealed,
		 * not redacted, and rendered again when served. */
		char *hs = jsonw_dumps(h);
		j->e.headers = secret_seal(hs, strlen(hs), NULL);
		free(hs);
	}
	json_decref(h);
	if (res->body_len > REQUEST_JOURNAL_MAX_BODY && res->body_sha256 &&
	    *res->body_sha256) {
		/* Too large to keep: its digest and size; a resume asks again. */
		j->e.digest = xstrdup(res->body_sha256);
		j->e.body_len = res->body_len;
	} else {
		j->e.body = secret_seal(res->body, res->body_len, &j->e.body_len);
	}
	/* The loop is still busy with this iteration's answers: the oldest
	 * buffered one does not wait past the window for the engine's commit. */
	if (now_mono() - rq->jfirst >= REQUESTER_JOURNAL_WINDOW)
		requester_commit(rq);
}

/* Answers the queued journal hits (from a timer: never inside
 * request_start, so callers see the same order of events as with I/O). */
static void journal_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct requester *rq = w->data;

	while (rq->jq_head) {
		struct request *r = rq->jq_head;
		struct http_result res;
		struct http_header *hs = NULL;
		size_t n = 0, i = 0, body_len = 0;
		char *err = NULL, *htext, *body = NULL;
		json_t *h = NULL, *v;
		const char *k;

		rq->jq_head = r->q_next;
		/* Stored sealed: secrets come back from this environment. */
		htext = r->jentry.headers ? secret_unseal(r->jentry.headers,
		                                          strlen(r->jentry.headers), NULL, &err) :
		                            xstrdup("{}");
		if (htext)
			body = secret_unseal(r->jentry.body ? r->jentry.body : "", r->jentry.body_len,
			                     &body_len, &err);
		if (!body) {
			char *msg = xasprintf("cannot serve the journaled response: %s", err);
			r->attempt = 0;
			request_finish(r, false, msg, NULL);
			free(msg);
			free(err);
			free(htext);
			continue;
		}
		h = json_loads(htext, 0, NULL);
		free(htext);
		if (h) {
			hs = xcalloc(json_object_size(h) + 1, sizeof(*hs));
			json_object_foreach(h, k, v) {
				hs[i].name = (char *)k;
				hs[i].value = (char *)(json_string_value(v) ? json_string_value(v) : "");
				i++;
			}
			n = i;
		}
		memset(&res, 0, sizeof(res));
		res.error = HTTP_OK;
		res.status = r->jentry.status;
		res.body = body;
		res.body_len = body_len;
		res.headers = hs;
		res.n_headers = n;
		res.url = r->url;
		r->attempt = 0;
		{
			/* A body journaled before it was checked (an older pipectl)
			 * fails like the answer it was. */
			char *msg = NULL;
			if (request_check_body(r, &res, &msg) != 0) {
				char *final = xasprintf("%s %s: %s (from the journal)", r->method,
				                        r->url, msg);
				request_finish(r, false, final, &res);
				free(final);
				free(msg);
			} else {
				request_finish(r, true, NULL, &res);
			}
		}
		free(hs);
		free(body);
		json_decref(h);
	}
}

bool journal_serve(struct request *r)
{
	struct requester *rq = r->rq;
	struct request **pp = &rq->jq_head;
	int found;

	if (!rq->journal || !rq->serve)
		return false;
	found = state_journal_get(rq->journal, rq->run_id, r->stage, r->fingerprint, &r->jentry);
	if (found > 0 && r->jentry.digest && r->body_format != REQUEST_BODY_ANY) {
		/* Only the digest was kept: fetch the body again. */
		log_debug("stage %s: %s %s: fetching again (a body of %zu bytes is not "
		          "journaled)", r->stage, r->method, r->url, r->jentry.size);
		r->refetch = r->jentry.digest;
		r->jentry.digest = NULL;
		journal_entry_free(&r->jentry);
		found = 0;
	}
	if (found < 0)
		log_warn("cannot read the journal: %s", state_errmsg(rq->journal));
	if (found <= 0)
		return false;
	rq->hits++;
	r->from_journal = true;
	r->state = R_ADMIT;
	while (*pp)
		pp = &(*pp)->q_next;
	r->q_next = NULL;
	*pp = r;
	if (!ev_is_active(&rq->jtimer)) {
		ev_timer_init(&rq->jtimer, journal_cb, 0, 0);
		rq->jtimer.data = rq;
		ev_timer_start(rq->loop, &rq->jtimer);
	}
	return true;
}

void journal_unqueue(struct request *r)
{
	struct request **pp = &r->rq->jq_head;

	while (*pp && *pp != r)
		pp = &(*pp)->q_next;
	if (*pp)
		*pp = r->q_next;
}
