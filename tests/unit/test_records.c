/*
 * test_records: the emitter of stages/records.c, which the fetch kinds use
 * to turn a document's bytes into records and batches: `records:`
 * compilation (identity forms, errors), JSON and JSON-lines parsing (empty
 * input, blank lines, CRLF, scalars and arrays as documents, error messages
 * with their origin and line), the `records:` expression producing 0..n
 * values and failing, batches cut at the batch size, and the linger timer
 * that flushes a partial batch.
 *
 * The emitter reaches the engine through four functions only; this file
 * defines them over a fake engine (a loop, a batch size, a scope and the
 * list of emitted batches), so no pipeline, spec or real engine is built.
 * The archive's engine.o is not linked: nothing else here refers to it.
 */
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <jansson.h>

#include "core/engine.h"
#include "stages/records.h"
#include "tap.h"

/* ------------------------------------------------------------------ fake engine */

struct engine {
	struct ev_loop *loop;
	int batch_size;
	struct expr_scope scope;
	json_t *emitted;               /* array of the batches engine_emit got */
};

struct ev_loop *engine_loop(struct engine *e)
{
	return e->loop;
}

const struct expr_scope *engine_scope(struct engine *e)
{
	return &e->scope;
}

int engine_batch_size(struct engine *e)
{
	return e->batch_size;
}

/* Like the engine's: takes the batch; an empty one would be dropped, so the
 * fake records it to catch an emitter that sends one. */
void engine_emit(struct stage *st, json_t *batch)
{
	json_array_append_new(st->eng->emitted, batch);
}

static struct engine eng;
static struct stage stage;

/* A fresh fake engine with the given batch size and params (JSON text or
 * NULL); nothing emitted yet. */
static void reset(int batch_size, const char *params)
{
	json_decref(eng.emitted);
	json_decref((json_t *)eng.scope.params);
	eng.batch_size = batch_size;
	eng.emitted = json_array();
	eng.scope.params = params ? json_loads(params, 0, NULL) : NULL;
	memset(&stage, 0, sizeof(stage));
	stage.eng = &eng;
}

/* emitter_init with `records:` src (NULL: the key absent). The only place
 * that builds a spec value. */
static int init(struct emitter *em, const char *src, char **err)
{
	struct sval v;

	memset(&v, 0, sizeof(v));
	v.s = (char *)src;
	*err = NULL;
	return emitter_init(em, &stage, src ? &v : NULL, err);
}

