/*
 * load.file and load.stdout: JSON lines. The file sink writes to a temporary
 * file beside the target and renames it over the target only when the stage
 * succeeds, so readers see the old file or the complete new one, never a
 * partial one; a failed or interrupted run removes the temporary file. The
 * temporary file is always a new one (O_EXCL, O_NOFOLLOW, an unpredictable
 * name), never something planted at its name. A dlq replay starts the
 * temporary file with the target's lines, so replayed records are added.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/engine.h"
#include "base/jsonw.h"
#include "base/util.h"
#include "base/log.h"

/* load.file and load.stdout (no path). */
struct file_opts {
	struct sval path;              /* a template (params, run, env), rendered once per
	                                  run; relative to the pipeline dir */
	int format;                    /* index in formats: jsonl only for now */
};

static const char *const formats[] = { "jsonl", NULL };

struct load_file {
	char *path;                    /* target; NULL for stdout */
	char *tmp;                     /* temporary file being written */
	FILE *f;
	struct buf out;
};

/* Removes temporary files that a killed run left beside path: they are
 * named path.tmp.PID.SUFFIX (path.tmp.PID before), and their process is
 * gone. unlink removes a link planted there, never what it points to. */
static void remove_stale_temps(const char *path)
{
	char *dir = path_dir(path), *prefix;
	const char *base = strrchr(path, '/');
	DIR *d;
	struct dirent *de;
	size_t plen;

	base = base ? base + 1 : path;
	prefix = xasprintf("%s.tmp.", base);
	plen = strlen(prefix);
	if ((d = opendir(dir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			char *end;
			long pid;
			if (strncmp(de->d_name, prefix, plen) != 0)
				continue;
			pid = strtol(de->d_name + plen, &end, 10);
			if ((*end && *end != '.') || pid <= 0 || pid == (long)getpid())
				continue;
			if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
				char *p = path_join(dir, de->d_name);
				unlink(p);
				free(p);
			}
		}
		closedir(d);
	}
	free(prefix);
	free(dir);
}

/* Creates a new file "path.tmp.PID.SUFFIX" (SUFFIX: 12 random hex digits)
 * for writing, with O_CREAT|O_EXCL|O_NOFOLLOW, so an existing file or a
 * symlink at that name is never opened or followed (another name is tried).
 * Mode 0666 less the umask, as fopen would. Returns the FILE and sets *tmp
 * (malloc'd), or NULL with errno set. */
static FILE *create_temp(const char *path, char **tmp)
{
	int tries, fd = -1;
	FILE *f;

	*tmp = NULL;
	for (tries = 0; tries < 100; tries++) {
		unsigned char r[6];
		size_t i;
		char hex[13];

		if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
			/* no entropy yet: the clock still makes names hard to guess */
			unsigned long long t = (unsigned long long)clock() ^
			                       (unsigned long long)(now_wall() * 1e9);
			for (i = 0; i < sizeof(r); i++)
				r[i] = (unsigned char)(t >> (8 * i)) ^ (unsigned char)tries;
		}
		for (i = 0; i < sizeof(r); i++)
			snprintf(hex + 2 * i, 3, "%02x", r[i]);
		free(*tmp);
		*tmp = xasprintf("%s.tmp.%ld.%s", path, (long)getpid(), hex);
		fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0 || !(f = fdopen(fd, "wb"))) {
		int e = errno;
		if (fd >= 0) {
			close(fd);
			unlink(*tmp);
		}
		errno = e;
		return NULL;
	}
	return f;
}

/* Copies the target's content (when there is one) to the start of the
 * temporary file f. Returns 0, or -1 with errno set. */
static int copy_target(const char *path, FILE *f)
{
	FILE *in = fopen(path, "rb");
	char chunk[65536];
	size_t n;
	int e = 0;

	if (!in)
		return errno == ENOENT ? 0 : -1;
	while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0) {
		if (fwrite(chunk, 1, n, f) != n) {
			e = errno;
			break;
		}
	}
	if (!e && ferror(in))
		e = errno ? errno : EIO;
	fclose(in);
	errno = e;
	return e ? -1 : 0;
}

