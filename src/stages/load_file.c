/*
 * load.file and load.stdout: JSON lines. The file sink writes to a temporary
 * file beside the target and renames it over the target only when the stage
 * succeeds, so readers see the old file or the complete new one, never a
 * partial one; a failed or interrupted run removes the temporary file.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "jsonw.h"
#include "util.h"

struct load_file {
	char *path;                    /* target; NULL for stdout */
	char *tmp;                     /* temporary file being written */
	FILE *f;
	struct buf out;
};

/* Removes temporary files that a killed run left beside path: they are
 * named path.tmp.PID, and their process is gone. */
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
			if (*end || pid <= 0 || pid == (long)getpid())
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
	if (!(c->path = engine_render_path(st->eng, st->spec->u.load.path.s, err)))
		return -1;
	dir = path_dir(c->path);
	if (mkdir_p(dir, 0755) != 0) {
		*err = xasprintf("cannot create directory %s: %s", dir, strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	remove_stale_temps(c->path);
	c->tmp = xasprintf("%s.tmp.%ld", c->path, (long)getpid());
	c->f = fopen(c->tmp, "wb");
	if (!c->f) {
		*err = xasprintf("cannot create %s: %s", c->tmp, strerror(errno));
		free(c->tmp);
		c->tmp = NULL;
		return -1;
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

const struct stage_kind stage_load_file = {
	.name = "load.file",
	.description = "write records as JSON lines to a file (temp file, renamed on success)",
	.create = lf_create,
	.push = lf_push,
	.finish = lf_finish,
	.stop = lf_stop,
	.destroy = lf_destroy,
};

const struct stage_kind stage_load_stdout = {
	.name = "load.stdout",
	.description = "write records as JSON lines to standard output",
	.create = lo_create,
	.push = lf_push,
	.finish = lf_finish,
	.destroy = lf_destroy,
};
