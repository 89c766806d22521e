/*
 * lease: process identity and the rules for taking a run (or a file it
 * writes) over from another process. The rows live in state.c; this file
 * decides whether their owner still runs. A process is known by its pid and
 * the start time of that pid (field 22 of /proc/PID/stat), so neither a
 * zombie nor a recycled pid passes for the owner.
 */
#include "store/lease.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

/* Reads the state letter and start time of pid from /proc/PID/stat.
 * Returns 1 read, 0 no such process, -1 when /proc cannot tell. */
static int proc_stat(long pid, char *state, long long *start)
{
	char path[64], *data, *p, *end;
	size_t len;
	int field;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	data = read_file(path, &len);
	if (!data) {
		if (errno == ENOENT || errno == ESRCH)
			return access("/proc/self/stat", R_OK) == 0 ? 0 : -1;
		return -1;
	}
	/* "pid (comm) S ppid ...": comm may hold spaces and parentheses, so
	 * the fields start after the last ')'. */
	p = strrchr(data, ')');
	if (!p) {
		free(data);
		return -1;
	}
	p++;
	while (*p == ' ')
		p++;
	*state = *p;
	/* state is field 3; starttime is field 22 */
	for (field = 3; field < 22 && *p; field++) {
		p = strchr(p, ' ');
		if (!p)
			break;
		p++;
	}
	if (!p || field != 22) {
		free(data);
		return -1;
	}
	*start = strtoll(p, &end, 10);
	free(data);
	return 1;
}

static char *boot_id(void)
{
	size_t len;
	char *id = read_file("/proc/sys/kernel/random/boot_id", &len);

	if (!id)
		return xstrdup("");
	while (len > 0 && (id[len - 1] == '\n' || id[len - 1] == ' '))
		id[--len] = '\0';
	return id;
}

/* Fills *self with this process's identity; strings malloc'd. */
void lease_self(struct lease_row *self)
{
	char host[256], state;
	long long start = 0;

	memset(self, 0, sizeof(*self));
	self->pid = (long)getpid();
	if (proc_stat(self->pid, &state, &start) != 1)
		start = 0;
	self->pid_start = start;
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	self->host = xstrdup(host);
	self->boot = boot_id();
	self->acquired = now_wall();
}

/* Whether the owner of l still runs, seen from self; *why says why. */
enum lease_owner lease_owner_check(const struct lease_row *l, const struct lease_row *self,
                                   const char **why)
{
	const char *dummy;
	char state = 0;
	long long start = 0;
	int r;

	if (!why)
		why = &dummy;
	if (strcmp(l->host, self->host) != 0) {
		*why = "runs on another host, so it cannot be checked from here";
		return LEASE_OWNER_UNKNOWN;
	}
	if (*l->boot && *self->boot && strcmp(l->boot, self->boot) != 0) {
		*why = "ran before this host last booted";
		return LEASE_OWNER_GONE;
	}
	r = proc_stat(l->pid, &state, &start);
	if (r == 0) {
		*why = "has exited";
		return LEASE_OWNER_GONE;
	}
	if (r < 0) {
		/* No /proc: the bare pid is all there is. */
		if (kill((pid_t)l->pid, 0) != 0 && errno == ESRCH) {
			*why = "has exited";
			return LEASE_OWNER_GONE;
		}
		*why = "is still running";
		return LEASE_OWNER_ALIVE;
	}
	if (state == 'Z' || state == 'X') {
		*why = "has exited (a zombie its parent has not reaped)";
		return LEASE_OWNER_GONE;
	}
	if (l->pid_start != 0 && start != l->pid_start) {
		*why = "has exited (its pid now belongs to another process)";
		return LEASE_OWNER_GONE;
	}
	*why = "is still running";
	return LEASE_OWNER_ALIVE;
}

static bool same_process(const struct lease_row *a, const struct lease_row *b)
{
	return a->pid == b->pid && a->pid_start == b->pid_start &&
	       strcmp(a->host, b->host) == 0 && strcmp(a->boot, b->boot) == 0;
}

/* Describes the holder: "pid 345 (pipectl resume, since T[, on host H])".
 * Caller frees. */
static char *holder_text(const struct lease_row *l, const struct lease_row *self)
{
	char t[32];

	fmt_time(l->acquired, t, sizeof(t));
	if (strcmp(l->host, self->host) != 0)
		return xasprintf("pid %ld on host %s (pipectl %s, since %s)", l->pid, l->host,
		                 l->command, t);
	return xasprintf("pid %ld (pipectl %s, since %s)", l->pid, l->command, t);
}

/* Checks that want[0..n) can be taken; see lease.h. */
int lease_check(struct state *st, const struct lease_want *want, size_t n,
                const struct lease_row *self, const char *cmd, bool force,
                const char *hint)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct lease_row l;
		enum lease_owner o;
		const char *why;
		char *who;
		int r = state_lease_get(st, want[i].resource, &l);

		if (r < 0)
			return -1;
		if (r == 0)
			continue;
		if (same_process(&l, self)) {
			lease_row_free(&l);
			continue;
		}
		o = lease_owner_check(&l, self, &why);
		who = holder_text(&l, self);
		if (o == LEASE_OWNER_GONE) {
			log_info("%s was owned by %s, which %s: taking it over", want[i].what, who, why);
		} else if (force) {
			log_warn("--force: taking %s over from %s, which %s; that process no longer "
			         "owns it, stop it if it still runs", want[i].what, who, why);
		} else {
			fprintf(stderr, "pipectl %s: %s is owned by %s, which %s; %s\n", cmd,
			        want[i].what, who, why, hint);
			free(who);
			lease_row_free(&l);
			return 1;
		}
		free(who);
		lease_row_free(&l);
	}
	return 0;
}

/* Writes self's leases on want[0..n). */
int lease_put(struct state *st, const struct lease_want *want, size_t n,
              int64_t run_id, const struct lease_row *self)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct lease_row l = *self;

		l.resource = (char *)want[i].resource;
		l.run_id = run_id;
		if (state_lease_put(st, &l) != 0)
			return -1;
	}
	return 0;
}
