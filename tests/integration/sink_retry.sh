#!/bin/sh
# A SQLite sink that meets a lock held by another process retries the batch
# after a backoff, on a timer: the loop goes on (another branch fetches from
# the mock API meanwhile), and once the lock is released every record is
# loaded exactly once. When the attempts are used up, on_error decides
# (fail / skip / dlq); the stage's own retry: replaces defaults.retry. No
# sleeps: the test waits for pipectl's log line saying it retries, and for
# the mock's gate.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

# hold_lock DB: a second process opens DB (WAL, as a concurrent writer
# would) and holds a write transaction (BEGIN IMMEDIATE) until release_lock.
hold_lock() {
	LOCK_FIFO="$PWD/release.fifo"
	rm -f "$LOCK_FIFO" locked
	mkfifo "$LOCK_FIFO"
	/usr/bin/python3 - "$1" "$LOCK_FIFO" "$PWD/locked" <<'PY' &
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("BEGIN IMMEDIATE")
with open(sys.argv[3], "w") as f:
    f.write("locked\n")
with open(sys.argv[2]) as f:    # until the test writes to the fifo
    f.read()
c.execute("COMMIT")
c.close()
PY
	LOCK_PID=$!
	wait_until test -s locked || { echo "Bail out! the lock was never taken"; exit 1; }
}
release_lock() {
	echo go >"$LOCK_FIFO"
	wait "$LOCK_PID"
}

# 1200 records: three batches of the default size (500).
awk 'BEGIN { for (i = 1; i <= 1200; i++) printf "{\"id\": %d, \"v\": \"r%d\"}\n", i, i }' \
	>"$T_TMP/data.jsonl"

# ------------------------------------------------------------ lock, then release
case_dir released
cp "$T_TMP/data.jsonl" .
hold_lock out.db
cat >p.yaml <<YAML
pipeline: locked
defaults:
  retry: {attempts: 100, backoff: exponential, initial: 20ms, max: 2s, jitter: none}
stages:
  src:
    fetch: {file: data.jsonl, format: jsonl}
  db:
    needs: [src]
    load:
      sqlite: {path: out.db, table: items, key: id}
  api:
    fetch: {url: "$MOCK_URL/json/1?gate=g"}
  api_out:
    needs: [api]
    load:
      file: {path: api.jsonl}
YAML
"$PIPECTL" run p.yaml >out.txt 2>err.txt &
RUN=$!
wait_until grep -q 'database is locked, retry 2/100 in ' err.txt
ok $? "the sink says it retries: $(grep -m1 'retry 2/' err.txt)"
gate_wait g 1
mock_gate g open >/dev/null
# While the lock is held, the other branch runs to its end: the loop is
# not blocked by the sink waiting.
branch_done() { [ "$(stq "SELECT status FROM stage_runs WHERE stage = 'api_out'")" = succeeded ]; }
wait_until branch_done
ok $? "the other branch finished while the database was locked"
kill -0 "$RUN" 2>/dev/null && kill -0 "$LOCK_PID" 2>/dev/null
ok $? "the run and the lock were both still there meanwhile"
is "$(cat api.jsonl)" '{"id":1,"name":"item-1","price":19.99,"qty":3,"tags":["a","b"]}' \
	"the other branch's output is in place"
release_lock
wait "$RUN"
is "$?" 0 "after the release the run succeeds"
is "$(sq out.db 'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM items')" \
	"1200|1200|1|1200" "every record loaded exactly once"
is "$(stq "SELECT records_in, records_out, errors FROM stage_runs WHERE stage = 'db'")" \
	"1200|1200|0" "the sink's counts"

# ------------------------------------------------------------ no records
# A sink that received no records still creates its table (its key is
# known): that meets the lock too, and waits for it the same way.
case_dir empty
: >empty.jsonl
hold_lock out.db
cat >p.yaml <<YAML
pipeline: empty
defaults:
  retry: {attempts: 100, backoff: exponential, initial: 20ms, max: 2s, jitter: none}
