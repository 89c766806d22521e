/*
 * fetch.file: a source stage that streams a local file. JSON lines are read
 * in chunks of CHUNK bytes, one chunk per resume(), so memory stays bounded
 * by the chunk and the queues however large the file is; the stage reads on
 * only while the stages it feeds have room. A `format: json` file is one
 * document and is read whole.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "stages/http_opts.h"
#include "expr/expr.h"
#include "stages/records.h"
#include "base/util.h"

#define CHUNK (256 * 1024)

struct fetch_file {
	struct emitter em;
	char *path;
	FILE *f;
	struct buf pending;            /* bytes after the last complete line */
	long line;                     /* line number of pending's first line */
	bool stopped;
};

static int ff_create(struct stage *st, char **err)
{
	const struct fetch_spec *fs = st->spec->opts;
	struct fetch_file *c = xcalloc(1, sizeof(*c));
	char *msg = NULL, *rel;
	size_t off;
	struct expr *t;

	st->ctx = c;
	buf_init(&c->pending);
	c->line = 1;
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
	fclose(c->f);
	c->f = NULL;
	engine_stage_done(st);
}

static void ff_fail(struct stage *st, char *err)
{
	engine_stage_fail(st, "%s", err);
	free(err);
}

/* Reads one chunk and emits the complete lines in it. */
static void ff_step(struct stage *st)
{
	struct fetch_file *c = st->ctx;
	const struct fetch_spec *fs = st->spec->opts;
	char *err = NULL;
	size_t n, keep_from, i;
	long docs;

	if (c->stopped || !c->f)
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
	xgrow(&c->pending.data, &c->pending.cap, c->pending.len + CHUNK + 1, 1);
	n = fread(c->pending.data + c->pending.len, 1, CHUNK, c->f);
	if (n == 0 && ferror(c->f)) {
		engine_stage_fail(st, "cannot read %s: %s", c->path, strerror(errno));
		return;
	}
	c->pending.len += n;
	c->pending.data[c->pending.len] = '\0';
	if (n == 0) {                  /* end of file: the last line may lack '\n' */
		docs = emitter_feed(&c->em, c->pending.data, c->pending.len, FMT_JSONL,
		                    c->path, c->line, &err);
		if (docs < 0)
			{ ff_fail(st, err); return; }
		st->stats.records_in += docs;
		buf_reset(&c->pending);
		ff_finish_ok(st);
		return;
	}
	/* Feed everything up to the last newline; keep the partial line. */
	keep_from = c->pending.len;
	while (keep_from > 0 && c->pending.data[keep_from - 1] != '\n')
		keep_from--;
	if (keep_from > 0) {
		docs = emitter_feed(&c->em, c->pending.data, keep_from, FMT_JSONL, c->path,
		                    c->line, &err);
		if (docs < 0)
			{ ff_fail(st, err); return; }
		st->stats.records_in += docs;
		for (i = 0; i < keep_from; i++)
			if (c->pending.data[i] == '\n')
				c->line++;
		memmove(c->pending.data, c->pending.data + keep_from, c->pending.len - keep_from);
		c->pending.len -= keep_from;
		c->pending.data[c->pending.len] = '\0';
	}
	engine_touch(st);
	/* Go on when there is room; the engine calls resume() then. */
	if (engine_may_emit(st))
		engine_want_run(st);
}

/* One file: `requests` counts it once, `records_in` counts documents. */
static void ff_start(struct stage *st)
{
	st->stats.requests = 1;
	ff_step(st);
}
static void ff_resume(struct stage *st) { ff_step(st); }

static void ff_stop(struct stage *st)
{
	struct fetch_file *c = st->ctx;
	if (c)
		c->stopped = true;
}

static void ff_destroy(struct stage *st)
{
	struct fetch_file *c = st->ctx;

	if (!c)
		return;
	emitter_free(&c->em);
	if (c->f)
		fclose(c->f);
	buf_free(&c->pending);
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
