#!/bin/sh
# End to end against tests/mockapi: a server that misbehaves on purpose.
# URLs it supplies (next pages, Link headers, redirects) keep to the stage's
# scheme and host (or allow_hosts); bodies that are not JSON are a failure
# class of their own (invalid_body) that retries can name; a pagination that
# stops on an error never succeeds quietly; timeouts name the phase; large
# bodies stay out of the journal and are fetched again on resume.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi
PY=/usr/bin/python3

# logcount REGEX: requests since the mark whose "host path?query" matches.
logcount() {
	$PY - "$MOCK_LOG" "$MARK" "$1" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]]
print(sum(1 for d in rows
          if re.search(sys.argv[3], d["headers"].get("host", "") + " " + d["path"] +
                       ("?" + d["query"] if d["query"] else ""))))
PY
}

# A local file a hostile server would like to read: it must never become
# records, nor reach the journal.
cat >"$T_TMP/secret.json" <<'JSON'
{"items": [{"id": "LOCAL-SECRET-7d1c"}], "next": null}
JSON
SECRET_URL="file://$T_TMP/secret.json"

# page_pl FILE URL PAGINATE [EXTRA-FETCH-LINE]: a paginated source into out.jsonl.
page_pl() {
	out_pl "$1" hostile <<YAML
  s:
    fetch:
      url: "$2"
      records: '.items[]'
      paginate: $3
${4:+      $4}
YAML
}

# =====================================================================
# 1. URLs a server supplies.
case_dir next_file
page_pl p.yaml "$MOCK_URL/pages?page=1&per=10&total=10&jump=$SECRET_URL" "{next: '.next'}"
run_pl p.yaml
is "$RC" 1 "next: file:// from a server: exit 1"
grep -q "stage s failed: .*next page $SECRET_URL refused: another scheme (file://)" "$ERR"
ok $? "next: file:// from a server: the error names the stage and the URL"
is "$(cat out.jsonl 2>/dev/null | grep -c LOCAL-SECRET)" 0 "next: file:// from a server: the file does not become records"
is "$(stq "SELECT count(*) FROM journal WHERE CAST(body AS TEXT) LIKE '%LOCAL-SECRET%'")" 0 \
	"next: file:// from a server: the file is not in the journal"

case_dir link_file
page_pl p.yaml "$MOCK_URL/pages?page=1&per=10&total=10&link=1&jump=$SECRET_URL" "{link: true}"
run_pl p.yaml
is "$RC" 1 "Link: file:// from a server: exit 1"
grep -q "stage s failed: .*next page $SECRET_URL refused" "$ERR"
ok $? "Link: file:// from a server: the error names the stage and the URL"
is "$(stq "SELECT count(*) FROM journal WHERE CAST(body AS TEXT) LIKE '%LOCAL-SECRET%'")" 0 \
	"Link: file:// from a server: the file is not in the journal"

# Another host (localhost is not 127.0.0.1) unless allow_hosts lists it.
OTHER="http://localhost:$MOCK_PORT/pages?page=1%26per=5%26total=5"
case_dir next_host
mark
page_pl p.yaml "$MOCK_URL/pages?page=1&per=10&total=10&jump=$OTHER" "{next: '.next'}"
run_pl p.yaml
is "$RC" 1 "next: another host: exit 1"
grep -q "stage s failed: .*next page http://localhost:$MOCK_PORT/pages?page=1&per=5&total=5 refused: another host (localhost:$MOCK_PORT)" "$ERR"
ok $? "next: another host: the error names the stage, the URL and the host"
is "$(logcount '^localhost:')" 0 "next: another host: no request goes there"
mark
page_pl q.yaml "$MOCK_URL/pages?page=1&per=10&total=10&jump=$OTHER" "{next: '.next'}" \
	"allow_hosts: [localhost]"
run_pl q.yaml
is "$RC:$(wc -l <out.jsonl)" "0:15" "next: a host in allow_hosts is followed (10 + 5 records)"
page_pl r.yaml "$MOCK_URL/pages?page=1&per=10&total=10&link=1&jump=$OTHER" "{link: true}" \
	"allow_hosts: ['*']"