static int lf_create_common(struct stage *st, bool to_stdout, char **err)
{
	struct load_file *c = xcalloc(1, sizeof(*c));
	char *dir;

	st->ctx = c;
	buf_init(&c->out);
	if (to_stdout) {
		c->f = stdout;
		return 0;
	}
	if (!(c->path = engine_render_path(st->eng, ((const struct file_opts *)st->spec->opts)->path.s, err)))
		return -1;
	dir = path_dir(c->path);
	if (mkdir_p(dir, 0755) != 0) {
		*err = xasprintf("cannot create directory %s: %s", dir, strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	remove_stale_temps(c->path);
	c->f = create_temp(c->path, &c->tmp);
	if (!c->f) {
		*err = xasprintf("cannot create %s: %s", c->tmp, strerror(errno));
		free(c->tmp);
		c->tmp = NULL;
		return -1;
	}
	if (engine_replaying(st->eng) && copy_target(c->path, c->f) != 0) {
		*err = xasprintf("cannot copy %s to %s: %s", c->path, c->tmp, strerror(errno));
		return -1;   /* lf_destroy removes the temporary file */
	}
	return 0;
}

static int lf_create(struct stage *st, char **err) { return lf_create_common(st, false, err); }
static int lo_create(struct stage *st, char **err) { return lf_create_common(st, true, err); }

static void lf_push(struct stage *st, json_t *batch)
{
	struct load_file *c = st->ctx;
	json_t *rec;
	size_t i;

	buf_reset(&c->out);
	json_array_foreach(batch, i, rec) {
		jsonw_append(&c->out, rec);
		buf_addc(&c->out, '\n');
	}
	if (fwrite(c->out.data, 1, c->out.len, c->f) != c->out.len) {
		engine_stage_fail(st, "cannot write %s: %s", c->path ? c->tmp : "standard output",
		                  strerror(errno));
		return;
	}
	st->stats.records_out += (int64_t)json_array_size(batch);
	engine_touch(st);
}

static void lf_finish(struct stage *st)
{
	struct load_file *c = st->ctx;
	FILE *f = c->f;

	if (!c->path) {
		if (fflush(stdout) != 0) {
			engine_stage_fail(st, "cannot write standard output: %s", strerror(errno));
			return;
		}
		engine_stage_done(st);
		return;
	}
	c->f = NULL;
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		int e = errno;
		fclose(f);
		engine_stage_fail(st, "cannot write %s: %s", c->tmp, strerror(e));
		return;
	}
	if (fclose(f) != 0) {
		engine_stage_fail(st, "cannot write %s: %s", c->tmp, strerror(errno));
		return;
	}
	if (rename(c->tmp, c->path) != 0) {
		engine_stage_fail(st, "cannot rename %s to %s: %s", c->tmp, c->path, strerror(errno));
		return;
	}
	free(c->tmp);
	c->tmp = NULL;
	engine_stage_done(st);
}

/* Abandons the output: the target keeps its previous content. */
static void lf_stop(struct stage *st)
{
	struct load_file *c = st->ctx;

	if (!c || !c->path)
		return;
	if (c->f)
		fclose(c->f);
	c->f = NULL;
	if (c->tmp)
		unlink(c->tmp);
	free(c->tmp);
	c->tmp = NULL;
}

static void lf_destroy(struct stage *st)
{
	struct load_file *c = st->ctx;

	if (!c)
		return;
	lf_stop(st);
	if (!c->path && c->f)
		fflush(c->f);
	buf_free(&c->out);
	free(c->path);
	free(c);
	st->ctx = NULL;
}

static void lf_refs(const struct stage_spec *sp, stage_ref_fn fn, void *arg)
{
	const struct file_opts *o = sp->opts;

	fn(arg, &o->path, true, REF_SECRETS | REF_ENV | REF_PARAM, "\"path\"");
}

static void lf_describe(const struct stage_spec *sp, struct engine *e, struct state *st,
                        const struct spec *s, long long records, FILE *out)
{
	const struct file_opts *o = sp->opts;
	char *err = NULL, *path, *shown;

	(void)st;
	(void)s;
	/* The path as this run rendered it (the stage succeeded, so it did). */
	if (!(path = engine_render_path(e, o->path.s, &err))) {
		free(err);
		return;
	}
	/* A path may be built from env values: secrets. */
	shown = redact(path);
	fprintf(out, "%s: %lld records in %s\n  look: head %s\n", sp->id, records, shown, shown);
	free(shown);
	free(path);
}

static const struct sval *lf_writes(const struct stage_spec *sp)
{
	const struct file_opts *o = sp->opts;

	return o->path.s ? &o->path : NULL;
}

static const struct opt lf_options[] = {
	{ .key = "path", .type = OPT_TEMPLATE, .offset = offsetof(struct file_opts, path),
	  .flags = OPT_REQUIRED, .doc = "file to write (template), relative to the pipeline file" },
	{ .key = "format", .type = OPT_ENUM, .offset = offsetof(struct file_opts, format),
	  .def = "jsonl", .words = formats, .doc = "JSON lines" },
	{ .key = NULL },
};

static const struct opt lo_options[] = {
	{ .key = "format", .type = OPT_ENUM, .offset = offsetof(struct file_opts, format),
	  .def = "jsonl", .words = formats, .doc = "JSON lines" },
	{ .key = NULL },
};

const struct stage_kind stage_load_file = {
	.name = "load.file",
	.description = "write records as JSON lines to a file (temp file, renamed on success)",
	.role = "load",
	.selector = "file",
	.nested = true,
	.sink = true,
	.options = lf_options,
	.opts_size = sizeof(struct file_opts),
	.refs = lf_refs,
	.describe = lf_describe,
	.writes = lf_writes,
	.create = lf_create,
	.push = lf_push,
	.finish = lf_finish,
	.stop = lf_stop,
	.destroy = lf_destroy,
};

const struct stage_kind stage_load_stdout = {
	.name = "load.stdout",
	.description = "write records as JSON lines to standard output",
	.role = "load",
	.selector = "stdout",
	.nested = true,
	.sink = true,
	.options = lo_options,
	.opts_size = sizeof(struct file_opts),
	.create = lo_create,
	.push = lf_push,
	.finish = lf_finish,
	.destroy = lf_destroy,
};
