/*
 * run: the run lifecycle shared by `pipectl run`, `resume` and `dlq
 * replay`: the effective params (-p overrides, and what a change would
 * affect), the environment checks, registering secrets, the leases a run
 * wants and checks, recording the run, and creating and running the engine.
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/run.h"
#include "core/spec.h"
#include "core/dag.h"
#include "core/engine.h"
#include "core/stage.h"
#include "expr/expr.h"
#include "net/http.h"
#include "base/diag.h"
#include "base/jsonw.h"
#include "store/lease.h"
#include "base/log.h"
#include "base/secret.h"
#include "net/request.h"
#include "store/state.h"
#include "base/util.h"

/* Converts a -p value to the type of the declared default. */
static json_t *param_value(const char *name, const char *text, const json_t *decl, char **err)
{
	char *end;

	switch (json_typeof(decl)) {
	case JSON_INTEGER: {
		long long v = strtoll(text, &end, 10);
		if (!*text || *end) {
			*err = xasprintf("parameter \"%s\" expects an integer, got \"%s\"", name, text);
			return NULL;
		}
		return json_integer(v);
	}
	case JSON_REAL: {
		double v = strtod(text, &end);
		if (!*text || *end) {
			*err = xasprintf("parameter \"%s\" expects a number, got \"%s\"", name, text);
			return NULL;
		}
		return json_real(v);
	}
	case JSON_TRUE:
	case JSON_FALSE:
		if (strcmp(text, "true") == 0)
			return json_true();
		if (strcmp(text, "false") == 0)
			return json_false();
		*err = xasprintf("parameter \"%s\" expects true or false, got \"%s\"", name, text);
		return NULL;
	default:
		return json_string(text);
	}
}

/* Applies NAME=VALUE overrides to a copy of base (the declared params, or
 * those a run recorded); names and types are those s declares. */
json_t *run_params_override(const struct spec *s, const json_t *base, char **overrides,
                            int n, char **err)
{
	json_t *p = json_deep_copy(base);
	int i;

	for (i = 0; i < n; i++) {
		char *eq = strchr(overrides[i], '=');
		char *name;
		json_t *decl, *v;

		if (!eq || eq == overrides[i]) {
			*err = xasprintf("-p expects NAME=VALUE, got \"%s\"", overrides[i]);
			goto fail;
		}
		name = xstrndup(overrides[i], (size_t)(eq - overrides[i]));
		decl = json_object_get(s->params, name);
		if (!decl) {
			struct buf b;
			const char *k;
			json_t *x;
			buf_init(&b);
			json_object_foreach(s->params, k, x)
				buf_printf(&b, "%s%s", b.len ? ", " : "", k);
			*err = xasprintf("unknown parameter \"%s\" (the pipeline declares: %s)", name,
			                 b.len ? b.data : "none");
			buf_free(&b);
			free(name);
			goto fail;
		}
		v = param_value(name, eq + 1, decl, err);
		if (!v) {
			free(name);
			goto fail;
		}
		json_object_set_new(p, name, v);
		free(name);
	}
	return p;
fail:
	json_decref(p);
	return NULL;
}

/* Applies NAME=VALUE overrides to a copy of the declared params. */
json_t *run_effective_params(const struct spec *s, char **overrides, int n, char **err)
{
	return run_params_override(s, s->params, overrides, n, err);
}

/* True when template text t refers to params.NAME (or params["NAME"]). */
static bool text_uses_param(const char *t, const char *name)
{
	size_t nl = strlen(name);
	const char *p;

	for (p = t ? strstr(t, "params") : NULL; p; p = strstr(p + 6, "params")) {
		const char *q = p + 6;
		if (*q == '.' && strncmp(q + 1, name, nl) == 0 &&
		    !(isalnum((unsigned char)q[1 + nl]) || q[1 + nl] == '_'))
			return true;
		if (*q == '[' && q[1] == '"' && strncmp(q + 2, name, nl) == 0 && q[2 + nl] == '"')
			return true;
	}
	return false;
}

struct param_use {
	const char *name;
	bool found;
};

static void param_ref(void *arg, const struct sval *text, bool tmpl, unsigned use,
                      const char *label)
{
	struct param_use *u = arg;

	(void)tmpl;
	(void)label;
	if ((use & REF_PARAM) && text_uses_param(text->s, u->name))
		u->found = true;
}

