/*
 * fetch.file: a source stage that streams a local file. JSON lines are read
 * and parsed on a worker thread (parsing is most of the work on this path,
 * and the loop has the records' transform and load to do meanwhile). The
 * worker hands over parsed documents in items of up to a batch, at most
 * FF_AHEAD items ahead of the loop, so memory stays bounded however large
 * the file is; the stage emits only while the stages it feeds have room.
 * A `format: json` file is one document and is read whole.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "stages/http_opts.h"
#include "expr/expr.h"
#include "stages/records.h"
#include "base/util.h"

#define CHUNK (256 * 1024)

/* Items the worker may have parsed before the loop takes them. */
#define FF_AHEAD 2

/* Parsed lines handed from the worker to the loop. */
struct ff_item {
	json_t *docs;                  /* array of documents, in file order */
	char *err;                     /* the line (or read) that failed, last item */
	bool eof;                      /* the last item */
	struct ff_item *next;
};

struct fetch_file {
	struct emitter em;
	char *path;
	FILE *f;                       /* until the worker takes it */
	FILE *wf;                      /* the worker's */
	bool stopped;
	/* The worker. It owns its FILE and reads path; the queue and quit
	 * are shared under lock. */
	bool running;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t space;          /* the queue has room, or quit */
	struct ff_item *head, *tail;
	size_t queued;
	bool quit;
	ev_async ready;                /* the worker queued an item */
	struct ev_loop *loop;
	size_t max;                    /* documents per item */
};

static void ff_item_free(struct ff_item *it)
{
	json_decref(it->docs);
	free(it->err);
	free(it);
}

/* Worker: queues an item, waiting for room. Returns false when the loop
 * asked it to quit (the item is dropped). */
static bool ff_put(struct fetch_file *c, json_t *docs, char *err, bool eof)
{
	struct ff_item *it = xcalloc(1, sizeof(*it));

	it->docs = docs;
	it->err = err;
	it->eof = eof;
	pthread_mutex_lock(&c->lock);
	while (c->queued >= FF_AHEAD && !c->quit)
		pthread_cond_wait(&c->space, &c->lock);
	if (c->quit) {
		pthread_mutex_unlock(&c->lock);
		ff_item_free(it);
		return false;
	}
	if (c->tail)
		c->tail->next = it;
	else
		c->head = it;
	c->tail = it;
	c->queued++;
	pthread_mutex_unlock(&c->lock);
	ev_async_send(c->loop, &c->ready);
	return true;
}

/* Worker: reads the file in chunks and parses its lines, numbering them as
 * emitter_feed does (blank lines count, the last may lack its newline). */
static void *ff_worker(void *arg)
{
	struct fetch_file *c = arg;
	FILE *f = c->wf;
	json_t *docs = json_array(), *doc;
	char *err = NULL;
	struct buf pending;
	size_t n, keep_from;
	long line = 1;

	buf_init(&pending);
	for (;;) {
		const char *p, *end, *nl;
		xgrow(&pending.data, &pending.cap, pending.len + CHUNK + 1, 1);
		n = fread(pending.data + pending.len, 1, CHUNK, f);
		if (n == 0 && ferror(f)) {
			err = xasprintf("cannot read %s: %s", c->path, strerror(errno));
			break;
		}
		pending.len += n;
		/* At the end of the file the last line may lack its '\n'. */
		keep_from = pending.len;
		while (n > 0 && keep_from > 0 && pending.data[keep_from - 1] != '\n')
			keep_from--;
		p = pending.data;
		end = p + keep_from;
		while (p < end) {
			nl = memchr(p, '\n', (size_t)(end - p));
			if (records_parse_line(p, (size_t)((nl ? nl : end) - p), c->path, line,
			                       &doc, &err) < 0)
				goto done;
			if (doc)
				json_array_append_new(docs, doc);
			if (json_array_size(docs) >= c->max) {
				if (!ff_put(c, docs, NULL, false))
					goto quit;
				docs = json_array();
			}
			line++;
			p = nl ? nl + 1 : end;
		}
		memmove(pending.data, pending.data + keep_from, pending.len - keep_from);
		pending.len -= keep_from;
		if (n == 0)
			break;
	}
done:
	ff_put(c, docs, err, true);
	docs = NULL;
quit:
	json_decref(docs);
	buf_free(&pending);
	fclose(f);
	return NULL;
}

