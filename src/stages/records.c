/*
 * records: document bytes -> records -> batches. The identity fast path
 * skips jq entirely, which matters for large JSON-lines inputs.
 */
#include "stages/records.h"

#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/flow.h"
#include "base/jsonr.h"
#include "base/util.h"

static void linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	emitter_flush(w->data);
}

/* Starts the linger timer when the batch just got its first record. */
static void linger_arm(struct emitter *em)
{
	if (json_array_size(em->batch) > 0 && !ev_is_active(&em->linger))
		ev_timer_start(engine_loop(em->st->eng), &em->linger);
}

int emitter_init(struct emitter *em, struct stage *st, const struct sval *records,
                 char **err)
{
	const char *src = records ? records->s : NULL;

	memset(em, 0, sizeof(*em));
	ev_timer_init(&em->linger, linger_cb, EMITTER_LINGER, 0);
	em->linger.data = em;
	em->st = st;
	em->max = (size_t)engine_batch_size(st->eng);
	em->batch = json_array();
	if (src) {
		const char *p = src;
		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (strcmp(p, ".") == 0 || *p == '\0')
			src = NULL;
	}
	if (src) {
		char *msg = NULL;
		em->records = expr_compile(src, engine_scope(st->eng), &msg);
		if (!em->records) {
			*err = xasprintf("invalid jq expression in \"records\": %s", msg);
			free(msg);
			return -1;
		}
	}
	return 0;
}

void emitter_free(struct emitter *em)
{
	if (em->st && ev_is_active(&em->linger))
		ev_timer_stop(engine_loop(em->st->eng), &em->linger);
	expr_free(em->records);
	json_decref(em->batch);
	engine_release(em->lin);
	em->records = NULL;
	em->batch = NULL;
	em->lin = NULL;
}

void emitter_flush(struct emitter *em)
{
	if (ev_is_active(&em->linger))
		ev_timer_stop(engine_loop(em->st->eng), &em->linger);
	if (json_array_size(em->batch) == 0) {
		engine_release(em->lin);   /* nothing came of those inputs */
		em->lin = NULL;
		return;
	}
	/* The batch may hold records of several inputs: it carries all their
	 * lineages, so none is acked before it is loaded. */
	engine_emit_lineage(em->st, em->batch, em->lin);
	engine_release(em->lin);
	em->lin = NULL;
	em->batch = json_array();
}

/* Records are being added while st->lineage is current: the batch carries it. */
static void note_lineage(struct emitter *em)
{
	if (em->st->lineage)
		em->lin = flow_union(em->lin, em->st->lineage);
}

int emitter_doc(struct emitter *em, json_t *doc, const char *origin, char **err)
{
	note_lineage(em);
	if (!em->records) {
		json_array_append(em->batch, doc);
	} else {
		char *msg = NULL;
		if (expr_run(em->records, doc, em->batch, &msg) != 0) {
			*err = xasprintf("%s: \"records\" expression failed: %s", origin, msg);
			free(msg);
			return -1;
		}
	}
	if (json_array_size(em->batch) >= em->max)
		emitter_flush(em);
	else
		linger_arm(em);
	return 0;
}

void emitter_add(struct emitter *em, json_t *rec)
{
	note_lineage(em);
	json_array_append_new(em->batch, rec);
	if (json_array_size(em->batch) >= em->max)
		emitter_flush(em);
	else
		linger_arm(em);
}

static json_t *parse_doc(const char *p, size_t n, const char *origin, long line,
                         char **err)
{
	json_error_t jerr;
	json_t *doc = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

	if (!doc) {
		if (line > 0)
			*err = xasprintf("%s: line %ld: invalid JSON: %s", origin, line, jerr.text);
		else
			*err = xasprintf("%s: invalid JSON at line %d, column %d: %s", origin,
			                 jerr.line, jerr.column, jerr.text);
	}
	return doc;
}

long emitter_feed(struct emitter *em, const char *text, size_t len,
                  enum data_format fmt, const char *origin, long first_line,
                  char **err)
{
	long docs = 0, line = first_line;
	const char *p = text, *end = text + len;

	if (fmt == FMT_JSON) {
		json_t *doc = parse_doc(text, len, origin, 0, err);
		int rc;
		if (!doc)
			return -1;
		rc = emitter_doc(em, doc, origin, err);
		json_decref(doc);
		return rc ? -1 : 1;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		json_t *doc;
		int rc = records_parse_line(p, (size_t)(e - p), origin, line, &doc, err);
		if (rc < 0)
			return -1;
		if (rc > 0) {
			rc = emitter_doc(em, doc, origin, err);
			json_decref(doc);
			if (rc)
				return -1;
			docs++;
		}
		line++;
		p = nl ? nl + 1 : end;
	}
	return docs;
}

/* One line of JSON lines: 1 with *doc, 0 when blank, -1 with *err. */
int records_parse_line(const char *p, size_t n, const char *origin, long line,
                       json_t **doc, char **err)
{
	const char *q, *e = p + n;

	*doc = NULL;
	for (q = p; q < e && (*q == ' ' || *q == '\t' || *q == '\r'); q++)
		;
	if (q == e)
		return 0;
	/* The fast reader handles the common case; jansson the rest, with its
	 * own words for what is wrong. */
	*doc = jsonr_parse(p, n);
	if (!*doc)
		*doc = parse_doc(p, n, origin, line, err);
	return *doc ? 1 : -1;
}