/* True when stage sp reads from or writes to a place built from
 * params.NAME: what its kind's refs hook marks REF_PARAM (a fetch's
 * requests and records, a load's path or URL). */
static bool stage_uses_param(const struct stage_spec *sp, const char *name)
{
	struct param_use u = { name, false };

	if (sp->kind->refs)
		sp->kind->refs(sp, param_ref, &u);
	return u.found;
}

/*
 * Prints, for cmd, the params that differ between old and cur ("  NAME:
 * OLD -> NEW"). When st is not NULL (a resume of run), also says which
 * fetch stages that already fetched something (succeeded, or responses in
 * the journal), and which load stages that already loaded something write
 * to a place built from a changed param; returns how many (0 when none or no
 * st). Returns -1 when nothing changed.
 */
int run_params_changes(const char *cmd, const struct spec *s, const json_t *old,
                       const json_t *cur, struct state *st, int64_t run)
{
	const char *k;
	json_t *v;
	int changed = 0, affected = 0;
	struct stage_row *rows = NULL;
	int n = st ? state_stages_list(st, run, &rows) : 0, i;
	size_t x;

	json_object_foreach((json_t *)cur, k, v) {
		json_t *o = json_object_get(old, k);
		char *a, *b;
		if (o && json_equal(o, v))
			continue;
		if (!changed++)
			fprintf(stderr, "pipectl %s: params differ from those run %lld was started with:\n",
			        cmd, (long long)run);
		a = o ? jsonw_dumps(o) : xstrdup("(not set)");
		b = jsonw_dumps(v);
		fprintf(stderr, "  %s: %s -> %s\n", k, a, b);
		free(a);
		free(b);
		for (x = 0; st && x < s->n_stages; x++) {
			const struct stage_spec *sp = &s->stages[x];
			bool done = false, loaded = false;
			bool load = sp->kind->sink;
			if (!stage_uses_param(sp, k))
				continue;
			for (i = 0; i < n; i++)
				if (strcmp(rows[i].stage, sp->id) == 0) {
					done = rows[i].status == ST_SUCCEEDED;
					loaded = rows[i].stats.records_out > 0;
				}
			if (load) {
				/* A load that wrote records with the old value would put
				 * the rest of the run somewhere else. */
				if (!done && !loaded && state_journal_count(st, run, sp->id) <= 0)
					continue;
				fprintf(stderr, "    stage %s loaded with the old value%s\n", sp->id,
				        done ? " (it succeeded)" : " (it had loaded records)");
				affected++;
				continue;
			}
			if (!done && state_journal_count(st, run, sp->id) <= 0)
				continue;
			fprintf(stderr, "    stage %s fetched with the old value%s\n", sp->id,
			        done ? " (it succeeded)" : " (responses in the journal)");
			affected++;
		}
	}
	stage_rows_free(rows, n);
	return changed ? affected : -1;
}

static void secret_ref(void *arg, const struct sval *text, bool tmpl, unsigned use,
                       const char *label)
{
	(void)tmpl;
	(void)label;
	if ((use & REF_SECRETS) && text->s)
		expr_env_refs(text->s, arg);
}

/* Registers the values of every environment variable the pipeline reads as
 * secrets, so they are redacted from messages and the state database. */
static void register_secrets(const struct spec *s)
{
	json_t *names = json_array(), *n;
	size_t i;

	for (i = 0; i < s->n_stages; i++) {
		const struct stage_spec *st = &s->stages[i];
		if (st->kind->refs)
			st->kind->refs(st, secret_ref, names);
	}
	json_array_foreach(names, i, n) {
		const char *v = getenv(json_string_value(n));
		if (v)
			secret_add(json_string_value(n), v);
	}
	json_decref(names);
}

/* Adds a diagnostic for each variable sv reads, without a default, that
 * the environment does not have. */
static void check_env_sval(const struct sval *sv, bool tmpl, const char *stage,
                           const char *what, struct diags *d)
{
	json_t *names;
	size_t i;
	json_t *n;

	if (!sv->s)
		return;
	names = json_array();
	expr_env_undefaulted(sv->s, tmpl, names);
	json_array_foreach(names, i, n) {
		const char *name = json_string_value(n);
		if (!getenv(name))
			diags_add(d, sv->pos, "stage %s: environment variable %s is not set "
			          "(read by %s; to allow it unset, give a default: "
			          "${env.%s // \"\"})", stage, name, what, name);
	}
	json_decref(names);
}

