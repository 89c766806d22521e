#!/bin/sh
# End to end against tests/mockapi: retries (backoff, Retry-After, when,
# idempotency), host pools (concurrency, rate, breaker), on_error, fan-out,
# pagination and timeouts. Checks what the server saw (its request log:
# counts, timestamps, headers), the data loaded, the attempts, dead letters
# and events recorded in the state database, and exit codes.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi
PY=/usr/bin/python3

# ---- helpers (case_dir, run_pl, stq, LAST and mark: tests/lib.sh)

# Queries on the server's request log since the last mark; REGEX is matched
# against "path?query".
cat >"$T_TMP/log.py" <<'PY'
import json, re, sys
cmd, log, skip, rx = sys.argv[1:5]
arg = sys.argv[5] if len(sys.argv) > 5 else None
rows = [json.loads(l) for l in open(log).read().splitlines()[int(skip):]]
sel = [d for d in rows
       if re.search(rx, d["path"] + ("?" + d["query"] if d["query"] else ""))]
ts = sorted(d["ts"] for d in sel)
if cmd == "count":
    print(len(sel))
elif cmd == "gaps":
    print(" ".join("%.3f" % (b - a) for a, b in zip(ts, ts[1:])))
elif cmd == "span":
    print("%.3f" % (ts[-1] - ts[0] if ts else 0))
elif cmd == "overlap":
    # most [ts, ts+W] windows that share a point
    w = float(arg)
    print(max([sum(1 for u in ts if u <= t <= u + w) for t in ts] or [0]))
elif cmd == "header":
    for d in sel:
        print(d["headers"].get(arg.lower(), "-"))
elif cmd == "conns":
    print(len(set(d["conn"] for d in sel)))
elif cmd == "perparam":
    # requests per value of a query parameter, in order of first request
    seen = {}
    for d in sel:
        m = re.search(r"(?:^|&)" + re.escape(arg) + r"=([^&]*)", d["query"])
        k = m.group(1) if m else "-"
        seen[k] = seen.get(k, 0) + 1
    print(" ".join("%s:%d" % (k, v) for k, v in seen.items()))
PY
logq() { # logq CMD REGEX [ARG]
	$PY "$T_TMP/log.py" "$1" "$MOCK_LOG" "$MARK" "$2" ${3+"$3"}
}

# planned REGEX: the delays pipectl planned before each retry of the URLs
# matching REGEX, in order, from its -v log in $ERR ("pipectl: METHOD URL:
# ERROR; attempt N of M in Ds"). The retry schedule is asserted on these,
# exactly; the gaps the server saw only get lower bounds (a timer never
# fires early, but a loaded machine may run it late).
planned() {
	grep -E "^pipectl: [A-Z]+ $MOCK_URL$1" "$ERR" |
		sed -n 's/.*; attempt [0-9]* of [0-9]* in \([0-9.]*\)s$/\1/p' | tr '\n' ' ' |
		sed 's/ $//'
}
# atleast VALUE LOW: true when VALUE >= LOW.
atleast() {
	awk -v v="$1" -v lo="$2" 'BEGIN { exit !(v != "" && v + 0 >= lo) }'
}
# nth WORD-INDEX WORDS...: the n-th word (from 1).
nth() { n=$1; shift; eval "echo \${$n:-}"; }

# =====================================================================
# 1. 503, 503, 200 with a constant 200ms backoff.
case_dir retry_ok
mark
cat >p.yaml <<YAML
pipeline: retry_ok
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c1?codes=503,503,200
      retry: {attempts: 3, backoff: constant, initial: 200ms, jitter: none, on: [5xx]}
  db:
    needs: s
    load:
      sqlite: {path: out.db, table: t}
YAML
run_pl p.yaml -v
is "$RC" 0 "retry 503,503,200: exit 0"
is "$(logq count '^/seq/c1')" 3 "retry 503,503,200: the server saw 3 requests"
gaps=$(logq gaps '^/seq/c1')
g1=$(nth 1 $gaps)
g2=$(nth 2 $gaps)
is "$(planned '/seq/c1')" "0.200 0.200" "retry 503,503,200: pipectl planned two 200ms waits"
atleast "$g1" 0.18 && atleast "$g2" 0.18
ok $? "retry 503,503,200: gaps between requests at least 200ms ($gaps)"
is "$(stq "SELECT group_concat(attempt || ':' || http_status, ' ') FROM
	(SELECT * FROM attempts WHERE run_id = $LAST AND stage = 's' ORDER BY attempt)")" \
	"1:503 2:503 3:200" "retry 503,503,200: attempts recorded 503, 503, 200"