/* Stops the worker (if it runs) and drops what it queued. */
static void ff_worker_end(struct fetch_file *c)
{
	struct ff_item *it;

	if (!c->running)
		return;
	pthread_mutex_lock(&c->lock);
	c->quit = true;
	pthread_cond_broadcast(&c->space);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	c->running = false;
	ev_async_stop(c->loop, &c->ready);
	while ((it = c->head) != NULL) {
		c->head = it->next;
		ff_item_free(it);
	}
	c->tail = NULL;
	c->queued = 0;
}

/* The worker queued an item: the stage has work (taken in resume, when the
 * stages downstream have room). */
static void ff_ready_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct stage *st = w->data;
	struct fetch_file *c = st->ctx;

	(void)loop;
	(void)revents;
	if (!c->stopped)
		engine_want_run(st);
}

static void ff_worker_start(struct stage *st)
{
	struct fetch_file *c = st->ctx;

	c->loop = engine_loop(st->eng);
	c->max = (size_t)engine_batch_size(st->eng);
	ev_async_init(&c->ready, ff_ready_cb);
	c->ready.data = st;
	ev_async_start(c->loop, &c->ready);
	c->wf = c->f;
	c->f = NULL;
	if (pthread_create(&c->thread, NULL, ff_worker, c) != 0) {
		fprintf(stderr, "pipectl: cannot start a thread to read %s\n", c->path);
		abort();
	}
	c->running = true;
}

static int ff_create(struct stage *st, char **err)
{
	const struct fetch_spec *fs = st->spec->opts;
	struct fetch_file *c = xcalloc(1, sizeof(*c));
	char *msg = NULL, *rel;
	size_t off;
	struct expr *t;

	st->ctx = c;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->space, NULL);
	if (emitter_init(&c->em, st, &fs->records, err) != 0)
		return -1;
	t = expr_template(fs->file.s, engine_scope(st->eng), &msg, &off);
	if (!t) {
		*err = xasprintf("invalid template in \"file\": %s", msg);
		free(msg);
		return -1;
	}
	rel = expr_render(t, NULL, &msg);
	expr_free(t);
	if (!rel) {
		*err = xasprintf("cannot render \"file\": %s", msg);
		free(msg);
		return -1;
	}
	c->path = path_join(engine_spec(st->eng)->dir, rel);
	free(rel);
	c->f = fopen(c->path, "rb");
	if (!c->f) {
		*err = xasprintf("cannot open %s: %s", c->path, strerror(errno));
		return -1;
	}
	return 0;
}

static void ff_finish_ok(struct stage *st)
{
	struct fetch_file *c = st->ctx;

	emitter_flush(&c->em);
	ff_worker_end(c);
	if (c->f)
		fclose(c->f);
	c->f = NULL;
	engine_stage_done(st);
}

static void ff_fail(struct stage *st, char *err)
{
	ff_worker_end(st->ctx);
	engine_stage_fail(st, "%s", err);
	free(err);
}

/* Emits the documents of one item the worker parsed, if there is one (the
 * worker's ev_async asks for a run when there is). */
static void ff_take(struct stage *st)
{
	struct fetch_file *c = st->ctx;
	struct ff_item *it;
	char *err = NULL;
	json_t *doc;
	size_t i;

	pthread_mutex_lock(&c->lock);
	it = c->head;
	if (it) {
		c->head = it->next;
		if (!c->head)
			c->tail = NULL;
		c->queued--;
		pthread_cond_signal(&c->space);
	}
	pthread_mutex_unlock(&c->lock);
	if (!it)
		return;
	json_array_foreach(it->docs, i, doc) {
		if (emitter_doc(&c->em, doc, c->path, &err) != 0) {
			ff_item_free(it);
			ff_fail(st, err);
			return;
		}
	}
	st->stats.records_in += (int64_t)json_array_size(it->docs);
	if (it->err) {
		err = it->err;
		it->err = NULL;
		ff_item_free(it);
		ff_fail(st, err);
		return;
	}
	if (it->eof) {
		ff_item_free(it);
		ff_finish_ok(st);
		return;
	}
	ff_item_free(it);
	engine_touch(st);
	/* Go on when there is room; the engine calls resume() then. */
	if (engine_may_emit(st))
		engine_want_run(st);
}