struct env_walk {
	const char *stage;
	struct diags *d;
};

static void env_ref(void *arg, const struct sval *text, bool tmpl, unsigned use,
                    const char *label)
{
	struct env_walk *w = arg;

	if (use & REF_ENV)
		check_env_sval(text, tmpl, w->stage, label, w->d);
}

/*
 * An unset ${env.X} would render as "null" and be sent: every variable a
 * request is built from must be set, unless its template gives a default;
 * a sink's path too: an unset variable would name a file "null".
 */
size_t run_env_check(const struct spec *s, struct diags *d)
{
	size_t i, n0 = d->n;

	for (i = 0; i < s->n_stages; i++) {
		const struct stage_spec *st = &s->stages[i];
		struct env_walk w = { st->id, d };
		if (st->kind->refs)
			st->kind->refs(st, env_ref, &w);
	}
	return d->n - n0;
}

/* Returns 0, or -1 after printing each missing variable as file:line:col. */
static int check_env(const struct spec *s)
{
	struct diags d = { 0 };
	int rc = run_env_check(s, &d) ? -1 : 0;

	diags_print(&d, stderr);
	diags_free(&d);
	return rc;
}

/* Returns s quoted for a POSIX shell when it needs it (malloc'd). */
static char *shell_quote(const char *s)
{
	struct buf b;

	if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                 "0123456789/._-+:,@%") == strlen(s))
		return xstrdup(s);
	buf_init(&b);
	buf_addc(&b, '\'');
	for (; *s; s++) {
		if (*s == '\'')
			buf_adds(&b, "'\\''");
		else
			buf_addc(&b, *s);
	}
	buf_addc(&b, '\'');
	return buf_steal(&b);
}

/* The command that shows run_id, runnable from any directory: the state
 * database is given by its absolute path (malloc'd). */
static char *status_command(int64_t run_id, const char *state_path)
{
	char *abs = NULL, *q, *cmd;

	if (state_path[0] != '/') {
		char *cwd = getcwd(NULL, 0);
		if (cwd)
			abs = path_join(cwd, strncmp(state_path, "./", 2) == 0 ? state_path + 2 :
			                state_path);
		free(cwd);
	}
	q = shell_quote(abs ? abs : state_path);
	cmd = xasprintf("pipectl status %lld --state %s", (long long)run_id, q);
	free(q);
	free(abs);
	return cmd;
}

/* The lease key of a file path (as a sink renders it: joined to the
 * pipeline's directory): "file:" and its absolute path (the directory
 * resolved when it exists), so two spellings of one file are one key.
 * Caller frees. */
static char *sink_resource(const char *path)
{
	char *dir = path_dir(path);
	const char *base = strrchr(path, '/');
	char *real = realpath(dir, NULL), *key;

	base = base ? base + 1 : path;
	if (real) {
		key = xasprintf("file:%s/%s", strcmp(real, "/") == 0 ? "" : real, base);
	} else if (path[0] == '/') {
		key = xasprintf("file:%s", path);
	} else {
		char *cwd = getcwd(NULL, 0);
		key = xasprintf("file:%s/%s", cwd ? cwd : ".", path);
		free(cwd);
	}
	free(real);
	free(dir);
	return key;
}

/* The lease on the run resumed (resume_id > 0), if any. Strings malloc'd;
 * free with wants_free. */
static size_t wants_run(int64_t resume_id, struct lease_want **out)
{
	struct lease_want *w = xcalloc(1, sizeof(*w));
	size_t n = 0;

	if (resume_id > 0) {
		w[n].resource = xasprintf("run:%lld", (long long)resume_id);
		w[n].what = xasprintf("run %lld", (long long)resume_id);
		n++;
	}
	*out = w;
	return n;
}

/* The leases on every file a load stage of run run_id writes, keyed on its
 * path as the sink renders it (params, run, env), so one template rendered
 * to two files is two keys, and two spellings of one file are one. A path
 * whose rendering fails (the stage fails too) is keyed on its template.
 * Called inside the transaction that records the run (run.started is read
 * from it). Strings malloc'd; free with wants_free. */
