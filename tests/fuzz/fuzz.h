/*
 * fuzz: what the libFuzzer targets in tests/fuzz/ share: the entry points
 * libFuzzer calls, and the switch of jq_stub.c that decides how libjq
 * compiles programs inside a target (see README.md in this directory).
 */
#ifndef PIPECTL_FUZZ_H
#define PIPECTL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry points (declared here for -Wmissing-prototypes). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * How jq_compile_args behaves in a target linked with jq_stub.c and
 * -Wl,--wrap=jq_compile_args. libjq 1.6 compiles all its builtins for every
 * program (tens of milliseconds), which would hold a target to a few dozen
 * executions per second.
 */
enum fuzz_jq_mode {
	FUZZ_JQ_REAL = 0,   /* libjq compiles, every time (the default) */
	FUZZ_JQ_STUB,       /* no libjq: a program "compiles" when its brackets,
	                       string literals and characters are well formed,
	                       otherwise a syntax error is reported through the
	                       state's error callback. The state gets no bytecode:
	                       it may only be torn down, never run. */
	FUZZ_JQ_CACHED,     /* libjq's own verdict and messages, remembered by
	                       program text for the process: each distinct program
	                       is compiled once. A repeated success also leaves the
	                       state without bytecode (tear down only). */
};

void fuzz_jq_set_mode(enum fuzz_jq_mode m);
/* PIPECTL_FUZZ_JQ=real gives FUZZ_JQ_CACHED; unset or "stub", FUZZ_JQ_STUB. */
enum fuzz_jq_mode fuzz_jq_mode_from_env(void);
/* Programs compiled by libjq itself since the start (REAL and CACHED misses). */
unsigned long fuzz_jq_real_compiles(void);

/* Aborts (a crash libFuzzer reports, with the input) when cond is false. */
#define FUZZ_CHECK(cond, what) \
	do { \
		if (!(cond)) \
			fuzz_fail(__FILE__, __LINE__, (what)); \
	} while (0)
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#endif
