#!/bin/sh
# Signals: SIGINT and SIGTERM stop a run cleanly; it is recorded as
# interrupted, the exit code is 128+N, file sinks leave no partial output and
# the previous output untouched, and the state database stays consistent.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

cat >slow.yaml <<YAML
pipeline: slow
stages:
  s:
    fetch:
      url:
        - $MOCK_URL/json/1
        - $MOCK_URL/slow?ms=20000
      concurrency: 1
  f:
    needs: s
    load:
      file: { path: out.jsonl }
YAML
echo "previous content" >out.jsonl

run_and_signal() { # run_and_signal SIGNAL EXPECTED-EXIT
	"$PIPECTL" run slow.yaml >/dev/null 2>"$T_TMP/err.$1" &
	pid=$!
	# Wait until the slow request reached the server.
	i=0
	while ! grep -q '/slow' "$MOCK_LOG" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -s "$1" "$pid"
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

# After an interrupted run, a new run works.
"$PIPECTL" run -q slow.yaml >/dev/null 2>&1 &
pid=$!
sleep 0.3
kill -9 "$pid"
wait "$pid"
is "$(sqlite3 .pipectl/state.db 'PRAGMA integrity_check')" ok "kill -9: state database is consistent"
is "$(cat out.jsonl)" "previous content" "kill -9: the previous output is untouched"

done_testing
