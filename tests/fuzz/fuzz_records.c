/*
 * fuzz_records: the record parsers of the fetch stages (stages/records.c):
 * a response body or file as one JSON document or as JSON lines, through a
 * `records:` expression (or the identity fast path), into batches.
 *
 * Input: byte 0 picks the format (bit 0: JSON lines), the `records:`
 * program (bits 1-3) and the batch size (bits 4-5); the rest is the body.
 * The engine functions the emitter calls are replaced here (the emitted
 * batches are counted and dropped), so no run, state or loop is needed.
 *
 * Checks: batches are never empty (and, with the identity program, never
 * over the batch size); an error comes with a message and a success without
 * one; with the identity program every parsed document is emitted as one
 * record.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "stages/records.h"
#include "base/util.h"

static const char *const programs[] = {
	NULL,                          /* identity: no jq at all */
	".|.",                         /* through jq, unchanged (number conversion) */
	".[]?",
	".items[]? // empty",
	"tostream",
	"if type == \"object\" then {id, big: .big, s: (.s | tostring?)} else . end",
	"[paths] | length",
	".. | select(type == \"number\")",
};
#define N_PROGRAMS (sizeof(programs) / sizeof(programs[0]))
static const int batch_sizes[] = { 1, 2, 7, 500 };
#define N_BATCHES (sizeof(batch_sizes) / sizeof(batch_sizes[0]))

static struct ev_loop *loop;
static struct expr_scope scope;
static int cur_batch;
static size_t emitted;
static struct stage stages[N_PROGRAMS][N_BATCHES];
static struct emitter emitters[N_PROGRAMS][N_BATCHES];

/* ---- the engine, as far as the emitter sees it */

struct ev_loop *engine_loop(struct engine *e)
{
	return loop;
}

int engine_batch_size(struct engine *e)
{
	return cur_batch;
}

const struct expr_scope *engine_scope(struct engine *e)
{
	return &scope;
}

uint64_t engine_emit_lineage(struct stage *st, json_t *batch, struct flow_set *lin)
{
	size_t k = (size_t)(st - &stages[0][0]), n = json_array_size(batch);

	FUZZ_CHECK(n > 0, "empty batch emitted");
	/* One document's outputs go into the batch together (expr_run appends
	 * them all), so only the identity program keeps batches within size. */
	if (!programs[k / N_BATCHES])
		FUZZ_CHECK(n <= (size_t)batch_sizes[k % N_BATCHES], "batch over the batch size");
	emitted += n;
	json_decref(batch);
	return 0;
}

/* The fake stages are pushed nothing, so their lineage is always NULL. */
void engine_release(struct flow_set *hold)
{
}

/* At exit, so that LeakSanitizer sees what is still allocated as freed:
 * a live jq_state points at its stack's end, which LSan does not count as
 * a reference. */
static void cleanup(void)
{
	size_t p, b;

	for (p = 0; p < N_PROGRAMS; p++)
		for (b = 0; b < N_BATCHES; b++)
			emitter_free(&emitters[p][b]);
	json_decref((json_t *)scope.params);
	json_decref((json_t *)scope.run);
	ev_loop_destroy(loop);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t p, b;

	loop = ev_loop_new(EVFLAG_AUTO);
	scope.params = json_object();
	scope.run = json_pack("{s:i, s:s, s:s}", "id", 1, "pipeline", "fuzz", "dir", "/");
	for (p = 0; p < N_PROGRAMS; p++) {
		for (b = 0; b < N_BATCHES; b++) {
			struct sval sv = { (char *)programs[p], { NULL, 0, 0 } };
			char *err = NULL;
			cur_batch = batch_sizes[b];
			if (emitter_init(&emitters[p][b], &stages[p][b], programs[p] ? &sv : NULL,
			                 &err) != 0) {
				fprintf(stderr, "%s: %s\n", programs[p], err);
				exit(2);
			}
		}
	}
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct emitter *em;
	size_t prog, batch;
	enum data_format fmt;
	char *err = NULL;
	long docs;

	if (size < 1)
		return 0;
	fmt = (data[0] & 1) ? FMT_JSONL : FMT_JSON;
	prog = (size_t)(data[0] >> 1 & 7) % N_PROGRAMS;
	batch = (size_t)(data[0] >> 4 & 3) % N_BATCHES;
	em = &emitters[prog][batch];
	emitted = 0;
	docs = emitter_feed(em, (const char *)data + 1, size - 1, fmt, "fuzz://input",
	                    fmt == FMT_JSONL ? 1 : 0, &err);
	FUZZ_CHECK(docs < 0 ? err != NULL : err == NULL, "error and message disagree");
	/* The partial batch goes out now, as at the end of a response. */
	emitter_flush(em);
	if (docs >= 0 && !programs[prog])
		FUZZ_CHECK(emitted == (size_t)docs, "identity lost or added records");
	if (docs >= 0 && fmt == FMT_JSON)
		FUZZ_CHECK(docs == 1, "a JSON body is one document");
	free(err);
	return 0;
}
