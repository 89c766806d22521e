/*
 * tap.h: a tiny TAP producer for the unit tests (automake's tap-driver.sh
 * reads it). Each ok()/is_*() is one test case; done_testing() prints the
 * plan and returns the exit status.
 */
#ifndef PIPECTL_TAP_H
#define PIPECTL_TAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

static int tap_n, tap_failed;

static inline int tap_ok(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return cond;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is_int(got, want, ...) do { \
	long long g_ = (long long)(got), w_ = (long long)(want); \
	if (!tap_ok(g_ == w_, __FILE__, __LINE__, __VA_ARGS__)) \
		printf("#   got %lld, want %lld\n", g_, w_); \
} while (0)

#define is_str(got, want, ...) do { \
	const char *g_ = (got), *w_ = (want); \
	int c_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_; \
	if (!tap_ok(c_, __FILE__, __LINE__, __VA_ARGS__)) \
		printf("#   got \"%s\"\n#   want \"%s\"\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
} while (0)

/* lives_ok(STATEMENT, DESCRIPTION...): runs STATEMENT in a child process and
 * passes when the child exits normally with status 0, so a statement that
 * crashes (or that a sanitizer reports) fails this one case instead of
 * taking the whole test program down with it. */
#define lives_ok(stmt, ...) do { \
	int st_ = -1; \
	pid_t pid_; \
	fflush(NULL); \
	pid_ = fork(); \
	if (pid_ == 0) { \
		stmt; \
		_exit(0); \
	} \
	if (pid_ > 0) \
		while (waitpid(pid_, &st_, 0) < 0 && errno == EINTR) \
			; \
	if (!tap_ok(pid_ > 0 && WIFEXITED(st_) && WEXITSTATUS(st_) == 0, \
		    __FILE__, __LINE__, __VA_ARGS__)) \
		printf("#   child status %d\n", st_); \
} while (0)

static inline int done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
