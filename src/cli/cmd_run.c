/*
 * cmd_run: `pipectl run FILE`: validate, record a run in the state database,
 * run the engine, record the outcome and tell the user where the data went
 * (the lifecycle, shared with resume and dlq replay, is core/run.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd.h"
#include "cli/report.h"
#include "core/run.h"
#include "core/spec.h"
#include "core/dag.h"
#include "base/log.h"
#include "store/state.h"
#include "base/util.h"

static const struct option run_opts[] = {
	{ "param", required_argument, NULL, 'p' },
	{ "state", required_argument, NULL, 's' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "log-json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

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
	params = run_effective_params(s, overrides, n_over, &err);
	if (!params) {
		rc = usage_error("run", "%s", err);
		goto out;
	}
	state_path = state_path_for(opt_state, s->path);
	rc = run_spec(s, g, params, state_path, quiet, -1, NULL, 0, 0, NULL, "run", false,
	              report_summary);
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
