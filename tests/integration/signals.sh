#!/bin/sh
# Signals: SIGINT and SIGTERM stop a run cleanly; it is recorded as
# interrupted, the exit code is 128+N, file sinks leave no partial output and
# the previous output untouched, and the state database stays consistent.
# The second request waits at a gate of the mock API, so each signal lands
# while the run is in progress, whatever the machine's load.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

mkslow() { # mkslow GATE: the pipeline, its second request held at GATE
	cat >slow.yaml <<YAML
pipeline: slow
stages:
  s:
    fetch:
      url:
        - $MOCK_URL/json/1
        - $MOCK_URL/json/2?gate=$1
      concurrency: 1
  f:
    needs: s
    load:
      file: { path: out.jsonl }
YAML
}
echo "previous content" >out.jsonl

run_and_signal() { # run_and_signal SIGNAL EXPECTED-EXIT
	mkslow "signals-$1"
	"$PIPECTL" run slow.yaml >/dev/null 2>"$T_TMP/err.$1" &
	pid=$!
	wait_until mock_gate_waiting "signals-$1" 1
	ok $? "$1: the second request is held by the server"
	kill -s "$1" "$pid"
	# The held request is answered once the stop began: the stage stays
	# interrupted (the answer is only journaled).
	wait_until grep -qs "$1 received" "$T_TMP/err.$1"
	mock_gate "signals-$1" open >/dev/null
	wait "$pid"
	is "$?" "$2" "$1: exit code $2"
	grep -q "$1 received" "$T_TMP/err.$1"
	ok $? "$1: says it stopped"
	is "$(cat out.jsonl)" "previous content" "$1: the previous output is untouched"
	ok "$(ls | grep -c 'out.jsonl.tmp')" "$1: no temporary file left"
	"$PIPECTL" status --json -f slow.yaml >st.json
	is "$(/usr/bin/python3 -c 'import json; d=json.load(open("st.json")); print(d["run"]["status"], d["run"]["error"], " ".join(x["status"] for x in d["stages"]))')" \
		"interrupted interrupted by SIG$1 interrupted interrupted" "$1: run and stages recorded as interrupted"
	is "$(sqlite3 .pipectl/state.db 'PRAGMA integrity_check')" ok "$1: state database is consistent"
	: >"$MOCK_LOG"
}
run_and_signal INT 130
run_and_signal TERM 143

# kill -9 while the second request is held: the state stays consistent.
mkslow signals-KILL
"$PIPECTL" run -q slow.yaml >/dev/null 2>&1 &
pid=$!
wait_until mock_gate_waiting signals-KILL 1
ok $? "kill -9: the second request is held by the server"
kill -9 "$pid"
wait "$pid"
is "$?" 137 "kill -9: the run was killed while running"
is "$(sqlite3 .pipectl/state.db 'PRAGMA integrity_check')" ok "kill -9: state database is consistent"
is "$(cat out.jsonl)" "previous content" "kill -9: the previous output is untouched"

done_testing
