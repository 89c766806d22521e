#!/bin/sh
# End to end over real HTTP on loopback against tests/mockapi: many URLs at a
# bounded concurrency, request options and templates, secrets redacted, and
# each kind of failure reported with the URL.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

# ---- 250 URLs at concurrency 32: every record loaded, status counts.
{
	echo "pipeline: many"
	echo "settings: { concurrency: 32 }"
	echo "defaults: { concurrency: 32 }"
	echo "stages:"
	echo "  items:"
	echo "    fetch:"
	echo "      url:"
	i=1
	while [ $i -le 250 ]; do
		echo "        - $MOCK_URL/json/$i?delay=5"
		i=$((i + 1))
	done
	echo "      records: '{id, name, price}'"
	echo "  db:"
	echo "    needs: items"
	echo "    load:"
	echo "      sqlite: { path: many.db, table: items, key: id }"
} >many.yaml
"$PIPECTL" run many.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 0 "250 URLs: run exits 0"
is "$(sq many.db 'SELECT count(*), count(DISTINCT id), sum(id) FROM items')" "250|250|31375" \
	"250 URLs: every record loaded once"
is "$(sq many.db "SELECT count(*) FROM items WHERE price = 19.99 AND name = 'item-' || id")" 250 \
	"250 URLs: values intact"