is "$(stq "SELECT count(*) FROM attempts WHERE run_id = $LAST AND attempt > 1 AND
	abs(wait - 0.2) < 0.001")" 2 "retry 503,503,200: each retry recorded a 200ms wait"
is "$(sq out.db 'SELECT name, attempt FROM t')" "c1|3" "retry 503,503,200: the record is loaded"
# 16. status counts attempts as requests.
"$PIPECTL" status --json -f p.yaml >st.json 2>/dev/null
is "$($PY -c 'import json,sys; d=json.load(open("st.json")); print([x["requests"] for x in d["stages"] if x["stage"]=="s"][0])')" \
	3 "status --json: the stage's requests count every attempt"

# =====================================================================
# 2. Exhausted retries.
case_dir retry_exhausted
mark
cat >p.yaml <<YAML
pipeline: retry_exhausted
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c2?codes=503
      retry: {attempts: 3, backoff: constant, initial: 50ms, jitter: none, on: [5xx]}
YAML
run_pl p.yaml
is "$RC" 1 "always 503: exit 1"
is "$(logq count '^/seq/c2')" 3 "always 503: exactly 3 requests"
grep -q "GET $MOCK_URL/seq/c2?codes=503: HTTP 503 Service Unavailable.*(after 3 attempts)" "$ERR"
ok $? "always 503: the message names the URL, the status and \"(after 3 attempts)\""
is "$(stq "SELECT count(*) FROM attempts WHERE run_id = $LAST AND http_status = 503")" 3 \
	"always 503: 3 attempts recorded"

# =====================================================================
# 3. Retry-After.
case_dir retry_after
mark
cat >p.yaml <<YAML
pipeline: retry_after
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c3a?codes=429,200&retry_after=1
      retry: {attempts: 3, backoff: constant, initial: 10ms, jitter: none, on: [429]}
YAML
run_pl p.yaml -v
is "$RC" 0 "429 with Retry-After: 1: exit 0"
is "$(logq count '^/seq/c3a')" 2 "429 with Retry-After: 1: 2 requests"
g=$(logq gaps '^/seq/c3a')
is "$(planned '/seq/c3a')" "1.000" "429 with Retry-After: 1: pipectl planned a 1s wait, not 10ms"
atleast "$g" 0.9
ok $? "429 with Retry-After: 1: the retry waited at least 1s ($g)"
cat >q.yaml <<YAML
pipeline: retry_after_max
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c3b?codes=429,200&retry_after=5
      retry: {attempts: 3, backoff: constant, initial: 10ms, max: 300ms, jitter: none, on: [429]}
YAML
run_pl q.yaml -v
is "$RC" 0 "Retry-After: 5 capped by max 300ms: exit 0"
g=$(logq gaps '^/seq/c3b')
is "$(planned '/seq/c3b')" "0.300" "Retry-After: 5 capped by max 300ms: pipectl planned a 300ms wait"
atleast "$g" 0.25
ok $? "Retry-After: 5 capped by max 300ms: the retry waited at least 300ms ($g)"

# =====================================================================
# 4. A 404 is not a 5xx; exponential backoff.
case_dir retry_on
mark
cat >p.yaml <<YAML
pipeline: retry_on
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c4a?codes=404,200
      retry: {attempts: 3, initial: 10ms, jitter: none, on: [5xx]}
YAML
run_pl p.yaml
is "$RC" 1 "404 with on: [5xx]: exit 1"
is "$(logq count '^/seq/c4a')" 1 "404 with on: [5xx]: not retried (1 request)"
cat >q.yaml <<YAML
pipeline: retry_exp
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c4b?codes=503,503,503,200
      retry: {attempts: 4, backoff: exponential, initial: 100ms, jitter: none, on: [5xx]}