stages:
  src:
    fetch: {file: empty.jsonl, format: jsonl}
  db:
    needs: [src]
    load:
      sqlite: {path: out.db, table: items, key: id}
YAML
"$PIPECTL" run p.yaml >out.txt 2>err.txt &
RUN=$!
wait_until grep -q 'database is locked, retry 2/100 in ' err.txt
ok $? "no records: creating the table is retried too"
release_lock
wait "$RUN"
is "$?" 0 "no records: after the release the run succeeds"
is "$(sq out.db "SELECT count(*) FROM pragma_table_info('items')")" 1 \
	"no records: the table was created"

# ------------------------------------------------------------ attempts used up
# used_up ON_ERROR: runs a pipeline whose sink never gets the lock (3 quick
# attempts), with on_error ON_ERROR; the lock is released after the run.
used_up() {
	case_dir "used_up_$1"
	cp "$T_TMP/data.jsonl" .
	hold_lock out.db
	cat >p.yaml <<YAML
pipeline: used_up
defaults:
  retry: {attempts: 3, backoff: constant, initial: 10ms, jitter: none}
stages:
  src:
    fetch: {file: data.jsonl, format: jsonl}
  db:
    needs: [src]
    on_error: $1
    load:
      sqlite: {path: out.db, table: items}
YAML
	run_pl p.yaml
	release_lock
}

used_up fail
is "$RC" 1 "on_error fail: the run fails"
grep -q 'stage db failed: .*out.db: database is locked (after 3 attempts)' "$ERR"
ok $? "on_error fail: the error says why and after how many attempts"
is "$(grep -c 'database is locked, retry [23]/3 in ' "$ERR")" 2 \
	"on_error fail: two retries were logged"
is "$(stq "SELECT status FROM stage_runs WHERE stage = 'db'")" failed "on_error fail: the stage failed"

used_up skip
is "$RC" 0 "on_error skip: the run succeeds"
is "$(stq "SELECT records_in, records_out, errors FROM stage_runs WHERE stage = 'db'")" \
	"1200|0|1200" "on_error skip: every record skipped and counted"
is "$(grep -c 'database is locked, retry 2/3 in ' "$ERR")" 3 \
	"on_error skip: each of the three batches was retried"

used_up dlq
is "$RC" 0 "on_error dlq: the run succeeds"
is "$(stq "SELECT count(*), count(DISTINCT json_extract(payload, '$.id')) FROM dlq WHERE stage = 'db'")" \
	"1200|1200" "on_error dlq: every record dead-lettered once"
is "$(stq "SELECT DISTINCT json_array_length(attempts) || ' ' || (error LIKE '%database is locked (after 3 attempts)') FROM dlq")" \
	"3 1" "on_error dlq: with the error and the three attempts made"

# ------------------------------------------------------------ the stage's own retry:
# It replaces defaults.retry: 2 attempts, not the defaults' 100.
case_dir stage_retry
cp "$T_TMP/data.jsonl" .
hold_lock out.db
cat >p.yaml <<YAML
pipeline: stage_retry
defaults:
  retry: {attempts: 100, backoff: constant, initial: 10ms, jitter: none}
stages:
  src:
    fetch: {file: data.jsonl, format: jsonl}
  db:
    needs: [src]
    on_error: fail
    load:
      sqlite:
        path: out.db
        table: items
        retry: {attempts: 2, backoff: constant, initial: 10ms, jitter: none}
YAML
run_pl p.yaml
release_lock
is "$RC" 1 "load.sqlite retry: the stage's attempts, not the defaults', fail the run"
grep -q 'stage db failed: .*out.db: database is locked (after 2 attempts)' "$ERR"
ok $? "load.sqlite retry: after the stage's 2 attempts"
is "$(grep -c 'database is locked, retry' "$ERR")" 1 \
	"load.sqlite retry: one retry was logged (retry 2/2)"
grep -q 'database is locked, retry 2/2 in 10ms' "$ERR"
ok $? "load.sqlite retry: counted against the stage's policy"

done_testing
