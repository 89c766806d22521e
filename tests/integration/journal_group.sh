#!/bin/sh
# Group commit of the response journal: answers are committed in groups
# (at most one commit per REQUESTER_JOURNAL_GROUP), yet each one within the
# journal's window, also when the loop then has nothing to do but wait. A
# request held at a gate of the mock API keeps the run going: the answers
# already received must reach the journal while it waits; after a kill -9 a
# resume asks the server again only for the held request, and the sink
# holds every record once.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

N=40
pl() { # pl GATE: N URLs, the last one held at GATE
	{
		printf 'pipeline: group\nstages:\n  s:\n    fetch:\n      url:\n'
		i=1
		while [ $i -lt $N ]; do
			printf '        - %s/json/%d\n' "$MOCK_URL" $i
			i=$((i + 1))
		done
		printf '        - %s/json/%d?gate=%s\n' "$MOCK_URL" $N "$1"
		printf '      concurrency: 8\n'
		printf '  db:\n    needs: s\n    load:\n      sqlite: {path: out.db, table: items, key: id}\n'
	} >pl.yaml
}
journaled() { [ "$(stq 'SELECT COUNT(*) FROM journal' 2>/dev/null)" = "$1" ]; }

case_dir kill
pl group-kill
mark
"$PIPECTL" run -q pl.yaml >/dev/null 2>"$T_TMP/err.kill" &
pid=$!
wait_until mock_gate_waiting group-kill 1
ok $? "the last request is held by the server"
# Nothing else happens in the run now: only the group's own deadline can
# commit the answers it holds.
wait_until journaled $((N - 1))
ok $? "the $((N - 1)) answers received are journaled while the run waits"
kill -9 "$pid"
wait "$pid"
is "$?" 137 "killed with SIGKILL while running"
is "$(stq 'PRAGMA integrity_check')" ok "the state database is consistent"
mock_gate group-kill open >/dev/null
"$PIPECTL" resume --last -f pl.yaml >/dev/null 2>"$T_TMP/err.resume"
is "$?" 0 "the resume succeeds"
counts=$(tail -n +$((MARK + 1)) "$MOCK_LOG" | /usr/bin/python3 -c '
import collections, json, sys
c = collections.Counter(json.loads(l)["path"] for l in sys.stdin)
print(" ".join("%s=%d" % (p, n) for p, n in sorted(c.items()) if n != 1))')
is "$counts" "/json/$N=2" "only the held request was sent again"
is "$(sq out.db 'SELECT COUNT(*), COUNT(DISTINCT id), min(id), max(id) FROM items')" \
	"$N|$N|1|$N" "the sink holds every record once"
is "$(stq "SELECT status FROM runs WHERE id = $LAST")" succeeded "the run succeeded"
is "$(stq 'SELECT COUNT(*) FROM journal')" $N "every answer is journaled"

done_testing