YAML
run_pl q.yaml -v
is "$RC" 0 "exponential backoff: exit 0"
gaps=$(logq gaps '^/seq/c4b')
is "$(echo $gaps | wc -w)" 3 "exponential backoff: 4 requests"
is "$(planned '/seq/c4b')" "0.100 0.200 0.400" \
	"exponential backoff: pipectl planned waits of 0.1, 0.2, 0.4s"
atleast "$(nth 1 $gaps)" 0.09 && atleast "$(nth 2 $gaps)" 0.18 &&
	atleast "$(nth 3 $gaps)" 0.36
ok $? "exponential backoff: gaps at least 0.1, 0.2, 0.4s ($gaps)"

# =====================================================================
# 5. POST is retried only when idempotent, with an Idempotency-Key.
case_dir retry_post
mark
cat >p.yaml <<YAML
pipeline: retry_post
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c5a?codes=503,200
      method: POST
      body: hello
      retry: {attempts: 3, initial: 10ms, jitter: none, on: [5xx]}
YAML
run_pl p.yaml
is "$RC" 1 "POST without idempotent: exit 1"
is "$(logq count '^/seq/c5a')" 1 "POST without idempotent: not retried (1 request)"
is "$(logq header '^/seq/c5a' Idempotency-Key)" "-" "POST without idempotent: no Idempotency-Key"
cat >q.yaml <<YAML
pipeline: retry_post_idem
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c5b?codes=503,200
      method: POST
      body: hello
      idempotent: true
      retry: {attempts: 3, initial: 10ms, jitter: none, on: [5xx]}
YAML
run_pl q.yaml
is "$RC" 0 "POST with idempotent: true: exit 0"
is "$(logq count '^/seq/c5b')" 2 "POST with idempotent: true: retried (2 requests)"
keys=$(logq header '^/seq/c5b' Idempotency-Key)
k1=$(echo "$keys" | sed -n 1p)
k2=$(echo "$keys" | sed -n 2p)
[ -n "$k1" ] && [ "$k1" != "-" ] && [ "$k1" = "$k2" ]
ok $? "POST with idempotent: true: both attempts carry the same Idempotency-Key ($k1 / $k2)"

# =====================================================================
# 6. A timeout is retried.
case_dir retry_timeout
mark
cat >p.yaml <<YAML
pipeline: retry_timeout
stages:
  s:
    fetch:
      url: $MOCK_URL/slow?ms=2000&c=6&gate=r6
      timeout: 200ms
      retry: {attempts: 2, initial: 10ms, jitter: none, on: [timeout]}
YAML
# The answers wait at a gate opened only after the run: however late the
# loop runs, no answer can beat the timeout.
run_pl p.yaml
mock_gate r6 open >/dev/null
is "$RC" 1 "timeout: exit 1"
is "$(logq count '^/slow\?ms=2000&c=6&gate=r6$')" 2 "timeout: retried (2 requests)"
grep -Eq "GET $MOCK_URL/slow\?ms=2000&c=6&gate=r6: .*(timed out|Timeout).*\(after 2 attempts\)" "$ERR"
ok $? "timeout: the message says it timed out, \"(after 2 attempts)\""

# =====================================================================
# 7. Connection refused is retried.
case_dir retry_refused
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cat >p.yaml <<YAML
pipeline: retry_refused
stages:
  s:
    fetch:
      url: http://127.0.0.1:$port/x
      retry: {attempts: 3, initial: 50ms, jitter: none, on: [connect]}
YAML
run_pl p.yaml
is "$RC" 1 "connection refused: exit 1"
is "$(stq "SELECT count(*), count(DISTINCT attempt), sum(http_status IS NULL OR http_status = 0)
	FROM attempts WHERE run_id = $LAST")" "3|3|3" "connection refused: 3 attempts recorded, no status"
grep -q "GET http://127.0.0.1:$port/x: .*(after 3 attempts)" "$ERR"
ok $? "connection refused: \"(after 3 attempts)\""

# =====================================================================
# 8. retry.when on a 200.
case_dir retry_when
mark
cat >p.yaml <<YAML
pipeline: retry_when
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/c8?codes=200
      retry: {attempts: 4, initial: 10ms, jitter: none, when: '.attempt < 2'}
  out:
    needs: s
    load:
      file: {path: out.jsonl}