static size_t wants_files(const struct spec *s, struct state *st, json_t *params,
                          int64_t run_id, struct lease_want **out)
{
	struct lease_want *w = xcalloc(s->n_stages + 1, sizeof(*w));
	json_t *run = engine_run_object(s, st, run_id);
	size_t n = 0, i;

	for (i = 0; i < s->n_stages; i++) {
		const struct stage_spec *sp = &s->stages[i];
		const struct sval *file = sp->kind->writes ? sp->kind->writes(sp) : NULL;
		char *err = NULL, *path, *sealed, *shown;
		if (!file || !file->s)
			continue;
		path = engine_render_sink_path(s, params, run, file->s, &err);
		free(err);
		if (!path)
			path = path_join(s->dir, file->s);
		/* The key is stored in the state database: a secret a path is
		 * built from is kept as its placeholder, the message redacts it. */
		sealed = secret_seal(path, strlen(path), NULL);
		w[n].resource = sink_resource(sealed);
		shown = redact(w[n].resource + 5);
		w[n].what = xasprintf("%s (written by stage %s)", shown, sp->id);
		free(shown);
		free(sealed);
		free(path);
		n++;
	}
	json_decref(run);
	*out = w;
	return n;
}

static void wants_free(struct lease_want *w, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free((char *)w[i].resource);
		free((char *)w[i].what);
	}
	free(w);
}

/* Checks the leases in want[0, n) for self (lease_check), telling a user
 * who is refused what to do. Returns EXIT_OK, EXIT_BUSY (another live
 * process owns one) or EXIT_STATE (a database error, printed). */
static int leases_check(struct state *st, const struct lease_want *want, size_t n,
                        const struct lease_row *self, const char *cmd, bool force,
                        bool resuming)
{
	int lr = lease_check(st, want, n, self, cmd, force,
	                     resuming ? "wait for it to finish, stop it, or take the run over "
	                     "with --force" : "wait for it to finish or stop it");

	if (lr < 0)
		log_error("%s", state_errmsg(st));
	return lr < 0 ? EXIT_STATE : lr > 0 ? EXIT_BUSY : EXIT_OK;
}

/*
 * Runs spec (already validated, graph built) with params, recording it in the
 * state database at state_path. A dlq replay passes replay_stage >= 0 and
 * the payloads, and paths_run_id the replayed run (whose files its sinks
 * add to; 0 otherwise). cmd names the command in messages; force lets it
 * take over leases held by live processes. *run_id is set once the run is recorded.
 * Unless quiet, summary (may be NULL) tells the user how the run ended.
 * Returns the exit code.
 */
