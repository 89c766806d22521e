#!/bin/sh
# The SQLite sink's transactions: they span batches, up to commit_rows rows
# (counted through the sink's -v log line per commit), and commit_interval
# commits one that no batch fills while the source waits (the mock API holds
# a page at a gate). A kill -9 with rows committed, and one with rows only in
# the open transaction, then a resume: every row is in the table once,
# without a key too (where only the row identity keeps a row from being
# added twice).
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

# --- Size bound: 2,000 records in batches of 100, commit_rows 500.
case_dir size
awk 'BEGIN { for (i = 1; i <= 2000; i++) printf "{\"id\":%d,\"v\":\"x%d\"}\n", i, i }' \
	>in.jsonl
# size_pl NAME EXTRA-SQLITE-KEYS: the 2,000 records into table t of NAME.db.
size_pl() {
	cat >"$1.yaml" <<YAML
pipeline: $1
settings: {batch_size: 100}
stages:
  src:
    fetch: { file: in.jsonl, format: jsonl }
  db:
    needs: src
    load:
      sqlite: { path: $1.db, table: t, key: id$2 }
YAML
}
size_pl bounded ', commit_rows: 500'
run_pl -v bounded.yaml
is "$RC" 0 "commit_rows 500: the run succeeds"
is "$(grep -c 'stage db: committed 500 rows' "$ERR")" 4 \
	"commit_rows 500: four transactions of 500 rows (batches of 100)"
is "$(grep -c 'stage db: committed' "$ERR")" 4 "and no other commit"
is "$(sq bounded.db 'SELECT count(*), sum(id) FROM t')" "2000|2001000" "every row loaded"
size_pl odd ', commit_rows: 250'
run_pl -v odd.yaml
# A batch is never split: 250 rows are reached after three batches (300).
is "$(grep -c 'stage db: committed 300 rows' "$ERR")" 6 \
	"commit_rows 250: whole batches, six transactions of 300 rows"
is "$(grep -c 'stage db: committed 200 rows' "$ERR")" 1 \
	"and the last 200 rows at the end"
size_pl dflt ''
run_pl -v dflt.yaml
is "$(grep -c 'stage db: committed' "$ERR")" 1 \
	"the default commit_rows: one transaction for 2,000 rows, not one per batch"
is "$(sq dflt.db 'SELECT count(*) FROM t')" 2000 "every row loaded"
cat >bad.yaml <<'YAML'
pipeline: bad
stages:
  src:
    fetch: { file: in.jsonl, format: jsonl }
  db:
    needs: src
    load:
      sqlite: { path: bad.db, table: t, commit_rows: 0, commit_interval: soon }
YAML
"$PIPECTL" validate bad.yaml >/dev/null 2>err
is "$?" 2 "commit_rows 0 and a commit_interval that is not a duration: invalid"
grep -q 'bad.yaml:8:[0-9]*:.*commit_rows' err
ok $? "the error points at commit_rows"
grep -q 'bad.yaml:8:[0-9]*: invalid duration "soon"' err
ok $? "the error points at commit_interval's value"

# --- Two sinks of one run write to one file: neither keeps the other out
# with its open transaction (which commit_interval 1h would keep open until
# the end of the input, and the other sink's queue stops the input first).
case_dir shared
awk 'BEGIN { for (i = 1; i <= 3000; i++) printf "{\"id\":%d}\n", i }' >in.jsonl
cat >shared.yaml <<'YAML'
pipeline: shared
settings: {batch_size: 100, queue: 200}
stages:
  src:
    fetch: { file: in.jsonl, format: jsonl }
  a:
    needs: src
    load:
      sqlite: { path: one.db, table: a, key: id, commit_interval: 1h, retry: {attempts: 2, initial: 10ms} }
  b:
    needs: src
    load:
      sqlite: { path: one.db, table: b, commit_interval: 1h, retry: {attempts: 2, initial: 10ms} }
YAML
run_pl shared.yaml
is "$RC" 0 "two sinks on one file: the run succeeds"
is "$(sq one.db 'SELECT (SELECT count(*) FROM a) || "+" || (SELECT count(*) FROM b)')" "3000+3000" \
	"both tables have every row"

# --- Time bound, and kill -9 after a commit. Page 1 (50 records) comes at
# once, page 2 waits at a gate; no commit_rows is reached, so only
# commit_interval can commit page 1's rows while the run waits.
# gate_pl NAME GATE INTERVAL: pages 1 and 2 (page 2 at GATE) into table t of
# out.db, without a key.
gate_pl() {
	cat >"$1.yaml" <<YAML
pipeline: $1
stages:
  src:
    fetch:
      url: ["$MOCK_URL/pages?page=1&per=50&total=100", "$MOCK_URL/pages?page=2&per=50&total=100&gate=$2"]
      records: '.items[]'
      concurrency: 1
  db:
    needs: src
    load:
      sqlite: { path: out.db, table: t, commit_interval: $3 }
YAML
}
rows() { sq out.db 'SELECT count(*) FROM t' 2>/dev/null; }
rows_are() { [ "$(rows)" = "$1" ]; }
case_dir interval
gate_pl interval txn-interval 50ms
"$PIPECTL" run -v interval.yaml >out 2>log &
pid=$!
wait_until mock_gate_waiting txn-interval 1
wait_until rows_are 50
ok $? "commit_interval: page 1's rows are committed while page 2 waits"
kill -9 $pid
wait $pid 2>/dev/null
is "$(rows)" 50 "after kill -9: the committed rows are there"
mock_gate txn-interval open >/dev/null
"$PIPECTL" resume -q --last >out 2>err
is "$?" 0 "the resumed run succeeds"
is "$(sq out.db 'SELECT count(*), count(DISTINCT id), sum(id) FROM t')" "100|100|5050" \
	"after the resume every record is a row, once"

# --- kill -9 with rows only in the open transaction: none is in the table,
# and the resume loads each once.
case_dir open
gate_pl open txn-open 1h
"$PIPECTL" run -v open.yaml >out 2>log &
pid=$!
wait_until mock_gate_waiting txn-open 1
wait_until grep -q 'stage db: 50 rows written, 50 in the open transaction' log
ok $? "page 1's rows are written into the open transaction"
kill -9 $pid
wait $pid 2>/dev/null
is "$(rows)" "" "after kill -9: the open transaction is gone (not even the table was made)"
mock_gate txn-open open >/dev/null
"$PIPECTL" resume -q --last >out 2>err
is "$?" 0 "the resumed run succeeds"
is "$(sq out.db 'SELECT count(*), count(DISTINCT id), sum(id) FROM t')" "100|100|5050" \
	"after the resume every record is a row, once"
is "$(stq "SELECT status FROM runs")" "succeeded" "one run, succeeded"

done_testing