rm -f out.jsonl
run_pl r.yaml
is "$RC:$(wc -l <out.jsonl)" "0:15" "Link: allow_hosts '*' follows any host"
page_pl s.yaml "$MOCK_URL/pages?page=1&per=10&total=10&jump=$SECRET_URL" "{next: '.next'}" \
	"allow_hosts: ['*']"
run_pl s.yaml
is "$RC" 1 "next: allow_hosts '*' still refuses file://"

# Redirects: another host is refused (file:// already was, by libcurl).
case_dir redirect
out_pl p.yaml redirect <<YAML
  s:
    fetch:
      url: "$MOCK_URL/status/302?location=http://localhost:$MOCK_PORT/json/42"
YAML
mark
run_pl p.yaml
is "$RC" 1 "redirect to another host: exit 1"
grep -q "stage s failed: .*redirect to http://localhost:$MOCK_PORT/json/42 refused: another host" "$ERR"
ok $? "redirect to another host: the error names the stage and the URL"
is "$(logcount ' /json/42')" 0 "redirect to another host: not followed"
sed 's|^      url: .*|&\n      allow_hosts: localhost|' p.yaml >q.yaml
mark
run_pl q.yaml
is "$RC:$(cat out.jsonl)" '0:{"id":42,"name":"item-42","price":19.99,"qty":3,"tags":["a","b"]}' \
	"redirect to a host in allow_hosts is followed"
out_pl r.yaml redirect <<YAML
  s:
    fetch:
      url: "$MOCK_URL/status/307?location=/json/43"
YAML
run_pl r.yaml
is "$RC:$(cat out.jsonl)" '0:{"id":43,"name":"item-43","price":19.99,"qty":3,"tags":["a","b"]}' \
	"redirect on the same host is followed"

# A bad allow_hosts entry is a config error with its position.
case_dir allow_bad
cat >p.yaml <<YAML
pipeline: allow_bad
stages:
  s:
    fetch:
      url: "$MOCK_URL/json/1"
      allow_hosts: [ok.example, "https://x.example/"]
YAML
"$PIPECTL" validate p.yaml >/dev/null 2>"$T_TMP/err.v"
is "$?:$(head -1 "$T_TMP/err.v")" \
	'2:p.yaml:6:33: invalid host "https://x.example/" in "allow_hosts": expected a host name, host:port, *.domain or *' \
	"allow_hosts: a URL is a config error at its position"

# =====================================================================
# 2. A 2xx body that is not JSON: the invalid_body failure class.
case_dir invalid_body
mark
page_pl p.yaml "$MOCK_URL/pages?page=1&per=10&total=35&invalid=3" "{next: '.next'}" \
	"retry: {attempts: 3, initial: 10ms, jitter: none}"
run_pl p.yaml
is "$RC:$(wc -l <out.jsonl)" "0:35" "invalid body on page 3, retried (default on): all 35 records"
is "$(logcount 'page=3&')" 2 "invalid body on page 3: page 3 asked for twice"
is "$(stq "SELECT group_concat(coalesce(error, 'ok'), ' | ') FROM (SELECT error FROM attempts
	WHERE run_id = $LAST AND url LIKE '%page=3&%' ORDER BY attempt)" | sed 's/ at line.*|/ |/')" \
	"invalid JSON | ok" \
	"invalid body on page 3: the attempts are recorded (invalid JSON, then ok)"
mark
page_pl q.yaml "$MOCK_URL/pages?page=1&per=10&total=36&invalid=2" "{next: '.next'}" \
	"retry: {attempts: 3, initial: 10ms, jitter: none, on: [invalid_body]}"
rm -f out.jsonl
run_pl q.yaml
is "$RC:$(wc -l <out.jsonl)" "0:36" "retry on: [invalid_body] retries a body that is not JSON"
page_pl r.yaml "$MOCK_URL/pages?page=1&per=10&total=37&invalid=2" "{next: '.next'}" \
	"retry: {attempts: 3, initial: 10ms, jitter: none, on: [5xx]}"
run_pl r.yaml
is "$RC" 1 "retry on: [5xx] does not retry an invalid body: exit 1"
grep -q "stage s failed: GET $MOCK_URL/pages?page=2&per=10&total=37&invalid=2: invalid JSON at line 1" "$ERR"
ok $? "an invalid body fails the stage naming the URL and where the JSON breaks"

