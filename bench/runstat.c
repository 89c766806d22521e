/* runstat: run a command, report its wall time and its own peak RSS.
 *
 *   runstat RESULT CMD [ARG]...
 *
 * Runs CMD with the inherited stdin, stdout and stderr, waits for it with
 * wait4(2) and writes "status S\nwall_ns N\nmaxrss_kib K\n" to the file
 * RESULT; exits with CMD's exit status (128 + signal when killed).
 *
 * Why not measure from the harness itself: Linux carries a process's peak
 * RSS across fork and exec (the child starts from its parent's
 * high-water mark), so a command started by a Python process reports at
 * least the Python process's RSS. Started from this small program, the
 * figure is the command's own (plus at most this program's ~1 MB).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct rusage ru;
	long long t0, t1;
	pid_t pid;
	int status = 0;
	FILE *f;

	if (argc < 3) {
		fprintf(stderr, "usage: runstat RESULT CMD [ARG]...\n");
		return 2;
	}
	t0 = now_ns();
	pid = fork();
	if (pid < 0) {
		perror("runstat: fork");
		return 2;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		fprintf(stderr, "runstat: %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("runstat: wait4");
			return 2;
		}
	}
	t1 = now_ns();
	f = fopen(argv[1], "w");
	if (!f || fprintf(f, "status %d\nwall_ns %lld\nmaxrss_kib %ld\n", status, t1 - t0,
			  ru.ru_maxrss) < 0 || fclose(f) != 0) {
		perror("runstat: result file");
		return 2;
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
