#!/bin/sh
# dlq replay of an http load with batch > 1: each dead letter is the array
# one request carried; the replay sends it again as that request (same body,
# same Idempotency-Key), not as one record of a new array.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

case_dir batched
for i in 1 2 3 4 5; do printf '{"id":%d}\n' "$i"; done >in.jsonl
# The first three requests to /seq/d fail, every later one succeeds.
cat >p.yaml <<YAML
pipeline: batched
defaults:
  retry: {attempts: 1}
stages:
  src:
    fetch: {file: in.jsonl, format: jsonl}
  out:
    needs: src
    on_error: dlq
    load:
      http: {url: "$MOCK_URL/seq/d?codes=500,500,500,200", batch: 2}
YAML
run_pl p.yaml
is "$RC" 0 "the run succeeds, its failed requests dead-lettered"
is "$(stq "SELECT count(*) FROM dlq WHERE stage = 'out'")" 3 \
	"one dead letter per request (2 + 2 + 1 records)"
# keys_lens: the Idempotency-Key and body length of each request to
# /seq/d logged after MARK, sorted.
keys_lens() {
	tail -n +"$((MARK + 1))" "$MOCK_LOG" | /usr/bin/python3 -c '
import json, sys
rows = []
for line in sys.stdin:
    r = json.loads(line)
    if r["path"] == "/seq/d":
        rows.append("%s:%d" % (r["headers"]["idempotency-key"], r["body_len"]))
print(" ".join(sorted(rows)))'
}
MARK=0
FIRST=$(keys_lens)
is "$(echo "$FIRST" | wc -w)" 3 "three requests were sent"
mark
"$PIPECTL" dlq replay 1 >out.txt 2>err.txt
is "$?" 0 "the replay succeeds"
is "$(keys_lens)" "$FIRST" \
	"the replay sends each dead request again: same bodies, same Idempotency-Keys"
grep -q 'out: 5 records delivered' out.txt err.txt
ok $? "the replay delivered the 5 records: $(cat out.txt err.txt | grep 'delivered')"
is "$(stq "SELECT records_out FROM stage_runs WHERE run_id = $LAST AND stage = 'out'")" 5 \
	"the replayed stage counts 5 records out"

done_testing
