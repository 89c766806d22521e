#!/bin/sh
# Where ownership meets templated sink paths: the lease on a file a load
# writes is taken on the path as rendered for the run (params, run, env),
# not on its template; a dlq replay adds to the file the replayed run wrote,
# also when its path is built from run.id or run.date.
# Requests are held at a gate of the mock (?gate=NAME) until the test opens
# it, so nothing here depends on timing.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

# ---- one template, two params: two files, two owners
mkdir -p tmpl
cat >tmpl/p.yaml <<YAML
pipeline: tmpl
params:
  region: eu
stages:
  src:
    fetch:
      url: $MOCK_URL/json/1?gate=\${params.region}
  out:
    needs: src
    load:
      file: { path: 'out-\${params.region}.jsonl' }
YAML
"$PIPECTL" run -q tmpl/p.yaml -p region=eu 2>tmpl/eu.err &
eu=$!
gate_wait eu 1
"$PIPECTL" run -q tmpl/p.yaml -p region=us 2>tmpl/us.err &
us=$!
# Held at gate us, or refused at once.
us_held() { gate_arrived us 1 || ! kill -0 "$us" 2>/dev/null; }
wait_until us_held || { echo "Bail out! the second run neither fetched nor exited"; exit 1; }
mock_gate us open >/dev/null
wait "$us"
is "$?" 0 "a run writing out-us.jsonl is not held off by one writing out-eu.jsonl"
is "$(cat tmpl/us.err)" "" "and says nothing about an owner"
test -s tmpl/out-us.jsonl
ok $? "out-us.jsonl is written"
# The same rendered path is still owned by the first run.
"$PIPECTL" run -q tmpl/p.yaml -p region=eu 2>tmpl/eu2.err
is "$?" 4 "a second run writing out-eu.jsonl exits 4"
grep -q "out-eu.jsonl (written by stage out) is owned by pid $eu" tmpl/eu2.err
ok $? "naming the rendered path and its owner"
is "$(sq tmpl/.pipectl/state.db 'SELECT COUNT(*) FROM runs')" 2 "and records no run"
mock_gate eu open >/dev/null
wait "$eu"
is "$?" 0 "the first run succeeds"

# ---- two templates, one file: one owner
cat >tmpl/q.yaml <<YAML
pipeline: tmpl-plain
stages:
  src:
    fetch:
      url: $MOCK_URL/json/2
  out:
    needs: src
    load:
      file: { path: out-eu.jsonl }
YAML
mock_gate eu close >/dev/null
"$PIPECTL" run -q tmpl/p.yaml -p region=eu 2>/dev/null &
eu=$!
gate_wait eu 2
"$PIPECTL" run -q tmpl/q.yaml 2>tmpl/q.err
is "$?" 4 "a pipeline writing out-eu.jsonl by its plain name waits for the templated one"
grep -q "out-eu.jsonl (written by stage out) is owned by pid $eu" tmpl/q.err
ok $? "and names the owner"
mock_gate eu open >/dev/null
wait "$eu"
is "$?" 0 "the templated run succeeds"

# ---- a path built from a secret: the lease keeps its placeholder
cat >tmpl/s.yaml <<YAML
pipeline: tmpl-secret
stages:
  src:
    fetch:
      url: $MOCK_URL/json/3?gate=sk
  out:
    needs: src
    load:
      file: { path: 'out-\${env.SINK_KEY}.jsonl' }
YAML
SINK_KEY=k3y-s3cr3t-v4lue "$PIPECTL" run -q tmpl/s.yaml 2>/dev/null &
sk=$!
gate_wait sk 1
leases=$(sq tmpl/.pipectl/state.db "SELECT resource FROM leases WHERE resource LIKE 'file:%'")
mock_gate sk open >/dev/null
wait "$sk"
is "$?" 0 "a run writing a file named after a secret succeeds"
case "$leases" in *k3y-s3cr3t*) r=1 ;; *'out-${env.SINK_KEY}.jsonl'*) r=0 ;; *) r=1 ;; esac
ok $r "its lease names the file by the placeholder, not the secret ($leases)"
test -s tmpl/out-k3y-s3cr3t-v4lue.jsonl
ok $? "the file itself has the value in its name"

# ---- dlq replay adds to the file the replayed run wrote
mkdir -p rid
cat >rid/p.yaml <<YAML
pipeline: rid
stages:
  src:
    on_error: dlq
    fetch:
      retry: { attempts: 1 }
      url:
        - $MOCK_URL/json/1
        - $MOCK_URL/seq/rid?codes=500,200
  file:
    needs: src
    load:
      file: { path: 'out-\${run.id}-\${run.date}.jsonl' }