# JSON lines: every line is checked before any record goes on.
mark
cat >l.yaml <<YAML
pipeline: jsonl
stages:
  s:
    fetch:
      url: "$MOCK_URL/invalid?c=jsonl"
      format: jsonl
      retry: {attempts: 2, initial: 10ms, jitter: none}
YAML
run_pl l.yaml
is "$RC:$(logcount 'c=jsonl')" "1:2" "jsonl: an invalid line is retried, then fails the stage"
grep -q "line 1: invalid JSON" "$ERR"
ok $? "jsonl: the error names the line"

# A pagination that stops on an error never succeeds quietly (retries off,
# or the default retry of invalid_body would fetch the page again).
case_dir page_skip
page_pl p.yaml "$MOCK_URL/pages?page=1&per=10&total=38&invalid=3" "{next: '.next'}" \
	"retry: {attempts: 1}"
sed -i 's|^  s:$|&\n    on_error: skip|' p.yaml
run_pl p.yaml
is "$RC" 1 "on_error skip, page 3 invalid: the run fails (not 20 of 35 records and exit 0)"
grep -q "stage s failed: .*invalid JSON.*(page 3 of a pagination: on_error: skip does not skip" "$ERR"
ok $? "on_error skip, page 3 invalid: the error says why the page is not skipped"
page_pl q.yaml "$MOCK_URL/pages?page=1&per=10&total=34&invalid=1" "{next: '.next'}" \
	"retry: {attempts: 1}"
sed -i 's|^  s:$|&\n    on_error: skip|' q.yaml
run_pl q.yaml
is "$RC" 0 "on_error skip, first page invalid: skipped like any request (nothing partial)"
case_dir page_dlq
page_pl p.yaml "$MOCK_URL/pages?page=1&per=10&total=33&invalid=3" "{next: '.next'}" \
	"retry: {attempts: 1}"
sed -i 's|^  s:$|&\n    on_error: dlq|' p.yaml
run_pl p.yaml
is "$RC:$(wc -l <out.jsonl):$(stq 'SELECT count(*) FROM dlq')" "0:20:1" \
	"on_error dlq, page 3 invalid: dead-lettered"
"$PIPECTL" dlq replay -q 1 >/dev/null 2>&1
# The replay appends its 13 records (page 3 and the rest) to the run's 20.
is "$?:$(wc -l <out.jsonl)" "0:33" "on_error dlq: the replay fetches page 3 and the rest"

# =====================================================================
# 3. A timeout names the phase that timed out: on a reused keep-alive
# connection there is no connect phase, whatever connect_timeout says.
case_dir keepalive_timeout
cat >p.yaml <<YAML
pipeline: keepalive_timeout
stages:
  s:
    fetch:
      concurrency: 1
      timeout: 500ms
      connect_timeout: 200ms
      retry: {attempts: 1}
      url:
        - "$MOCK_URL/json/1?c=ka3"
        - "$MOCK_URL/slow?ms=4000&c=ka3&gate=ka3"
YAML
mark
# The slow answer waits at a gate opened after the run: it cannot beat the
# timeout however late the loop runs.
run_pl p.yaml
mock_gate ka3 open >/dev/null
is "$RC" 1 "timeout on a reused connection: exit 1"
is "$($PY - "$MOCK_LOG" "$MARK" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]]
print(len(set(d["conn"] for d in rows if "c=ka3" in d["query"])))
PY
)" 1 "timeout on a reused connection: both requests on one connection"
grep -q "stage s failed: GET $MOCK_URL/slow?ms=4000&c=ka3&gate=ka3: timed out after 0.5s waiting for the response on a reused connection (timeout)" "$ERR"
ok $? "timeout on a reused connection: reported as waiting for the response, not as connect"
grep -q "connect timed out" "$ERR"
is "$?" 1 "timeout on a reused connection: no \"connect timed out\""

# =====================================================================
# 4. Large bodies: max_body refuses what a Content-Length announces; the
# journal keeps only the digest of a body over 1 MiB, and a resume fetches
# it again (and says so in --dry-run).
case_dir big
cat >p.yaml <<YAML
pipeline: max_body
stages:
  s:
    fetch:
      url: "$MOCK_URL/big?kb=300&c=mb4"
      max_body: 256KiB
