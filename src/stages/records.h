/*
 * records: what the two fetch kinds share: turning a document's bytes (one
 * JSON document, or JSON lines) into records with the stage's `records:`
 * expression, and emitting them in batches of the run's batch size.
 */
#ifndef PIPECTL_RECORDS_H
#define PIPECTL_RECORDS_H

#include <stddef.h>
#include <ev.h>
#include <jansson.h>
#include "core/spec.h"
#include "expr/expr.h"
#include "core/stage.h"

struct emitter {
	struct stage *st;
	struct expr *records;          /* NULL: identity (each document is a record) */
	json_t *batch;                 /* being filled */
	size_t max;                    /* records per batch */
	ev_timer linger;               /* flushes a partial batch EMITTER_LINGER after
	                                  its first record, so a slow source streams */
	struct flow_set *lin;          /* lineages of the records in batch (a stage
	                                  with needs: st->lineage when each was added) */
};

/* Seconds a partial batch may wait for more records. */
#define EMITTER_LINGER 0.05

/* Compiles `records:` (NULL or "." means identity). Returns 0 or -1, *err. */
int emitter_init(struct emitter *em, struct stage *st, const struct sval *records,
                 char **err);
void emitter_free(struct emitter *em);

/*
 * Parses text (len bytes) as one JSON document, or as JSON lines when fmt is
 * FMT_JSONL (first_line numbers the lines in messages), runs `records:` on
 * each document and adds the results to the current batch, emitting full
 * batches. origin names the source in messages (a URL or a path). Returns
 * the number of documents parsed, or -1 with *err set (malloc'd).
 */
long emitter_feed(struct emitter *em, const char *text, size_t len,
                  enum data_format fmt, const char *origin, long first_line,
                  char **err);
/*
 * Parses one line of JSON lines (n bytes, without its newline; line numbers
 * it in messages). Returns 1 with *doc (a new reference), 0 for a blank
 * line, or -1 with *err (malloc'd) in emitter_feed's words. Touches no
 * emitter: safe on a worker thread.
 */
int records_parse_line(const char *p, size_t n, const char *origin, long line,
                       json_t **doc, char **err);
/* Adds one parsed document (borrowed). Returns 0 or -1 with *err. */
int emitter_doc(struct emitter *em, json_t *doc, const char *origin, char **err);
/* Emits the partial batch, if any. */
void emitter_flush(struct emitter *em);
/* Adds one record (stolen) to the batch, emitting it when full. */
void emitter_add(struct emitter *em, json_t *rec);

#endif