YAML
"$PIPECTL" run -q rid/p.yaml 2>/dev/null
is "$?" 0 "a run that dead-letters one request"
f=$(cd rid && ls out-1-*.jsonl 2>/dev/null)
is "$(wc -l <"rid/$f" | tr -d ' ')" 1 "run 1 writes one record to $f"
"$PIPECTL" dlq replay -q 1 -f rid/p.yaml >/dev/null 2>rid/err
is "$?" 0 "dlq replay succeeds"
is "$(wc -l <"rid/$f" | tr -d ' ')" 2 "the replayed record is added to run 1's file"
is "$(tail -n 1 "rid/$f")" '{"name":"rid","attempt":2}' "as its last line"
is "$(cd rid && ls out-*.jsonl | tr '\n' ' ')" "$f " "no file named after the replay's own run"

# ---- a dlq replay that failed is not resumed as a run of everything
mkdir -p rr
cat >rr/p.yaml <<YAML
pipeline: rr
stages:
  src:
    on_error: dlq
    fetch:
      retry: { attempts: 1 }
      url:
        - $MOCK_URL/json/1
        - $MOCK_URL/seq/rr?codes=500,500,200
  file:
    needs: src
    load:
      file: { path: out.jsonl }
YAML
"$PIPECTL" run -q rr/p.yaml 2>/dev/null
is "$?" 0 "a run that dead-letters one request"
sed -i 's/on_error: dlq/on_error: fail/' rr/p.yaml
"$PIPECTL" dlq replay -q 1 -f rr/p.yaml >/dev/null 2>&1
is "$?" 1 "its replay fails again"
n1=$(grep -c '"path":"/json/1"' "$MOCK_LOG")
"$PIPECTL" resume 2 -q -f rr/p.yaml >/dev/null 2>rr/err
is "$?" 2 "resuming the replay's run exits 2"
grep -q "run 2 is a dlq replay of run 1 and cannot be resumed; replay the dead letters again with pipectl dlq replay 1" rr/err
ok $? "and says to replay run 1 again"
is "$(grep -c '"path":"/json/1"' "$MOCK_LOG")" "$n1" "without fetching anything"
"$PIPECTL" dlq replay -q 1 -f rr/p.yaml >/dev/null 2>&1
is "$?:$(wc -l <rr/out.jsonl | tr -d ' ')" "0:2" "replaying run 1 again adds the record to its file"

# ---- a replayed delivery carries the Idempotency-Key of the run it failed in
mkdir -p key
printf '{"id":1}\n{"id":2}\n' >key/in.jsonl
cat >key/p.yaml <<YAML
pipeline: key
stages:
  src:
    fetch: { file: in.jsonl, format: jsonl }
  send:
    needs: src
    on_error: dlq
    load:
      http:
        url: "$MOCK_URL/seq/key\${.id}?codes=503,200"
        retry: { attempts: 1 }
YAML
"$PIPECTL" run -q key/p.yaml 2>/dev/null
is "$?" 0 "a run whose two deliveries are dead-lettered"
"$PIPECTL" dlq replay -q 1 -f key/p.yaml >/dev/null 2>key/err
is "$?" 0 "dlq replay delivers them"
keys() { /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
k = [r["headers"].get("idempotency-key", "-") for r in rows if r["path"] == sys.argv[2]]
print(len(k), len(set(k)), "-" in k)' "$MOCK_LOG" "$1"; }
is "$(keys /seq/key1)" "2 1 False" "record 1: the replay sends the key of its first delivery"
is "$(keys /seq/key2)" "2 1 False" "record 2: likewise"

# ---- SIGINT while a worker parses a large answer: the answer is journaled
# The body (about 12 MB of JSON) is parsed on a worker thread once it has
# arrived (-v logs the arrival); the signal is sent then. The run waits for
# the parse as for a transfer in flight, so the answer is journaled whether
# the signal came during the parse or after it.
mkdir -p parse
cat >parse/p.yaml <<YAML
pipeline: parse
stages:
  src:
    fetch:
      url: $MOCK_URL/records?n=200000
      records: '.[]'
  out:
    needs: src
    load:
      file: { path: out.jsonl }
YAML
"$PIPECTL" run -v parse/p.yaml 2>parse/err &
pid=$!
answered() { grep -q "answer 200: GET $MOCK_URL/records" parse/err; }
wait_until answered || { echo "Bail out! no answer for /records"; exit 1; }
kill -INT "$pid"
wait "$pid"
is "$?" 130 "the run is interrupted"
is "$(sq parse/.pipectl/state.db "SELECT COUNT(*), size > 1048576 FROM journal WHERE stage = 'src'")" \
	"1|1" "the answer is journaled (as its digest: it is over 1 MiB)"
"$PIPECTL" resume --last -q -f parse/p.yaml >/dev/null 2>&1
is "$?" 0 "the resume succeeds"
is "$(grep -c '"path":"/records"' "$MOCK_LOG")" 2 "and fetches the digest-only body again, once"
is "$(wc -l <parse/out.jsonl | tr -d ' ')" 200000 "all records are written"

done_testing
