/*
 * lease: a run is owned by one process at a time, and so is each file a run
 * writes. The lease is a row in the state database (state.h, struct
 * lease_row) naming its owner by pid, the pid's start time and the host and
 * boot it runs on: an owner that exited, a zombie and a pid reused by
 * another process are all seen as gone, and their leases are taken over.
 * Leases are checked and written inside one state_begin/state_commit, which
 * takes SQLite's write lock, so two processes cannot both take one.
 */
#ifndef PIPECTL_LEASE_H
#define PIPECTL_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/state.h"

/* A resource to take: resource is the lease key ("run:12",
 * "file:/abs/out.jsonl"), what names it in messages ("run 12"). */
struct lease_want {
	const char *resource;
	const char *what;
};

enum lease_owner {
	LEASE_OWNER_ALIVE,     /* the owner is still running */
	LEASE_OWNER_GONE,      /* it exited (or is a zombie, or its pid was reused) */
	LEASE_OWNER_UNKNOWN,   /* on another host: cannot be checked from here */
};

/* Fills *self with this process's identity (pid, start time, host, boot;
 * strings malloc'd: free with lease_row_free). */
void lease_self(struct lease_row *self);

/* Whether the process that holds l still runs, seen from self. *why (static
 * text, may be NULL) says how it was decided. */
enum lease_owner lease_owner_check(const struct lease_row *l, const struct lease_row *self,
                                   const char **why);

/*
 * Checks that the n resources in want can be taken by self: free, held by
 * self, or held by a process that is gone (said at info level: "... which
 * has exited: taking it over"). One held by a live process (or one on
 * another host) is refused, with "pipectl CMD: WHAT is owned by pid ..."
 * and hint on stderr, unless force, which takes it over after a warning
 * naming the process it overrides. Call inside state_begin. Returns 0 when
 * all can be taken, 1 when one is refused, -1 on a database error.
 */
int lease_check(struct state *st, const struct lease_want *want, size_t n,
                const struct lease_row *self, const char *cmd, bool force,
                const char *hint);

/* Writes self's leases on the n resources (run_id 0 for none). Call inside
 * the state_begin of lease_check. Returns 0 or -1. */
int lease_put(struct state *st, const struct lease_want *want, size_t n,
              int64_t run_id, const struct lease_row *self);

#endif