int run_spec(const struct spec *s, const struct dag *g, json_t *params,
             const char *state_path, bool quiet, int replay_stage, json_t *replay,
             int64_t resume_id, int64_t paths_run_id, int64_t *run_id_out,
             const char *cmd, bool force, run_summary_fn summary)
{
	struct state *st = NULL;
	struct engine *e = NULL;
	char *err = NULL, *params_json = NULL;
	int64_t run_id = 0;
	enum run_status result;
	double t0;
	int rc = EXIT_OK;
	struct lease_row self;
	struct lease_want *wants = NULL, *files = NULL, run_want = { NULL, NULL };
	size_t n_wants, n_files = 0;
	bool leased = false;

	lease_self(&self);
	self.command = xstrdup(cmd);
	n_wants = wants_run(resume_id, &wants);
	if (check_env(s) != 0) {
		rc = EXIT_USAGE;
		goto out;
	}
	register_secrets(s);
	st = state_open(state_path, false, &err);
	if (!st) {
		log_error("%s", err);
		rc = EXIT_STATE;
		goto out;
	}
	params_json = jsonw_dumps(params);
	t0 = now_mono();
	/* Check and take the leases, and record the run, in one transaction:
	 * SQLite's write lock makes the check and the take one step. */
	if (state_begin(st) != 0) {
		log_error("%s", state_errmsg(st));
		rc = EXIT_STATE;
		goto out;
	}
	if ((rc = leases_check(st, wants, n_wants, &self, cmd, force, resume_id > 0)) != EXIT_OK)
		goto out;
	if (resume_id > 0) {
		run_id = resume_id;
		if (state_run_reopen(st, run_id, (long)getpid()) != 0 ||
		    state_run_set_params(st, run_id, params_json) != 0) {
			log_error("cannot record the resume: %s", state_errmsg(st));
			rc = EXIT_STATE;
			goto out;
		}
	} else if (state_run_create(st, s->name, s->path, s->hash, params_json, now_wall(),
	                            &run_id) != 0 ||
	           state_run_set_source(st, run_id, s->text, (long)getpid()) != 0 ||
	           (paths_run_id > 0 && state_run_set_replay_of(st, run_id, paths_run_id) != 0)) {
		log_error("cannot record the run: %s", state_errmsg(st));
		rc = EXIT_STATE;
		goto out;
	} else {
		run_want.resource = xasprintf("run:%lld", (long long)run_id);
	}
	/* The files are known once the run is: their paths may name it. */
	n_files = wants_files(s, st, params, paths_run_id > 0 ? paths_run_id : run_id, &files);
	if ((rc = leases_check(st, files, n_files, &self, cmd, force, resume_id > 0)) != EXIT_OK)
		goto out;   /* state_close rolls the run back */
	if (lease_put(st, wants, n_wants, run_id, &self) != 0 ||
	    lease_put(st, files, n_files, run_id, &self) != 0 ||
	    (run_want.resource && lease_put(st, &run_want, 1, run_id, &self) != 0) ||
	    state_commit(st) != 0) {
		log_error("cannot take the leases of run %lld: %s", (long long)run_id,
		          state_errmsg(st));
		rc = EXIT_STATE;   /* state_close rolls back what is left open */
		goto out;
	}
	leased = true;
	if (resume_id > 0)
		log_info("run %lld of %s resumed (state: %s)", (long long)run_id, s->path,
		         state_path);
	else
		log_info("run %lld of %s started (state: %s)", (long long)run_id, s->path,
		         state_path);
	if (run_id_out)
		*run_id_out = run_id;

	{
		struct engine_opts o = { .spec = s, .dag = g, .params = params, .state = st,
		                         .run_id = run_id, .quiet = quiet,
		                         .replay_stage = replay_stage, .replay = replay,
		                         .resume = resume_id > 0, .paths_run_id = paths_run_id };
		e = engine_create(&o, &err);
	}
	if (!e) {
		char *r = redact(err);
		log_error("%s", r);
		state_run_finish(st, run_id, ST_FAILED, r, now_wall());
		free(r);
		rc = EXIT_RUN_FAILED;
		goto out;
	}
	result = engine_run(e);
	{
		const char *failed_stage = NULL;
		const char *msg = engine_first_error(e, &failed_stage);
		char *run_err = NULL;
		if (result == ST_INTERRUPTED)
			run_err = xasprintf("interrupted by %s", engine_signal(e) == SIGINT ? "SIGINT" :
			                    "SIGTERM");
		else if (msg)
			run_err = xasprintf("stage %s: %s", failed_stage, msg);
		if (state_run_finish(st, run_id, result, run_err, now_wall()) != 0) {
			log_error("cannot record the end of the run: %s", state_errmsg(st));
			rc = EXIT_STATE;
		}
		free(run_err);
	}
	if (!quiet && summary)
		summary(s, g, st, e, run_id);
	if (result == ST_SUCCEEDED) {
		log_info("run %lld succeeded in %.2fs", (long long)run_id, now_mono() - t0);
	} else if (result == ST_INTERRUPTED) {
		log_warn("run %lld interrupted after %.2fs", (long long)run_id, now_mono() - t0);
		rc = 128 + engine_signal(e);
	} else {
		char *hint = status_command(run_id, state_path);
		log_error("run %lld failed after %.2fs (details: %s)", (long long)run_id,
		          now_mono() - t0, hint);
		free(hint);
		if (rc == EXIT_OK)
			rc = EXIT_RUN_FAILED;
	}
out:
	engine_destroy(e);
	if (leased && state_lease_release(st, &self) != 0)
		log_warn("cannot release the leases of run %lld: %s", (long long)run_id,
		         state_errmsg(st));
	state_close(st);
	free(err);
	free(params_json);
	free((char *)run_want.resource);
	wants_free(wants, n_wants);
	wants_free(files, n_files);
	lease_row_free(&self);
	return rc;
}
