/*
 * cmd_validate: `pipectl validate FILE...` checks pipeline files without
 * running them and prints every error as file:line:col: message.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cmd.h"
#include "core/run.h"
#include "core/spec.h"
#include "core/dag.h"

int cmd_validate(int argc, char **argv)
{
	int i, rc = EXIT_OK, files = 0;
	bool quiet = false;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
			quiet = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			printf("usage: pipectl validate [-q] FILE...\n");
			return EXIT_OK;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_error("validate", "unknown option %s", argv[i]);
		}
	}
	for (i = 1; i < argc; i++) {
		struct diags d = { 0 };
		struct spec *s;
		struct dag *g = NULL;

		if (argv[i][0] == '-' && argv[i][1])
			continue;
		files++;
		s = config_load(argv[i], &d);
		if (s)
			g = dag_build(s, &d);
		if (!s || !g || d.n) {
			diags_print(&d, stderr);
			rc = EXIT_USAGE;
		} else {
			/* Not an error of the file (the environment of the run may
			 * differ), but run would refuse to start here. */
			struct diags env = { 0 };
			size_t k;
			run_env_check(s, &env);
			for (k = 0; k < env.n; k++)
				fprintf(stderr, "%s:%d:%d: warning: %s\n", env.v[k].file,
				        env.v[k].line, env.v[k].col, env.v[k].msg);
			diags_free(&env);
			if (!quiet)
				printf("%s: ok (%zu stages)\n", argv[i], s->n_stages);
		}
		dag_free(g);
		spec_free(s);
		diags_free(&d);
	}
	if (files == 0)
		return usage_error("validate", "expects at least one pipeline file");
	return rc;
}