/* Compact JSON text of v (malloc'd; the caller frees). */
static char *dump(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static char *text_batch;
static char *text_emitted;

/* The records waiting in the current batch, as compact JSON (valid until the
 * next call). */
static const char *pending(const struct emitter *em)
{
	free(text_batch);
	text_batch = dump(em->batch);
	return text_batch;
}

/* The batches emitted so far, as compact JSON (valid until the next call). */
static const char *emitted(void)
{
	free(text_emitted);
	text_emitted = dump(eng.emitted);
	return text_emitted;
}

/* emitter_feed on a C string. */
static long feed(struct emitter *em, const char *text, enum data_format fmt,
                 long first_line, char **err)
{
	*err = NULL;
	return emitter_feed(em, text, strlen(text), fmt, "src.json", first_line, err);
}

/* Whether s starts with prefix (NULL s: no). */
static bool starts(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ init */

static void test_init(void)
{
	static const char *const identities[] = { ".", "  .", "\n\t.", "", " " };
	static const char *const shown[] = { ".", "  .", "\\n\\t.", "", " " };
	struct emitter em;
	char *err;
	size_t i;

	reset(7, NULL);
	is_int(init(&em, NULL, &err), 0, "init: no records key");
	ok(em.records == NULL, "init: no records key is the identity");
	is_int((long long)em.max, 7, "init: the batch size comes from the engine");
	is_str(pending(&em), "[]", "init: the batch starts empty");
	ok(em.st == &stage, "init: the emitter keeps its stage");
	emitter_free(&em);
	ok(em.batch == NULL && em.records == NULL, "free: clears the batch and expression");

	for (i = 0; i < sizeof(identities) / sizeof(identities[0]); i++) {
		int rc = init(&em, identities[i], &err);

		ok(rc == 0 && em.records == NULL, "init: records \"%s\" is the identity",
		   shown[i]);
		emitter_free(&em);
	}

	is_int(init(&em, ".items[]", &err), 0, "init: a jq expression compiles");
	ok(em.records != NULL, "init: a jq expression is kept");
	emitter_free(&em);

	is_int(init(&em, ".[", &err), -1, "init: a syntax error fails");
	ok(starts(err, "invalid jq expression in \"records\": "),
	   "init: the message names the key: %s", err ? err : "(null)");
	ok(err && strstr(err, "syntax error") != NULL,
	   "init: the message carries jq's words: %s", err ? err : "(null)");
	free(err);
	emitter_free(&em);

	is_int(init(&em, "nosuchfunction(1)", &err), -1, "init: an unknown function fails");
	ok(starts(err, "invalid jq expression in \"records\": "),
	   "init: unknown function message: %s", err ? err : "(null)");
	free(err);
	emitter_free(&em);
}

/* ------------------------------------------------------------------ JSON */

static void test_json(void)
{
	struct emitter em;
	char *err;

	reset(10, NULL);
	init(&em, NULL, &err);
	is_int(feed(&em, "{\"a\": 1}", FMT_JSON, 0, &err), 1, "json: one document parsed");
	is_str(pending(&em), "[{\"a\":1}]", "json identity: the object is one record");
	is_str(emitted(), "[]", "json: a partial batch is not emitted yet");
	emitter_flush(&em);
	is_str(emitted(), "[[{\"a\":1}]]", "flush: emits the partial batch");
	is_str(pending(&em), "[]", "flush: a new batch is empty");
	emitter_flush(&em);
	is_str(emitted(), "[[{\"a\":1}]]", "flush: an empty batch is not emitted");

	is_int(feed(&em, "[1, 2, 3]", FMT_JSON, 0, &err), 1,
	       "json identity: an array document parsed");
	is_str(pending(&em), "[[1,2,3]]", "json identity: an array document is one record");
	emitter_flush(&em);

	is_int(feed(&em, "42", FMT_JSON, 0, &err), 1, "json: a number is a document");
	is_int(feed(&em, "\"s\"", FMT_JSON, 0, &err), 1, "json: a string is a document");
	is_int(feed(&em, "null", FMT_JSON, 0, &err), 1, "json: null is a document");
	is_str(pending(&em), "[42,\"s\",null]", "json identity: scalars are records");
	emitter_flush(&em);

	is_int(feed(&em, "{\"s\": \"a\\u0000b\"}", FMT_JSON, 0, &err), 1,
	       "json: a NUL escape in a string is accepted");
	ok(json_string_length(json_object_get(json_array_get(em.batch, 0), "s")) == 3,
	   "json: the NUL is kept in the string");
	emitter_flush(&em);

	json_array_clear(eng.emitted);
	is_int(feed(&em, "", FMT_JSON, 0, &err), -1, "json: empty input is an error");
	ok(starts(err, "src.json: invalid JSON at line 1, column 0: "),
	   "json: empty input message: %s", err ? err : "(null)");
	free(err);

	is_int(feed(&em, "{\"a\": 1,\n \"b\": }", FMT_JSON, 0, &err), -1,
	       "json: a syntax error is an error");
	ok(starts(err, "src.json: invalid JSON at line 2, column "),
	   "json: the message has the origin, line and column: %s", err ? err : "(null)");
	free(err);

	is_int(feed(&em, "{} {}", FMT_JSON, 0, &err), -1,
	       "json: two documents in json format are an error");
	ok(starts(err, "src.json: invalid JSON at line 1"),
	   "json: trailing data message: %s", err ? err : "(null)");
	free(err);
	is_str(pending(&em), "[]", "json: nothing is added by input that does not parse");
	is_str(emitted(), "[]", "json: nothing is emitted by input that does not parse");
	emitter_free(&em);
}

/* ------------------------------------------------------------------ JSON lines */

static void test_jsonl(void)
{
	struct emitter em;
	char *err;

	reset(100, NULL);
	init(&em, NULL, &err);
	is_int(feed(&em, "", FMT_JSONL, 1, &err), 0, "jsonl: empty input has no documents");
	ok(err == NULL, "jsonl: empty input is no error");
	is_int(feed(&em, "\n \n\t\r\n", FMT_JSONL, 1, &err), 0,
	       "jsonl: blank lines are no documents");
	is_str(pending(&em), "[]", "jsonl: blank lines add nothing");

	is_int(feed(&em, "1\n\n{\"a\":2}\r\n  [3]  \n\"last\"", FMT_JSONL, 1, &err), 4,
	       "jsonl: counts the documents, skipping blank lines");
	is_str(pending(&em), "[1,{\"a\":2},[3],\"last\"]",
	       "jsonl: CRLF, padding and a last line without newline");

	json_array_clear(em.batch);
	is_int(feed(&em, "1\n2\n\n{x}\n5\n", FMT_JSONL, 10, &err), -1,
	       "jsonl: a bad line is an error");
	ok(starts(err, "src.json: line 13: invalid JSON: "),
	   "jsonl: the message numbers lines from first_line, blank ones too: %s",
	   err ? err : "(null)");
	free(err);
	is_str(pending(&em), "[1,2]", "jsonl: the lines before the bad one are kept");
	emitter_free(&em);

	reset(100, NULL);
	init(&em, ".id", &err);
	is_int(feed(&em, "{\"id\":1}\n{\"id\":2}\n{}\n", FMT_JSONL, 1, &err), 3,
	       "jsonl: records runs on each line");
	is_str(pending(&em), "[1,2,null]", "jsonl: one record per line with .id");
	emitter_free(&em);
}

/* ------------------------------------------------------------------ records: */

static void test_records_expr(void)
{
	struct emitter em;
	char *err;

	reset(100, NULL);
	init(&em, ".items[]", &err);
	is_int(feed(&em, "{\"items\": [{\"n\":1},{\"n\":2},{\"n\":3}]}", FMT_JSON, 0, &err), 1,
	       "records: the document is parsed once");
	is_str(pending(&em), "[{\"n\":1},{\"n\":2},{\"n\":3}]", "records: three outputs, three records");
	is_int(feed(&em, "{\"items\": []}", FMT_JSON, 0, &err), 1,
	       "records: a document with no items parses");
	is_str(pending(&em), "[{\"n\":1},{\"n\":2},{\"n\":3}]", "records: no outputs, no records");
	is_int(feed(&em, "{\"items\": {\"a\": 4}}", FMT_JSON, 0, &err), 1,
	       "records: .items[] over an object");
	is_str(pending(&em), "[{\"n\":1},{\"n\":2},{\"n\":3},4]",
	       "records: an object's values are records");

	json_array_clear(em.batch);
	is_int(feed(&em, "{\"other\": 1}", FMT_JSON, 0, &err), -1,
	       "records: iterating over a missing key fails");
	is_str(err, "src.json: \"records\" expression failed: Cannot iterate over null (null)",
	       "records: the message has the origin and jq's words");
	free(err);
	is_int(feed(&em, "[1]", FMT_JSON, 0, &err), -1, "records: .items of an array fails");
	ok(starts(err, "src.json: \"records\" expression failed: Cannot index array"),
	   "records: indexing an array message: %s", err ? err : "(null)");
	free(err);
	emitter_free(&em);

	reset(100, NULL);
	init(&em, "empty", &err);
	is_int(feed(&em, "{\"a\":1}\n{\"a\":2}\n", FMT_JSONL, 1, &err), 2,
	       "records empty: the documents are counted");
	is_str(pending(&em), "[]", "records empty: no records");
	emitter_flush(&em);
	is_str(emitted(), "[]", "records empty: nothing is emitted");
	emitter_free(&em);

	reset(100, NULL);
	init(&em, "if .bad then error(\"bad row \\(.id)\") else .id end", &err);
	is_int(feed(&em, "{\"id\":1}\n{\"id\":2,\"bad\":true}\n", FMT_JSONL, 1, &err), -1,
	       "records error(): fails the feed");
	is_str(err, "src.json: \"records\" expression failed: bad row 2",
	       "records error(): the message is the error's");
	free(err);
	emitter_free(&em);

	reset(100, "{\"k\": \"v\"}");
	init(&em, "{id: .id, k: params.k}", &err);
	ok(em.records != NULL, "records: params is in scope at compile time");
	feed(&em, "{\"id\": 1}", FMT_JSON, 0, &err);
	is_str(pending(&em), "[{\"id\":1,\"k\":\"v\"}]", "records: params come from the engine's scope");
	emitter_free(&em);
}

/* ------------------------------------------------------------------ batches */

static void test_batches(void)
{
	struct emitter em;
	json_t *doc;
	char *err;
	int i;

	reset(3, NULL);
	init(&em, NULL, &err);
	is_int(feed(&em, "1\n2\n3\n4\n5\n6\n7\n", FMT_JSONL, 1, &err), 7, "batches: 7 lines");
	is_str(emitted(), "[[1,2,3],[4,5,6]]", "batches: cut at the batch size, in order");
	is_str(pending(&em), "[7]", "batches: the rest waits");
	emitter_flush(&em);
	is_str(emitted(), "[[1,2,3],[4,5,6],[7]]", "batches: flush sends the rest");
	emitter_free(&em);

	reset(3, NULL);
	init(&em, NULL, &err);
	for (i = 1; i <= 4; i++)
		emitter_add(&em, json_integer(i));
	is_str(emitted(), "[[1,2,3]]", "add: emits at the batch size");
	is_str(pending(&em), "[4]", "add: the rest waits");
	emitter_free(&em);
	is_str(emitted(), "[[1,2,3]]", "free: drops a partial batch without emitting it");

	reset(2, NULL);
	init(&em, NULL, &err);
	doc = json_pack("{s:i}", "a", 1);
	is_int(emitter_doc(&em, doc, "origin", &err), 0, "doc: adds a parsed document");
	is_int(emitter_doc(&em, doc, "origin", &err), 0, "doc: adds it again");
	is_int((long long)doc->refcount, 3, "doc: the batch holds its own references");
	json_decref(doc);
	is_str(emitted(), "[[{\"a\":1},{\"a\":1}]]", "doc: emits at the batch size");
	emitter_free(&em);

	reset(2, NULL);
	init(&em, ".[]", &err);
	doc = json_pack("[i,i,i]", 1, 2, 3);
	is_int(emitter_doc(&em, doc, "origin", &err), 0, "doc: records runs on it");
	json_decref(doc);
	doc = json_pack("{s:i}", "x", 9);
	is_int(emitter_doc(&em, doc, "origin", &err), 0, "doc: .[] over an object");
	json_decref(doc);
	doc = json_pack("i", 1);
	is_int(emitter_doc(&em, doc, "there", &err), -1, "doc: .[] over a number fails");
	json_decref(doc);
	ok(starts(err, "there: \"records\" expression failed: Cannot iterate over number"),
	   "doc: the message has the origin it was given: %s", err ? err : "(null)");
	free(err);
	emitter_flush(&em);
	/* Every record arrives once and in order, however a document's outputs
	 * are cut into batches. */
	{
		json_t *all = json_array(), *b;
		size_t bi, ri;
		char *got;

		json_array_foreach(eng.emitted, bi, b)
			json_array_foreach(b, ri, doc)
				json_array_append(all, doc);
		got = dump(all);
		is_str(got, "[1,2,3,9]", "doc: every record emitted once, in order");
		free(got);
		json_decref(all);
	}
	emitter_free(&em);

	reset(1, NULL);
	init(&em, ".[]", &err);
	feed(&em, "[[1],[2]]\n[]\n[[3]]\n", FMT_JSONL, 1, &err);
	is_str(emitted(), "[[[1],[2]],[[3]]]", "batch size 1: each document's records go out at once");
	is_str(pending(&em), "[]", "batch size 1: nothing waits");
	emitter_free(&em);
}

/* ------------------------------------------------------------------ linger */

static void test_linger(void)
{
	struct emitter em;
	char *err;

	reset(10, NULL);
	init(&em, NULL, &err);
	ok(!ev_is_active(&em.linger), "linger: idle while the batch is empty");
	feed(&em, "1\n2\n", FMT_JSONL, 1, &err);
	ok(ev_is_active(&em.linger), "linger: armed by the first record of a batch");
	/* The loop has this one timer: ev_run returns once it has fired. */
	ev_run(eng.loop, 0);
	is_str(emitted(), "[[1,2]]", "linger: the timer flushes the partial batch");
	ok(!ev_is_active(&em.linger), "linger: idle after it fired");

	feed(&em, "3\n", FMT_JSONL, 1, &err);
	emitter_flush(&em);
	ok(!ev_is_active(&em.linger), "linger: flush stops it");
	is_str(emitted(), "[[1,2],[3]]", "linger: flush emitted the batch");

	emitter_free(&em);
	reset(2, NULL);
	init(&em, NULL, &err);
	feed(&em, "1\n2\n", FMT_JSONL, 1, &err);
	ok(!ev_is_active(&em.linger), "linger: a full batch leaves no timer");
	feed(&em, "3\n", FMT_JSONL, 1, &err);
	ok(ev_is_active(&em.linger), "linger: the next partial batch arms it");
	emitter_free(&em);
	ok(!ev_is_active(&em.linger), "linger: free stops it");
	ev_run(eng.loop, 0);
	is_str(emitted(), "[[1,2]]", "linger: after free nothing more is emitted");

	reset(10, NULL);
	init(&em, NULL, &err);
	emitter_add(&em, json_integer(1));
	ok(ev_is_active(&em.linger), "linger: add arms it too");
	ev_run(eng.loop, 0);
	is_str(emitted(), "[[1]]", "linger: and it flushes what add added");
	emitter_free(&em);
}

int main(void)
{
	eng.loop = ev_loop_new(EVFLAG_AUTO);
	test_init();
	test_json();
	test_jsonl();
	test_records_expr();
	test_batches();
	test_linger();
	reset(1, NULL);
	json_decref(eng.emitted);
	free(text_batch);
	free(text_emitted);
	ev_loop_destroy(eng.loop);
	return done_testing();
}
