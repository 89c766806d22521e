/*
 * cmd_run: `pipectl run FILE`: validate, record a run in the state database,
 * run the engine, record the outcome and tell the user where the data went.
 */
#include <ctype.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "core/spec.h"
#include "core/dag.h"
#include "core/engine.h"
#include "expr/expr.h"
#include "net/http.h"
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
static json_t *params_override(const struct spec *s, const json_t *base, char **overrides,
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
static json_t *effective_params(const struct spec *s, char **overrides, int n, char **err)
{
	return params_override(s, s->params, overrides, n, err);
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
static int params_changes(const char *cmd, const struct spec *s, const json_t *old,
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
size_t env_check(const struct spec *s, struct diags *d)
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
	int rc = env_check(s, &d) ? -1 : 0;

	diags_print(&d, stderr);
	diags_free(&d);
	return rc;
}

/* The URL of an http load for the summary (malloc'd, redacted): the
 * template rendered with the run's params and environment; one that
 * depends on the record stays a template. */
static void print_summary(const struct spec *s, const struct dag *g, struct state *st,
                          struct engine *e, int64_t run_id)
{
	struct stage_row *rows = NULL;
	int n = state_stages_list(st, run_id, &rows), i;

	if (n <= 0)
		return;
	fprintf(stderr, "  %-20s %-12s %-11s %10s %10s %7s %9s\n", "STAGE", "KIND", "STATUS",
	        "IN", "OUT", "ERRORS", "REQUESTS");
	for (i = 0; i < n; i++)
		fprintf(stderr, "  %-20s %-12s %-11s %10lld %10lld %7lld %9lld\n", rows[i].stage,
		        rows[i].kind, state_status_name(rows[i].status),
		        (long long)rows[i].stats.records_in, (long long)rows[i].stats.records_out,
		        (long long)rows[i].stats.errors, (long long)rows[i].stats.requests);
	/* Where the data went, and how to look at it: the sink kinds say. */
	for (i = 0; i < n; i++) {
		int idx = spec_stage_index(s, rows[i].stage);
		const struct stage_spec *sp;
		if (idx < 0 || rows[i].status != ST_SUCCEEDED)
			continue;
		sp = &s->stages[idx];
		if (sp->kind->describe)
			sp->kind->describe(sp, e, st, s, (long long)rows[i].stats.records_out, stderr);
	}
	(void)g;
	stage_rows_free(rows, n);
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

static const struct option run_opts[] = {
	{ "param", required_argument, NULL, 'p' },
	{ "state", required_argument, NULL, 's' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "log-json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

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
 * Returns the exit code.
 */
static int run_spec(const struct spec *s, const struct dag *g, json_t *params,
                    const char *state_path, bool quiet, int replay_stage, json_t *replay,
                    int64_t resume_id, int64_t paths_run_id, int64_t *run_id_out,
                    const char *cmd, bool force)
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
	if (!quiet)
		print_summary(s, g, st, e, run_id);
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

int cmd_run(int argc, char **argv)
{
	char **overrides = xcalloc((size_t)argc + 1, sizeof(char *));
	int n_over = 0, c, rc = EXIT_OK;
	const char *opt_state = NULL;
	bool quiet = false;
	struct diags d = { 0 };
	struct spec *s = NULL;
	struct dag *g = NULL;
	json_t *params = NULL;
	char *err = NULL, *state_path = NULL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:s:qvh", run_opts, NULL)) != -1) {
		switch (c) {
		case 'p': overrides[n_over++] = optarg; break;
		case 's': opt_state = optarg; break;
		case 'q': quiet = true; log_set_level(LOG_WARN); break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'j': log_set_json(true); break;
		case 'h':
			printf("usage: pipectl run FILE [-p NAME=VALUE]... [--state DB] [-q] [-v] [--log-json]\n");
			free(overrides);
			return EXIT_OK;
		default:
			free(overrides);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		free(overrides);
		return usage_error("run", "expects one pipeline file (see pipectl run --help)");
	}
	s = config_load(argv[optind], &d);
	if (!s) {
		diags_print(&d, stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	g = dag_build(s, &d);
	if (!g) {
		diags_print(&d, stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	params = effective_params(s, overrides, n_over, &err);
	if (!params) {
		rc = usage_error("run", "%s", err);
		goto out;
	}
	state_path = state_path_for(opt_state, s->path);
	rc = run_spec(s, g, params, state_path, quiet, -1, NULL, 0, 0, NULL, "run", false);
out:
	json_decref(params);
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	free(err);
	free(state_path);
	free(overrides);
	log_free_secrets();
	return rc;
}

static const struct option replay_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "param", required_argument, NULL, 'p' },
	{ "state", required_argument, NULL, 's' },
	{ "file", required_argument, NULL, 'f' },
	{ "stage", required_argument, NULL, 'S' },
	{ "quiet", no_argument, NULL, 'q' },
	{ NULL, 0, NULL, 0 },
};

/*
 * pipectl dlq replay RUN [--stage ID]: the dead letters of RUN (not yet
 * replayed) go through their stage again, and on through what follows it,
 * in a new run of the same pipeline file with the same params. When that
 * run succeeds they are marked replayed; any that fail again are
 * dead-lettered again under the new run.
 */
int cmd_dlq_replay(int argc, char **argv)
{
	const char *opt_state = NULL, *opt_file = NULL, *opt_stage = NULL;
	bool quiet = false;
	int c, rc = EXIT_OK, n = 0, i, idx = -1;
	int64_t run = 0, new_run = 0;
	char *state_path = NULL, *err = NULL, *scope = NULL;
	struct state *st = NULL;
	struct run_row rr;
	bool have_rr = false;
	struct dlq_row *rows = NULL;
	struct diags d = { 0 };
	struct spec *s = NULL;
	struct dag *g = NULL;
	json_t *params = NULL, *payloads = json_array();
	const char *stage = NULL;
	char **overrides = xcalloc((size_t)argc + 1, sizeof(char *));
	int n_over = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:s:f:qh", replay_opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			printf("usage: pipectl dlq replay RUN [--stage ID] [-p NAME=VALUE]... "
			       "[-f FILE | --state DB] [-q]\n");
			json_decref(payloads);
			free(overrides);
			return EXIT_OK;
		case 'p': overrides[n_over++] = optarg; break;
		case 's': opt_state = optarg; break;
		case 'f': opt_file = optarg; break;
		case 'S': opt_stage = optarg; break;
		case 'q': quiet = true; log_set_level(LOG_WARN); break;
		default: json_decref(payloads); free(overrides); return EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		json_decref(payloads);
		free(overrides);
		return usage_error("dlq replay", "expects one run id");
	}
	{
		char *end;
		long long v = strtoll(argv[optind], &end, 10);
		if (*end || v <= 0) {
			json_decref(payloads);
			free(overrides);
			return usage_error("dlq replay", "invalid run id \"%s\"", argv[optind]);
		}
		run = v;
	}
	state_path = state_path_for(opt_state, opt_file);
	st = state_open(state_path, false, &err);
	if (!st) {
		log_error("%s", err);
		rc = EXIT_STATE;
		goto out;
	}
	if (opt_file && !(scope = cmd_scope(st, "dlq replay", opt_file, &rc)))
		goto out;
	if ((i = state_run_get(st, run, &rr)) <= 0) {
		rc = i < 0 ? EXIT_STATE : usage_error("dlq replay", "no run %lld", (long long)run);
		goto out;
	}
	have_rr = true;
	if ((rc = cmd_scope_check("dlq replay", scope, opt_file, &rr)) != EXIT_OK)
		goto out;
	n = state_dlq_list(st, run, opt_stage, &rows);
	if (n < 0) {
		log_error("%s", state_errmsg(st));
		rc = EXIT_STATE;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (rows[i].replayed)
			continue;
		if (stage && strcmp(stage, rows[i].stage) != 0) {
			rc = usage_error("dlq replay", "run %lld has dead letters in several stages "
			                 "(%s, %s, ...): choose one with --stage", (long long)run,
			                 stage, rows[i].stage);
			goto out;
		}
		stage = rows[i].stage;
	}
	if (!stage) {
		printf("run %lld has no dead letters to replay\n", (long long)run);
		goto out;
	}
	for (i = 0; i < n; i++) {
		json_t *p;
		if (rows[i].replayed || strcmp(rows[i].stage, stage) != 0)
			continue;
		{
			/* The letter keeps ${env.NAME} placeholders, not secrets:
			 * render them with this process's environment. */
			char *msg = NULL;
			char *text = secret_unseal(rows[i].payload, strlen(rows[i].payload), NULL,
			                           &msg);
			if (!text) {
				rc = usage_error("dlq replay", "dead letter %lld of stage %s cannot "
				                 "be sent again: %s", (long long)rows[i].id,
				                 rows[i].stage, msg);
				free(msg);
				goto out;
			}
			p = json_loads(text, JSON_DECODE_ANY, NULL);
			free(text);
		}
		if (!p) {
			log_error("dead letter %lld has an unreadable payload", (long long)rows[i].id);
			rc = EXIT_STATE;
			goto out;
		}
		json_array_append_new(payloads, p);
	}
	s = config_load(rr.path, &d);
	if (!s || !(g = dag_build(s, &d))) {
		diags_print(&d, stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	if (strcmp(s->hash, rr.hash) != 0)
		log_warn("%s changed since run %lld; replaying with the current file", rr.path,
		         (long long)run);
	idx = spec_stage_index(s, stage);
	if (idx < 0) {
		rc = usage_error("dlq replay", "stage \"%s\" is no longer in %s", stage, rr.path);
		goto out;
	}
	params = json_loads(rr.params, 0, NULL);
	if (!params)
		params = json_object();
	if (n_over > 0) {
		json_t *p = params_override(s, params, overrides, n_over, &err);
		if (!p) {
			rc = usage_error("dlq replay", "%s", err);
			goto out;
		}
		params_changes("dlq replay", s, params, p, NULL, run);
		json_decref(params);
		params = p;
	}
	log_info("replaying %zu dead letters of run %lld through stage %s",
	         json_array_size(payloads), (long long)run, stage);
	/* The state database is opened again by the run. */
	state_close(st);
	st = NULL;
	rc = run_spec(s, g, params, state_path, quiet, idx, payloads, 0, run, &new_run,
	              "dlq replay", false);
	if (rc == EXIT_OK) {
		st = state_open(state_path, false, &err);
		if (!st) {
			log_error("%s", err);
			rc = EXIT_STATE;
			goto out;
		}
		state_begin(st);
		for (i = 0; i < n; i++)
			if (!rows[i].replayed && strcmp(rows[i].stage, stage) == 0)
				state_dlq_mark_replayed(st, rows[i].id);
		if (state_commit(st) != 0) {
			log_error("cannot mark the dead letters replayed: %s", state_errmsg(st));
			rc = EXIT_STATE;
		}
	}
out:
	if (have_rr)
		run_row_free(&rr);
	dlq_rows_free(rows, n);
	json_decref(payloads);
	json_decref(params);
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	state_close(st);
	free(err);
	free(scope);
	free(state_path);
	free(overrides);
	log_free_secrets();
	return rc;
}

/* ------------------------------------------------------------ resume */

/* Prints the lines that differ between two texts (a short line diff). */
static void print_changes(const char *old, const char *cur)
{
	const char *a = old ? old : "", *b = cur ? cur : "";
	int line = 1, shown = 0;

	while ((*a || *b) && shown < 12) {
		const char *ae = strchr(a, '\n'), *be = strchr(b, '\n');
		size_t al = ae ? (size_t)(ae - a) : strlen(a), bl = be ? (size_t)(be - b) : strlen(b);
		if (al != bl || memcmp(a, b, al) != 0) {
			if (*a)
				fprintf(stderr, "  line %d was: %.*s\n", line, (int)al, a);
			if (*b)
				fprintf(stderr, "  line %d now: %.*s\n", line, (int)bl, b);
			shown++;
		}
		a = ae ? ae + 1 : a + al;
		b = be ? be + 1 : b + bl;
		line++;
	}
	if (shown == 12)
		fprintf(stderr, "  ...\n");
}

/* The run `pipectl resume --last` means: the newest run not succeeded. */
static int64_t last_resumable(struct state *st)
{
	struct run_row *rows = NULL;
	int n = state_runs_list(st, 0, &rows), i;
	int64_t id = 0;

	for (i = 0; i < n && !id; i++)
		if (rows[i].status != ST_SUCCEEDED)
			id = rows[i].id;
	run_rows_free(rows, n);
	return id;
}

static const struct option resume_opts[] = {
	{ "param", required_argument, NULL, 'p' },
	{ "state", required_argument, NULL, 's' },
	{ "file", required_argument, NULL, 'f' },
	{ "last", no_argument, NULL, 'L' },
	{ "force", no_argument, NULL, 'F' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "log-json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

void resume_plan_print(struct state *st, const struct spec *s, const struct dag *g,
                       int64_t run)
{
	struct stage_row *rows = NULL;
	int n = state_stages_list(st, run, &rows), i;
	bool *done = xcalloc(s->n_stages, sizeof(*done));
	enum resume_action *act = xcalloc(s->n_stages, sizeof(*act));
	size_t k;

	for (i = 0; i < n; i++) {
		int idx = spec_stage_index(s, rows[i].stage);
		if (idx >= 0 && rows[i].status == ST_SUCCEEDED)
			done[idx] = true;
	}
	engine_resume_plan(g, done, act);
	printf("resume of run %lld would:\n", (long long)run);
	for (k = 0; k < g->n; k++) {
		size_t x = g->order[k];
		const struct stage_spec *sp = &s->stages[x];
		int64_t j = state_journal_count(st, run, sp->id);
		int64_t dg = state_journal_count_digests(st, run, sp->id);
		printf("  %-20s %-7s", sp->id, act[x] == RESUME_SKIP ? "skip" :
		       act[x] == RESUME_REPLAY ? "replay" : "run");
		if (act[x] == RESUME_SKIP)
			printf(" succeeded; nothing downstream needs its records");
		else if (act[x] == RESUME_REPLAY)
			printf(" succeeded; run again for what follows");
		else
			printf(" did not finish");
		if (dg < 0)
			dg = 0;
		if (sp->kind->journaled && act[x] != RESUME_SKIP && j - dg > 0)
			printf("; %lld response%s from the journal", (long long)(j - dg),
			       j - dg == 1 ? "" : "s");
		if (sp->kind->journaled && act[x] != RESUME_SKIP && dg > 0)
			printf("; %lld fetched again (a body over %d KiB is journaled as its "
			       "digest only)", (long long)dg, REQUEST_JOURNAL_MAX_BODY / 1024);
		printf("\n");
	}
	stage_rows_free(rows, n);
	free(done);
	free(act);
}

/*
 * pipectl resume RUN | --last: continues a failed, interrupted or killed run
 * under the same id with the same params and pipeline file.
 */
int cmd_resume(int argc, char **argv)
{
	const char *opt_state = NULL, *opt_file = NULL;
	bool last = false, force = false, dry = false, quiet = false;
	int c, rc = EXIT_OK, found;
	int64_t run = 0;
	char *state_path = NULL, *err = NULL, *text = NULL, *scope = NULL;
	long pid = 0;
	struct state *st = NULL;
	struct run_row rr;
	bool have_rr = false;
	struct diags d = { 0 };
	struct spec *s = NULL;
	struct dag *g = NULL;
	json_t *params = NULL;
	char **overrides = xcalloc((size_t)argc + 1, sizeof(char *));
	int n_over = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:s:f:qvh", resume_opts, NULL)) != -1) {
		switch (c) {
		case 'p': overrides[n_over++] = optarg; break;
		case 's': opt_state = optarg; break;
		case 'f': opt_file = optarg; break;
		case 'L': last = true; break;
		case 'F': force = true; break;
		case 'n': dry = true; break;
		case 'q': quiet = true; log_set_level(LOG_WARN); break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'j': log_set_json(true); break;
		case 'h':
			printf("usage: pipectl resume RUN | --last [--dry-run] [--force] "
			       "[-p NAME=VALUE]... [-f FILE | --state DB] [-q] [-v] [--log-json]\n");
			free(overrides);
			return EXIT_OK;
		default:
			free(overrides);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1 || (argc - optind == 1) == last) {
		free(overrides);
		return usage_error("resume", "expects a run id or --last");
	}
	if (!last) {
		char *end;
		long long v = strtoll(argv[optind], &end, 10);
		if (*end || v <= 0) {
			free(overrides);
			return usage_error("resume", "invalid run id \"%s\"", argv[optind]);
		}
		run = v;
	}
	state_path = state_path_for(opt_state, opt_file);
	st = state_open(state_path, false, &err);
	if (!st) {
		log_error("%s", err);
		rc = EXIT_STATE;
		goto out;
	}
	if (opt_file && !(scope = cmd_scope(st, "resume", opt_file, &rc)))
		goto out;
	if (last && !(run = last_resumable(st))) {
		if (scope)
			printf("no run of pipeline \"%s\" to resume\n", scope);
		else
			printf("no run to resume\n");
		goto out;
	}
	if ((found = state_run_get(st, run, &rr)) <= 0) {
		rc = found < 0 ? EXIT_STATE : usage_error("resume", "no run %lld", (long long)run);
		goto out;
	}
	have_rr = true;
	if ((rc = cmd_scope_check("resume", scope, opt_file, &rr)) != EXIT_OK)
		goto out;
	if (rr.status == ST_SUCCEEDED) {
		printf("run %lld already succeeded: nothing to resume\n", (long long)run);
		goto out;
	}
	{
		/* A replay's stages ran on dead letters a resume does not have:
		 * it would fetch and load everything anew, and leave the dead
		 * letters unmarked. */
		int64_t of = state_run_replay_of(st, run);
		if (of < 0) {
			log_error("%s", state_errmsg(st));
			rc = EXIT_STATE;
			goto out;
		}
		if (of > 0) {
			rc = usage_error("resume", "run %lld is a dlq replay of run %lld and cannot be "
			                 "resumed; replay the dead letters again with pipectl dlq "
			                 "replay %lld", (long long)run, (long long)of, (long long)of);
			goto out;
		}
	}
	if (state_run_source(st, run, &text, &pid) < 0) {
		log_error("%s", state_errmsg(st));
		rc = EXIT_STATE;
		goto out;
	}
	s = config_load(rr.path, &d);
	if (!s || !(g = dag_build(s, &d))) {
		diags_print(&d, stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	if (strcmp(s->hash, rr.hash) != 0) {
		if (!force) {
			fprintf(stderr, "pipectl resume: %s changed since run %lld started "
			        "(sha256 %.12s, now %.12s):\n", rr.path, (long long)run, rr.hash, s->hash);
			if (text)
				print_changes(text, s->text);
			fprintf(stderr, "resume with --force to run the current file under run %lld, "
			        "or start a new run\n", (long long)run);
			rc = EXIT_USAGE;
			goto out;
		}
		log_warn("%s changed since run %lld started; resuming anyway (--force)", rr.path,
		         (long long)run);
	}
	params = json_loads(rr.params, 0, NULL);
	if (!params)
		params = json_object();
	if (n_over > 0) {
		json_t *p = params_override(s, params, overrides, n_over, &err);
		int affected;
		if (!p) {
			rc = usage_error("resume", "%s", err);
			goto out;
		}
		affected = params_changes("resume", s, params, p, st, run);
		json_decref(params);
		params = p;
		if (affected > 0 && !force) {
			fprintf(stderr, "resume with --force to go on with the new values (what was "
			        "already fetched or loaded with the old ones is kept), or start a new "
			        "run\n");
			rc = EXIT_USAGE;
			goto out;
		}
		if (affected > 0)
			log_warn("params changed what run %lld already fetched or loaded; resuming anyway "
			         "(--force)", (long long)run);
	}
	if (dry) {
		resume_plan_print(st, s, g, run);
		goto out;
	}
	state_close(st);
	st = NULL;
	rc = run_spec(s, g, params, state_path, quiet, -1, NULL, run, 0, NULL, "resume", force);
out:
	if (have_rr)
		run_row_free(&rr);
	free(text);
	json_decref(params);
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	state_close(st);
	free(err);
	free(scope);
	free(state_path);
	free(overrides);
	log_free_secrets();
	return rc;
}
