#!/bin/sh
# The HTTP sink: records POSTed as JSON (one per request, or batched), an
# Idempotency-Key on every request, on_error, and the delivery log: a
# resumed run does not send a delivered record again.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

printf '{"id":1,"v":19.99}\n{"id":2,"v":"two"}\n{"id":3,"v":null}\n{"id":4,"v":[1,2]}\n{"id":5,"v":{"a":1}}\n' >in.jsonl
cat >hook.yaml <<YAML
pipeline: hook
stages:
  src:
    fetch: { file: in.jsonl, format: jsonl }
  one:
    needs: src
    load:
      http:
        url: "$MOCK_URL/echo?id=\${.id}"
        headers: { X-Source: pipectl-test }
  batched:
    needs: src
    load:
      http: { url: "$MOCK_URL/echo", method: PUT, batch: 2 }
YAML
"$PIPECTL" run -q hook.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 0 "http sink: exit 0"
log() { /usr/bin/python3 -c "
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
$1" "$MOCK_LOG"; }
is "$(log 'print(sum(1 for r in rows if r["method"]=="POST" and r["path"]=="/echo"))')" 5 \
	"one request per record"
is "$(log 'print(sorted(r["query"] for r in rows if r["method"]=="POST"))')" \
	"['id=1', 'id=2', 'id=3', 'id=4', 'id=5']" "the URL template uses the record"
is "$(log 'print(sum(1 for r in rows if r["method"]=="PUT"))')" 3 "batch: 2 sends 3 requests for 5 records"
is "$(log 'print(all(r["headers"].get("content-type")=="application/json" for r in rows if r["path"]=="/echo"))')" \
	True "bodies are sent as application/json"
is "$(log 'print(len({r["headers"].get("idempotency-key") for r in rows if r["path"]=="/echo"} - {None}))')" 8 \
	"every request carries its own Idempotency-Key"
is "$(log 'print(all(r["headers"].get("x-source")=="pipectl-test" for r in rows if r["method"]=="POST"))')" \
	True "headers are sent"
"$PIPECTL" status --json -f hook.yaml >st.json
is "$(/usr/bin/python3 -c 'import json; d=json.load(open("st.json")); s={x["stage"]:x for x in d["stages"]}; print(s["one"]["records_out"], s["one"]["requests"], s["batched"]["records_out"], s["batched"]["requests"])')" \
	"5 5 5 3" "status counts delivered records and requests"

# What the server received is the records themselves, numbers intact.
cat >echo.yaml <<YAML
pipeline: echo
stages:
  src:
    fetch: { file: in.jsonl, format: jsonl }
  send:
    needs: src
    fetch:
      url: "$MOCK_URL/echo"
      method: POST
      json: '.'
      records: '.body | fromjson'
  out:
    needs: send
    load: { file: { path: got.jsonl } }
YAML
"$PIPECTL" run -q echo.yaml >/dev/null 2>&1
is "$(sort got.jsonl)" "$(sort in.jsonl)" "records arrive as sent (19.99 stays 19.99)"

# on_error: dlq keeps the record that could not be delivered.
cat >dlq.yaml <<YAML
pipeline: dlq
stages:
  src:
    fetch: { file: in.jsonl, format: jsonl }
  hook:
    needs: src
    on_error: dlq
    load:
      http: { url: '$MOCK_URL/\${if .id == 3 then "status/500" else "echo" end}' }
YAML
"$PIPECTL" run -q dlq.yaml >/dev/null 2>&1
is "$?" 0 "a failed delivery with on_error dlq: exit 0"
is "$(sqlite3 .pipectl/state.db "SELECT payload FROM dlq WHERE stage = 'hook'")" '{"id":3,"v":null}' \
	"the undelivered record is in the dead-letter queue"

# Delivery log: a resumed run sends only what was not delivered.
: >"$MOCK_LOG"
cat >resume.yaml <<YAML
pipeline: resume
stages:
  src:
    fetch: { file: in.jsonl, format: jsonl }
  hook:
    needs: src
    load:
      http: { url: '$MOCK_URL/seq/r\${.id}?codes=\${if .id == 3 then "500,200" else "200" end}' }
YAML
"$PIPECTL" run -q resume.yaml >/dev/null 2>&1
is "$?" 1 "a failed delivery with on_error fail: exit 1"
"$PIPECTL" resume --last -f resume.yaml -q >/dev/null 2>"$T_TMP/err"
is "$?" 0 "resume after the endpoint recovered: exit 0"
is "$(log 'import collections; c=collections.Counter(r["path"] for r in rows if r["path"].startswith("/seq/")); print(" ".join("%s=%d" % kv for kv in sorted(c.items())))')" \
	"/seq/r1=1 /seq/r2=1 /seq/r3=2 /seq/r4=1 /seq/r5=1" \
	"delivered records were not sent again; the failed one was"
"$PIPECTL" status --json -f resume.yaml >st.json
is "$(/usr/bin/python3 -c 'import json; d=json.load(open("st.json")); print(d["run"]["status"], len(d["stages"]))')" \
	"succeeded 2" "the resumed run succeeded under the same id"

done_testing