YAML
run_pl p.yaml
is "$RC" 0 "retry.when: exit 0"
is "$(logq count '^/seq/c8')" 2 "retry.when: retried while the condition held (2 requests)"
is "$(cat out.jsonl 2>/dev/null)" '{"name":"c8","attempt":2}' "retry.when: the second answer is loaded"

# =====================================================================
# 9. Per-host concurrency.
case_dir host_concurrency
pool_pl() { # pool_pl FILE HOSTS-YAML TAG [EXTRA-QUERY]
	{
		echo "pipeline: hc"
		echo "$2"
		echo "stages:"
		echo "  s:"
		echo "    fetch:"
		echo "      concurrency: 10"
		echo "      url:"
		i=1
		while [ $i -le 12 ]; do
			echo "        - $MOCK_URL/slow?ms=300&$3=$i${4:-}"
			i=$((i + 1))
		done
	} >"$1"
}
mark
pool_pl p.yaml "hosts: {\"127.0.0.1:$MOCK_PORT\": {concurrency: 2}}" c9a
run_pl p.yaml
is "$RC" 0 "host concurrency 2: exit 0"
is "$(logq count '^/slow\?ms=300&c9a=')" 12 "host concurrency 2: 12 requests"
ov=$(logq overlap '^/slow\?ms=300&c9a=' 0.28)
ok "$([ "$ov" -le 2 ]; echo $?)" "host concurrency 2: at most 2 requests overlap at the server ($ov)"
mark
# Without a pool limit, the responses wait at a gate until 3 requests are
# in flight at once (no timing: the gate holds them as long as it takes).
pool_pl q.yaml "" c9b "&gate=c9b"
"$PIPECTL" run q.yaml >"$T_TMP/out.c9b" 2>"$T_TMP/err.c9b" &
pid=$!
wait_until mock_gate_waiting c9b 3
ok $? "no hosts entry: 3 requests are in flight at once, so the check above can fail"
mock_gate c9b open >/dev/null
wait "$pid"
is "$?" 0 "no hosts entry: exit 0"