YAML
run_pl p.yaml
is "$RC" 1 "max_body: a larger body fails the stage"
grep -q "stage s failed: GET $MOCK_URL/big?kb=300&c=mb4: response body of 307200 bytes (Content-Length) exceeds 256 KiB (max_body)" "$ERR"
ok $? "max_body: the error names the URL, the announced size and the limit"
is "$(stq 'SELECT count(*) FROM journal')" 0 "max_body: nothing journaled"

out_pl q.yaml big_journal <<YAML
  s:
    fetch:
      concurrency: 1
      url:
        - "$MOCK_URL/big?kb=2048&c=d4"
        - "$MOCK_URL/json/4?c=d4"
        - "$MOCK_URL/seq/d4?codes=500,200"
YAML
mark
run_pl q.yaml
RUN=$(stq 'SELECT max(id) FROM runs')
is "$RC" 1 "big body: the run fails on its third request"
BIG_SHA=$($PY -c 'import hashlib; n = 2048 * 1024; print(hashlib.sha256(b"{\"data\":\"" + b"x" * (n - 11) + b"\"}").hexdigest())')
is "$(stq "SELECT length(body), size, digest FROM journal WHERE run_id = $RUN AND digest IS NOT NULL")" \
	"0|2097152|$BIG_SHA" "big body: the journal keeps its size and SHA-256, not the body"
is "$(stq "SELECT count(*), max(length(body)) < 1024 FROM journal WHERE run_id = $RUN")" "2|1" \
	"big body: the small response is journaled whole"
sz=$(cat .pipectl/state.db .pipectl/state.db-wal 2>/dev/null | wc -c)
[ "$sz" -lt 1048576 ]
ok $? "big body: the state database stays small ($sz bytes with its WAL)"
"$PIPECTL" resume "$RUN" --dry-run >"$T_TMP/dry" 2>&1
grep -q "^  s  .*1 response from the journal; 1 fetched again (a body over 1024 KiB is journaled as its digest only)" "$T_TMP/dry"
ok $? "resume --dry-run: says the big body is fetched again"
"$PIPECTL" resume "$RUN" >/dev/null 2>"$T_TMP/err.resume"
is "$?:$(wc -l <out.jsonl)" "0:3" "big body: the resume succeeds with all 3 records"
is "$(logcount 'big\?kb=2048&c=d4'):$(logcount '/json/4\?c=d4')" "2:1" \
	"big body: the resume fetches the big body again, the small one comes from the journal"
grep -q "differs" "$T_TMP/err.resume"
is "$?" 1 "big body: the same body again raises no warning"

# A large body is parsed off the loop; one that is not JSON is still an
# invalid_body, retried.
cat >r.yaml <<YAML
pipeline: big_invalid
stages:
  s:
    fetch:
      url: "$MOCK_URL/big?kb=600&truncate=1&c=d4i"
      retry: {attempts: 2, initial: 10ms, jitter: none}
YAML
mark
run_pl r.yaml
is "$RC:$(logcount 'c=d4i')" "1:2" "big invalid body: retried once, then the stage fails"
grep -q "stage s failed: GET $MOCK_URL/big?kb=600&truncate=1&c=d4i: invalid JSON at line 1.* (after 2 attempts)" "$ERR"
ok $? "big invalid body: the error says it is not JSON"

# =====================================================================
# A counter that would run past the largest integer ends the pagination
# with an error instead of wrapping round to negative pages.
case_dir counter_overflow
out_pl p.yaml hostile <<YAML
  s:
    fetch:
      url: "$MOCK_URL/json/1?c=ovf"
      paginate: {param: page, start: 9223372036854775806, step: 1, stop: 'false', max_pages: 5}
YAML
run_pl p.yaml
is "$RC" 1 "counter past the largest integer: exit 1"
grep -q 'stage s failed: .*c=ovf&page=9223372036854775807: paginate "page" would go past 9223372036854775807' "$ERR"
ok $? "counter past the largest integer: the error names the page and the limit"
is "$(logcount 'c=ovf&page=-')" 0 "counter past the largest integer: no negative page is asked for"

done_testing