/* A JSON document: read whole. JSON lines: the worker's next item. */
static void ff_step(struct stage *st)
{
	struct fetch_file *c = st->ctx;
	const struct fetch_spec *fs = st->spec->opts;
	char *err = NULL;
	long docs;

	if (c->stopped || (!c->f && !c->running))
		return;
	if (fs->format == FMT_JSON) {
		size_t len;
		char *text;
		fclose(c->f);
		c->f = NULL;
		text = read_file(c->path, &len);
		if (!text) {
			engine_stage_fail(st, "cannot read %s: %s", c->path, strerror(errno));
			return;
		}
		docs = emitter_feed(&c->em, text, len, FMT_JSON, c->path, 0, &err);
		free(text);
		if (docs < 0)
			{ ff_fail(st, err); return; }
		st->stats.records_in += docs;
		emitter_flush(&c->em);
		engine_stage_done(st);
		return;
	}
	ff_take(st);
}

/* One file: `requests` counts it once, `records_in` counts documents. */
static void ff_start(struct stage *st)
{
	const struct fetch_spec *fs = st->spec->opts;

	st->stats.requests = 1;
	if (fs->format != FMT_JSON && ((struct fetch_file *)st->ctx)->f)
		ff_worker_start(st);
	ff_step(st);
}
static void ff_resume(struct stage *st) { ff_step(st); }

static void ff_stop(struct stage *st)
{
	struct fetch_file *c = st->ctx;
	if (c) {
		c->stopped = true;
		ff_worker_end(c);
	}
}

static void ff_destroy(struct stage *st)
{
	struct fetch_file *c = st->ctx;

	if (!c)
		return;
	ff_worker_end(c);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->space);
	emitter_free(&c->em);
	if (c->f)
		fclose(c->f);
	free(c->path);
	free(c);
	st->ctx = NULL;
}

#define FS(field) offsetof(struct fetch_spec, field)
static const char *const formats[] = { "json", "jsonl", NULL };

/* Written beside fetch.http's options (fetch: {file: ...}), in its struct;
 * the keys a fetch always took stay accepted. */
const struct opt fetch_file_options[] = {
	{ .key = "file", .type = OPT_TEMPLATE, .offset = FS(file), .flags = OPT_SELECTOR,
	  .doc = "local path template, relative to the pipeline file's directory" },
	{ .key = "format", .type = OPT_ENUM, .offset = FS(format), .def = "json",
	  .words = formats, .doc = "what the file holds: one JSON document or JSON lines" },
	{ .key = "records", .type = OPT_JQ, .offset = FS(records), .def = ".",
	  .doc = "jq: the document (or each line) -> 0..n records" },
	{ .key = "timeout", .type = OPT_DURATION, .offset = FS(timeout), .flags = OPT_INHERIT,
	  .doc = "accepted for symmetry with url; unused" },
	{ .key = "connect_timeout", .type = OPT_DURATION, .offset = FS(connect_timeout),
	  .flags = OPT_INHERIT, .doc = "accepted for symmetry with url; unused" },
	{ .key = "concurrency", .type = OPT_INT, .offset = FS(concurrency), .min = 1,
	  .max = 10000, .flags = OPT_INHERIT, .doc = "accepted for symmetry with url; unused" },
	{ .key = "max_body", .type = OPT_SIZE, .offset = FS(max_body), .flags = OPT_INHERIT,
	  .doc = "accepted for symmetry with url; unused" },
	{ .key = "tls_verify", .type = OPT_BOOL, .offset = FS(tls_verify), .flags = OPT_INHERIT,
	  .doc = "accepted for symmetry with url; unused" },
	{ .key = "retry", .type = OPT_CUSTOM, .offset = FS(retry), .read = opt_read_retry,
	  .free = opt_free_retry, .shape = "retry", .doc = "accepted for symmetry with url; unused" },
	{ .key = "merge", .type = OPT_JQ, .offset = FS(merge),
	  .doc = "only with needs, which a file fetch cannot have" },
	{ .key = NULL },
};

const struct stage_kind stage_fetch_file = {
	.name = "fetch.file",
	.description = "stream a local file (JSON lines in chunks, or one JSON document)",
	.role = "fetch",
	.selector = "file",
	.source = true,
	.options = fetch_file_options,
	.opts_size = sizeof(struct fetch_spec),
	.check = fetch_opts_check,
	.free_opts = http_opts_free,
	.refs = fetch_opts_refs,
	.create = ff_create,
	.start = ff_start,
	.resume = ff_resume,
	.stop = ff_stop,
	.destroy = ff_destroy,
};
