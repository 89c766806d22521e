/*
 * fuzz_config: the pipeline loader (`pipectl validate`): YAML bytes ->
 * config_load -> dag_build -> printed diagnostics. jq compilation is stubbed
 * (PIPECTL_FUZZ_JQ=stub, the default) or cached by program text
 * (PIPECTL_FUZZ_JQ=real); see fuzz.h. The input reaches config_load through
 * a memfd, so no file is left behind and no disk is touched.
 *
 * Checks beyond "no crash, no leak, no UB": a load that fails reports at
 * least one diagnostic, a load that succeeds reports none, and every
 * diagnostic points inside the input (line <= lines + 1, counting every
 * line break YAML knows: \n, \r, U+0085, U+2028, U+2029).
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/dag.h"
#include "base/diag.h"
#include "core/config_load.h"
#include "base/units.h"
#include "base/util.h"

static int fd = -1;
static char path[64];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fd = memfd_create("pipeline.yaml", 0);
	if (fd < 0) {
		perror("memfd_create");
		exit(2);
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	devnull = fopen("/dev/null", "w");
	if (!devnull) {
		perror("/dev/null");
		exit(2);
	}
	fuzz_jq_set_mode(fuzz_jq_mode_from_env());
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diags d = { 0 };
	struct spec *s;
	struct dag *g = NULL;
	long lines = 1;
	size_t i;

	if (ftruncate(fd, 0) != 0 ||
	    (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
		perror(path);
		abort();
	}
	/* An upper bound: \r\n counts twice, and 0x85 or 0xE2 may not start
	 * a break at all. */
	for (i = 0; i < size; i++)
		if (data[i] == '\n' || data[i] == '\r' || data[i] == 0x85 || data[i] == 0xE2)
			lines++;

	s = config_load(path, &d);
	FUZZ_CHECK(s ? d.n == 0 : d.n > 0, "config_load's result disagrees with its diagnostics");
	if (s) {
		g = dag_build(s, &d);
		FUZZ_CHECK(g ? d.n == 0 : d.n > 0, "dag_build's result disagrees with its diagnostics");
	}
	for (i = 0; i < d.n; i++) {
		FUZZ_CHECK(d.v[i].msg && d.v[i].file, "diagnostic without a message or file");
		FUZZ_CHECK(d.v[i].line >= 0 && d.v[i].line <= lines + 1 && d.v[i].col >= 0,
		           "diagnostic position outside the input");
	}
	diags_print(&d, devnull);
	dag_free(g);
	spec_free(s);
	diags_free(&d);
	return 0;
}