is "$(grep -c '"path":"/json/' "$MOCK_LOG")" 250 "server saw each URL once"
# Peak concurrency from the server's view: overlapping [ts, ts+delay] windows
# cannot be measured exactly, so count distinct connections instead.
conns=$(/usr/bin/python3 -c '
import json,sys
c=set(json.loads(l)["conn"] for l in open(sys.argv[1]) if "/json/" in l)
print(len(c))' "$MOCK_LOG")
ok "$([ "$conns" -le 32 ]; echo $?)" "at most 32 connections used ($conns)"
"$PIPECTL" status --json -f many.yaml >st.json
is "$(/usr/bin/python3 -c 'import json; d=json.load(open("st.json")); s={x["stage"]:x for x in d["stages"]}; print(s["items"]["requests"], s["items"]["records_out"], s["db"]["records_out"])')" \
	"250 250 250" "status shows each stage's counts"

# ---- method, headers, body templates, params, env; secrets redacted.
cat >echo.yaml <<YAML
pipeline: echo
params: { who: world, n: 3 }
stages:
  post:
    fetch:
      url: $MOCK_URL/echo?n=\${params.n}
      method: POST
      headers:
        X-Token: "\${env.PIPECTL_TEST_TOKEN}"
        X-Who: "hello \${params.who}"
      json: '{who: params.who, n: params.n, price: 19.99}'
      records: '{method, token: .headers["x-token"], who: .headers["x-who"], ctype: .headers["content-type"], query, body: (.body | fromjson)}'
  out:
    needs: post
    load:
      file: { path: echo.jsonl }
YAML
PIPECTL_TEST_TOKEN=tok-123456 "$PIPECTL" run -q echo.yaml -p who=you >/dev/null 2>"$T_TMP/err"
is "$?" 0 "POST with templates: exit 0"
is "$(cat echo.jsonl)" '{"method":"POST","token":"tok-123456","who":"hello you","ctype":"application/json","query":"n=3","body":{"who":"you","n":3,"price":19.99}}' \
	"method, headers, JSON body and query rendered"

cat >secret.yaml <<YAML
pipeline: secret
stages:
  s:
    fetch:
      url: $MOCK_URL/status/404?key=\${env.PIPECTL_TEST_TOKEN}
YAML
PIPECTL_TEST_TOKEN=tok-123456 "$PIPECTL" run secret.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 1 "404: run fails with exit 1"
grep -q "GET $MOCK_URL/status/404?key=\*\*\*: HTTP 404 Not Found" "$T_TMP/err"
ok $? "404: message names the URL and the status"
ok "$(grep -c tok-123456 "$T_TMP/err")" "the secret does not reach the terminal"
"$PIPECTL" status --json -f secret.yaml >st.json
ok "$(grep -c tok-123456 st.json)" "the secret does not reach the state database"
ok "$(sqlite3 .pipectl/state.db .dump | grep -c tok-123456)" "no trace of the secret in the state database dump"

# ---- failures: each names the URL.
fail_case() { # fail_case NAME URL-SUFFIX EXTRA-YAML EXPECTED-MESSAGE-REGEX
	cat >"$1.yaml" <<YAML
pipeline: $1
stages:
  s:
    fetch:
      url: $MOCK_URL$2
$3
  out:
    needs: s
    load:
      stdout: {}
YAML
	"$PIPECTL" run "$1.yaml" >/dev/null 2>"$T_TMP/err"
	is "$?" 1 "$1: run fails with exit 1"
	grep -Eq "$4" "$T_TMP/err"
	ok $? "$1: message says what happened and where"
	"$PIPECTL" status -f "$1.yaml" >"$T_TMP/st"
	grep -Eq "^s +fetch.http +failed" "$T_TMP/st"
	ok $? "$1: status shows the stage failed"
}
fail_case server_error /status/503 "" "GET $MOCK_URL/status/503: HTTP 503 Service Unavailable: \{\"error\""
fail_case invalid_json /invalid "" "$MOCK_URL/invalid: invalid JSON at line 1"
# (held at a gate opened only after the run: no answer can beat the timeout)
fail_case timeout "/slow?ms=3000&gate=http-timeout" "      timeout: 300ms" \
	"GET $MOCK_URL/slow\?ms=3000&gate=http-timeout: .*(timed out|Timeout)"
mock_gate http-timeout open >/dev/null
fail_case closed /close "" "GET $MOCK_URL/close: "
fail_case too_big "/big?kb=64" "      max_body: 16KiB" "GET $MOCK_URL/big\?kb=64: .*max_body"
fail_case bad_records /json/1 "      records: '.name | .x'" "records.*Cannot index string"

# Connection refused: a port nobody listens on.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cat >refused.yaml <<YAML
pipeline: refused
stages:
  s:
    fetch:
      url: http://127.0.0.1:$port/x
YAML
"$PIPECTL" run refused.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 1 "connection refused: exit 1"
grep -q "GET http://127.0.0.1:$port/x: " "$T_TMP/err"
ok $? "connection refused: message names the URL"

# A failing branch does not stop the other branch.
cat >branches.yaml <<YAML
pipeline: branches
stages:
  good:
    fetch:
      url: $MOCK_URL/records?n=20&start=1
      records: '.[]'
  bad:
    fetch:
      url: $MOCK_URL/status/500
  good_db:
    needs: good
    load:
      sqlite: { path: branches.db, table: t, key: id }
  bad_db:
    needs: bad
    load:
      sqlite: { path: branches.db, table: u }
YAML
"$PIPECTL" run branches.yaml >/dev/null 2>&1
is "$?" 1 "one failed branch: run fails"
is "$(sq branches.db 'SELECT count(*) FROM t')" 20 "the other branch loaded everything"
"$PIPECTL" status --json -f branches.yaml >st.json
is "$(/usr/bin/python3 -c 'import json; d=json.load(open("st.json")); print(" ".join(x["stage"]+"="+x["status"] for x in d["stages"]))')" \
	"good=succeeded bad=failed good_db=succeeded bad_db=cancelled" "stage statuses"

# Big integers survive the trip when no jq touches them.
cat >big.yaml <<YAML
pipeline: big
stages:
  s:
    fetch:
      url: $MOCK_URL/records?n=3&start=1
      records: '.[]'
  f:
    needs: s
    load:
      file: { path: big.jsonl }
YAML
"$PIPECTL" run -q big.yaml >/dev/null 2>&1
# jq has one number type: 1.00 comes out as 1 (the same number); 2^53+1,
# passed through unchanged, stays exact.
is "$(head -1 big.jsonl)" '{"id":1,"name":"rec-1","price":1,"big":9007199254740993}' \
	"numbers: 2^53+1 stays exact through jq"
is "$(sed -n 3p big.jsonl)" '{"id":3,"name":"rec-3","price":1.02,"big":9007199254740993}' \
	"numbers: 1.02 stays 1.02"

done_testing