# =====================================================================
# 10. Rate limit.
case_dir host_rate
mark
{
	echo "pipeline: rate"
	echo "hosts: {\"127.0.0.1:$MOCK_PORT\": {rate: 10/s, burst: 1}}"
	echo "stages:"
	echo "  s:"
	echo "    fetch:"
	echo "      url:"
	i=1
	while [ $i -le 15 ]; do
		echo "        - $MOCK_URL/json/$i?c10=1"
		i=$((i + 1))
	done
} >p.yaml
run_pl p.yaml
is "$RC" 0 "rate 10/s: exit 0"
is "$(logq count 'c10=1')" 15 "rate 10/s: 15 requests"
span=$(logq span 'c10=1')
atleast "$span" 1.2
ok $? "rate 10/s burst 1: 15 requests span at least 1.2s ($span)"
# The limiter's guarantee is about when pipectl sends (the attempts' start
# times), not when the server takes the requests up: a server scheduled out
# for a while takes up several at once.
mw=$(stq "SELECT started FROM attempts WHERE run_id = $LAST" | awk '
	{ t[NR] = $1 }
	END { m = 0; for (i = 1; i <= NR; i++) { n = 0
		for (j = 1; j <= NR; j++) if (t[j] >= t[i] && t[j] <= t[i] + 1.0) n++
		if (n > m) m = n }
	print m }')
ok "$([ "$mw" -le 11 ]; echo $?)" "rate 10/s burst 1: no second holds more than 11 requests ($mw)"

# =====================================================================
# 11. Circuit breaker. Requests that meet an open breaker wait for its
# cool-down and use up no attempt: each of them is sent once, as a trial,
# after the cool-down (a failed trial opens the breaker again).
case_dir host_breaker
mark
{
	echo "pipeline: breaker"
	echo "hosts: {\"127.0.0.1:$MOCK_PORT\": {breaker: {failures: 2, cooldown: 1s}}}"
	echo "stages:"
	echo "  s:"
	echo "    on_error: skip"
	echo "    fetch:"
	echo "      concurrency: 1"
	echo "      retry: {attempts: 1}"
	echo "      url:"
	i=1
	while [ $i -le 5 ]; do
		echo "        - $MOCK_URL/status/503?i=$i"
		i=$((i + 1))
	done
} >p.yaml
run_pl p.yaml
is "$RC" 0 "breaker with on_error skip: exit 0"
is "$(logq count '^/status/503\?i=')" 5 \
	"breaker: every request reaches the server once (none is used up by the open breaker)"
is "$(stq "SELECT count(*) FROM events WHERE run_id = $LAST AND kind = 'breaker'
	AND message LIKE '%closed -> open%'")" 1 "breaker: the transition to open is recorded"
is "$(stq "SELECT count(*) FROM events WHERE run_id = $LAST AND kind = 'breaker'
	AND message LIKE '%open -> half-open%'")" 3 "breaker: each of the 3 later requests waited for a half-open"
is "$(stq "SELECT errors FROM stage_runs WHERE run_id = $LAST AND stage = 's'")" 5 \
	"breaker: the stage counts 5 errors"
is "$(stq "SELECT count(*) FROM attempts WHERE run_id = $LAST AND error LIKE '%circuit breaker%'")" 0 \
	"breaker: no attempt fails on the open breaker"
is "$(stq "SELECT group_concat(wait_breaker > 0, '') FROM (SELECT wait_breaker FROM attempts
	WHERE run_id = $LAST ORDER BY rowid)")" "00111" \
	"breaker: the 3 requests after it opened waited for the breaker"

# A retry that finds the breaker open waits for the cool-down and still
# has its attempt (it used to fail at once: "circuit breaker is open").
case_dir breaker_retry
mark
cat >p.yaml <<YAML
pipeline: breaker_retry
hosts: {"127.0.0.1:$MOCK_PORT": {breaker: {failures: 2, cooldown: 1s}}}
stages:
  s:
    fetch:
      url: $MOCK_URL/seq/b11?codes=503,503,200
      retry: {attempts: 3, backoff: constant, initial: 10ms, jitter: none, on: [5xx]}
YAML
run_pl p.yaml
is "$RC" 0 "breaker open before the last attempt: exit 0"
is "$(logq count '^/seq/b11')" 3 "breaker open before the last attempt: the server saw all 3 attempts"
is "$(stq "SELECT group_concat(attempt || ':' || http_status, ' ') FROM (SELECT * FROM attempts
	WHERE run_id = $LAST ORDER BY rowid)")" "1:503 2:503 3:200" \
	"breaker open before the last attempt: attempts 503, 503, 200"
is "$(stq "SELECT wait_breaker > 0, abs(wait_backoff - 0.01) < 0.001,
	abs(wait - (wait_backoff + wait_breaker)) < 0.000001
	FROM attempts WHERE run_id = $LAST AND attempt = 3")" "1|1|1" \
	"breaker open before the last attempt: it waited its backoff and then for the breaker"

# =====================================================================
# 12. on_error skip and dlq on a source fetch.
case_dir on_error_skip
mark
cat >p.yaml <<YAML
pipeline: skip
stages:
  s:
    on_error: skip
    fetch:
      url: [$MOCK_URL/json/1, $MOCK_URL/status/404, $MOCK_URL/json/2]
  db:
    needs: s
    load:
      sqlite: {path: out.db, table: t}
YAML
run_pl p.yaml
is "$RC" 0 "on_error skip: exit 0"
is "$(sq out.db 'SELECT group_concat(id) FROM (SELECT id FROM t ORDER BY id)' 2>&1)" "1,2" \
	"on_error skip: the 2 good records are loaded"
is "$(stq "SELECT errors FROM stage_runs WHERE run_id = $LAST AND stage = 's'")" 1 \
	"on_error skip: the stage counts 1 error"
case_dir on_error_dlq
cat >p.yaml <<YAML
pipeline: dlq
stages:
  s:
    on_error: dlq
    fetch:
      url: [$MOCK_URL/json/1, $MOCK_URL/status/404, $MOCK_URL/json/2]
  db:
    needs: s
    load:
      sqlite: {path: out.db, table: t}
YAML
run_pl p.yaml
is "$RC" 0 "on_error dlq: exit 0"
is "$(sq out.db 'SELECT count(*) FROM t' 2>&1)" 2 "on_error dlq: the 2 good records are loaded"
is "$(stq "SELECT count(*), stage, json_extract(payload, '$.url'), error LIKE '%404%'
	FROM dlq WHERE run_id = $LAST")" "1|s|$MOCK_URL/status/404|1" \
	"on_error dlq: the dead letter holds the failing request and its 404"
is "$(stq "SELECT json_array_length(attempts), json_extract(attempts, '\$[0].status')
	FROM dlq WHERE run_id = $LAST")" "1|404" "on_error dlq: the dead letter keeps its attempt history"
"$PIPECTL" dlq list -f p.yaml >dlq.out 2>&1
is "$?" 0 "dlq list: exit 0"
grep -q "/status/404" dlq.out
ok $? "dlq list shows the dead letter"

# =====================================================================
# 13. Fan-out: a request per input record, merged.
fanout_pl() { # fanout_pl FILE ON_ERROR-LINE
	printf '%s\n' '{"id":1,"path":"/json/1"}' '{"id":2,"path":"/json/2"}' >in.jsonl
	[ "$3" = bad ] && printf '%s\n' '{"id":3,"path":"/status/500"}' >>in.jsonl
	cat >"$1" <<YAML
pipeline: fanout
stages:
  src:
    fetch:
      file: in.jsonl
      format: jsonl
  enrich:
    needs: src
$2
    fetch:
      url: "$MOCK_URL\${.path}"
      merge: '.record + {name: .response.name}'
  out:
    needs: enrich
    load:
      file: {path: out.jsonl}
YAML
}
case_dir fanout_ok
mark
fanout_pl p.yaml "" good
run_pl p.yaml
is "$RC" 0 "fan-out: exit 0"
is "$(sort out.jsonl 2>/dev/null | tr '\n' ' ')" \
	'{"id":1,"path":"/json/1","name":"item-1"} {"id":2,"path":"/json/2","name":"item-2"} ' \
	"fan-out: each record merged with its response"
is "$(logq count '^/json/[12]$')" 2 "fan-out: one request per record"

case_dir fanout_pass
fanout_pl p.yaml "    on_error: pass" bad
run_pl p.yaml
is "$RC" 0 "fan-out on_error pass: exit 0"
is "$(wc -l <out.jsonl 2>/dev/null)" 3 "fan-out on_error pass: 3 records go on"
is "$($PY -c '
import json, sys
for l in open("out.jsonl"):
    d = json.loads(l)
    if d["id"] == 3:
        e = d.get("_errors")
        print(len(e), e[0]["stage"], e[0]["url"], "500" in e[0]["error"], "name" in d)
' 2>&1)" "1 enrich $MOCK_URL/status/500 True False" \
	"fan-out on_error pass: the failed record carries _errors (stage, url, error)"

case_dir fanout_dlq
fanout_pl p.yaml "    on_error: dlq" bad
run_pl p.yaml
is "$RC" 0 "fan-out on_error dlq: exit 0"
is "$(wc -l <out.jsonl 2>/dev/null)" 2 "fan-out on_error dlq: the 2 good records are loaded"
is "$(stq "SELECT stage, json(payload), error LIKE '%500%' FROM dlq WHERE run_id = $LAST")" \
	'enrich|{"id":3,"path":"/status/500"}|1' "fan-out on_error dlq: the input record is the payload"

case_dir fanout_fail
fanout_pl p.yaml "    on_error: fail" bad
run_pl p.yaml
is "$RC" 1 "fan-out on_error fail: exit 1"
is "$(stq "SELECT group_concat(stage || '=' || status, ' ') FROM
	(SELECT * FROM stage_runs WHERE run_id = $LAST ORDER BY seq)")" \
	"src=succeeded enrich=failed out=cancelled" "fan-out on_error fail: the sink is cancelled"

# =====================================================================
# 14. Pagination.
case_dir paginate
page_pl() { # page_pl FILE URL PAGINATE-YAML [RETRY-YAML]
	cat >"$1" <<YAML
pipeline: pages
stages:
  s:
    fetch:
      url: "$2"
      records: '.items[]'
      paginate: $3
${4:+      retry: $4}
  out:
    needs: s
    load:
      sqlite: {path: $1.db, table: t, key: id}
YAML
}
mark
page_pl next.yaml "$MOCK_URL/pages?page=1&per=10&total=35" "{next: '.next'}"
run_pl next.yaml
is "$RC" 0 "paginate next: exit 0"
is "$(sq next.yaml.db 'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t' 2>&1)" "35|35|1|35" \
	"paginate next: 35 records"
is "$(logq perparam '^/pages' page)" "1:1 2:1 3:1 4:1" "paginate next: 4 pages, each requested once"
mark
page_pl param.yaml "$MOCK_URL/pages?per=10&total=35" "{param: page, stop: '.items | length == 0'}"
run_pl param.yaml
is "$RC" 0 "paginate param: exit 0"
is "$(sq param.yaml.db 'SELECT count(*), count(DISTINCT id) FROM t' 2>&1)" "35|35" "paginate param: 35 records"
is "$(logq perparam '^/pages' page)" "1:1 2:1 3:1 4:1 5:1" "paginate param: 5 requests (the empty page stops)"
mark
page_pl max.yaml "$MOCK_URL/pages?page=1&per=10&total=35" "{next: '.next', max_pages: 2}"
run_pl max.yaml
is "$RC" 0 "paginate max_pages 2: exit 0"
is "$(sq max.yaml.db 'SELECT count(*), max(id) FROM t' 2>&1)" "20|20" "paginate max_pages 2: 20 records"
is "$(logq count '^/pages')" 2 "paginate max_pages 2: 2 requests"
# A page that fails once is retried on its own (mockapi: fail=P answers 503
# to the first request for page P).
mark
page_pl fail.yaml "$MOCK_URL/pages?page=1&per=10&total=35&fail=3" "{next: '.next'}" \
	"{attempts: 3, initial: 50ms, jitter: none, on: [5xx]}"
run_pl fail.yaml
is "$RC" 0 "paginate, page 3 fails once: exit 0"
is "$(sq fail.yaml.db 'SELECT count(*), count(DISTINCT id) FROM t' 2>&1)" "35|35" \
	"paginate, page 3 fails once: 35 records"
is "$(logq perparam '^/pages' page)" "1:1 2:1 3:2 4:1" \
	"paginate, page 3 fails once: only page 3 is requested again"
is "$(stq "SELECT group_concat(http_status, ' ') FROM (SELECT http_status FROM attempts
	WHERE run_id = $LAST AND url LIKE '%page=3%' ORDER BY attempt)")" "503 200" \
	"paginate, page 3 fails once: its attempts are recorded 503, 200"

# =====================================================================
# 15. Stage and run timeouts.
case_dir timeouts
cat >p.yaml <<YAML
pipeline: stage_timeout
stages:
  s:
    stage_timeout: 300ms
    fetch:
      url: $MOCK_URL/slow?ms=3000&c=15a&gate=r15a
YAML
run_pl p.yaml
is "$RC" 1 "stage_timeout: exit 1"
grep -q "stage_timeout (300ms) exceeded" "$ERR"
ok $? "stage_timeout: \"stage_timeout (300ms) exceeded\""
d=$(stq "SELECT finished - started FROM stage_runs WHERE run_id = $LAST AND stage = 's'")
atleast "$d" 0.25
ok $? "stage_timeout: the stage stopped after at least 300ms ($d)"
# The answer was held at a closed gate all along: the stage ended on its
# timeout, not on the answer (without timing the run).
is "$(mock_gate r15a | sed "s/.*passed=//")" 0 \
	"stage_timeout: the stage stopped while its answer was still held"
mock_gate r15a open >/dev/null
cat >q.yaml <<YAML
pipeline: run_timeout
settings: {run_timeout: 300ms}
stages:
  s:
    fetch:
      url: $MOCK_URL/slow?ms=3000&c=15b&gate=r15b
YAML
run_pl q.yaml
is "$RC" 1 "run_timeout: exit 1"
grep -q "run_timeout (300ms) exceeded" "$ERR"
ok $? "run_timeout: \"run_timeout (300ms) exceeded\""
d=$(stq "SELECT finished - started FROM runs WHERE id = $LAST")
atleast "$d" 0.25
ok $? "run_timeout: the run stopped after at least 300ms ($d)"
is "$(mock_gate r15b | sed "s/.*passed=//")" 0 \
	"run_timeout: the run stopped while its answer was still held"
mock_gate r15b open >/dev/null

# =====================================================================
# 16. A half-open breaker's trial whose stage stops (here: stage_timeout)
# still reports its answer: other stages using the host go on.
case_dir breaker_trial
cat >p.yaml <<YAML
pipeline: breaker_trial
hosts:
  "127.0.0.1:$MOCK_PORT": {breaker: {failures: 1, cooldown: 300ms}}
stages:
  a:
    stage_timeout: 1500ms
    fetch:
      url: "http://127.0.0.1:$MOCK_PORT/seq/trial16?codes=500,200&delay=1000"
      retry: {attempts: 5, initial: 10ms, jitter: none}
  src:
    fetch:
      url: "http://localhost:$MOCK_PORT/json/1?delay=1700"
  b:
    needs: src
    fetch:
      url: "http://127.0.0.1:$MOCK_PORT/json/\${.id}?c=16"
      retry: {attempts: 30, backoff: constant, initial: 100ms, jitter: none}
  out:
    needs: b
    load:
      file: {path: out.jsonl}
YAML
run_pl p.yaml
is "$(stq "SELECT group_concat(stage || '=' || status, ' ') FROM
	(SELECT * FROM stage_runs WHERE run_id = $LAST ORDER BY seq)")" \
	"a=failed src=succeeded b=succeeded out=succeeded" \
	"breaker: the trial of a stopped stage closes the breaker for the others"
is "$(cat out.jsonl 2>/dev/null)" '{"id":1,"name":"item-1","price":19.99,"qty":3,"tags":["a","b"]}' \
	"breaker: the other stage's record is loaded"

# =====================================================================
# 17. dlq replay of a failed page of a counter pagination goes on from that
# page (not from the first one again).
case_dir replay_counter
cat >p.yaml <<YAML
pipeline: replay_counter
stages:
  s:
    on_error: dlq
    fetch:
      url: "$MOCK_URL/pages?per=10&total=55&fail=3"
      records: '.items[]'
      paginate: {param: page, stop: '.items | length == 0'}
      retry: {attempts: 1}
  out:
    needs: s
    load:
      file: {path: out.jsonl}
YAML
mark
run_pl p.yaml
is "$RC:$(wc -l <out.jsonl)" "0:20" "replay counter: the run loads pages 1 and 2, page 3 is dead-lettered"
"$PIPECTL" dlq replay -q 1 >/dev/null 2>"$T_TMP/err.replay"
is "$?" 0 "replay counter: dlq replay exits 0"
is "$(wc -l <out.jsonl)" 55 "replay counter: the replay adds pages 3 to 6 (35 records) to the 20"
is "$(logq perparam '^/pages' page)" "1:1 2:1 3:2 4:1 5:1 6:1 7:1" \
	"replay counter: the replay asks for page 3 and the pages after it, not page 1 again"

# =====================================================================
# 18. Pagination pauses while downstream is full: a paging source feeding a
# slow fan-out asks for its next page only as the fan-out catches up.
case_dir paginate_backpressure
cat >p.yaml <<YAML
pipeline: paginate_backpressure
settings: {queue: 20, batch_size: 10}
stages:
  s:
    fetch:
      url: "$MOCK_URL/pages?page=1&per=10&total=300"
      records: '.items[]'
      paginate: {next: '.next'}
  e:
    needs: s
    fetch:
      concurrency: 2
      url: "$MOCK_URL/json/\${.id}?delay=5&c=18"
  out:
    needs: e
    load:
      file: {path: out.jsonl}
YAML
mark
run_pl p.yaml
is "$RC:$(wc -l <out.jsonl)" "0:300" "paginate backpressure: 300 records"
is "$($PY - "$MOCK_LOG" "$MARK" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]]
last = max(i for i, d in enumerate(rows) if d["path"] == "/pages")
fan = sum(1 for i, d in enumerate(rows) if "c=18" in d["query"] and i < last)
print("ok" if fan >= 200 else "only %d fan-out requests before the last page" % fan)
PY
)" ok "paginate backpressure: the last page is asked for only once most records went on"

done_testing
