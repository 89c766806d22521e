#!/bin/sh
# Time spent waiting before each attempt, by reason: the host's rate limit,
# its concurrency, its breaker (tests/integration/resilience.sh), the
# server's Retry-After and the retry backoff (retry_defaults.sh). Asserts
# lower bounds that follow from the limits (a token bucket of 5/s cannot
# send 6 requests in less than a second) and which reason the wait is
# counted under, never a wall-clock upper bound.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi
PY=/usr/bin/python3

# urls_pl FILE HOSTS-YAML N PATH-PREFIX: one fetch of N URLs.
urls_pl() {
	{
		echo "pipeline: waits"
		echo "$2"
		echo "stages:"
		echo "  s:"
		echo "    fetch:"
		echo "      url:"
		i=1
		while [ "$i" -le "$3" ]; do
			echo "        - $MOCK_URL$4$i"
			i=$((i + 1))
		done
	} >"$1"
}

# ---- rate: 6 requests at 5/s with a bucket of 1. The first goes at once,
# the k-th no sooner than 0.2 * (k - 1) s after it: at least 3s of waiting
# in all when they queue together, and certainly more than 0.8s.
case_dir rate
urls_pl p.yaml "hosts: {\"127.0.0.1:$MOCK_PORT\": {rate: 5/s, burst: 1}}" 6 "/json/"
run_pl p.yaml
is "$RC" 0 "rate 5/s: exit 0"
is "$(stq "SELECT count(*) FROM attempts WHERE run_id = $LAST")" 6 "rate 5/s: 6 attempts"
is "$(stq "SELECT sum(wait_rate) >= 0.8 FROM attempts WHERE run_id = $LAST")" 1 \
	"rate 5/s: at least 0.8s of rate wait recorded ($(stq "SELECT round(sum(wait_rate), 3)
	FROM attempts WHERE run_id = $LAST")s)"
is "$(stq "SELECT count(*) FROM attempts WHERE run_id = $LAST AND wait_rate > 0")" 5 \
	"rate 5/s: every request but the first waited for the rate"
is "$(stq "SELECT sum(wait_concurrency) + sum(wait_breaker) + sum(wait_backoff)
	+ sum(wait_retry_after) FROM attempts WHERE run_id = $LAST")" "0.0" \
	"rate 5/s: nothing counted under another reason"
is "$(stq "SELECT count(*) FROM attempts WHERE run_id = $LAST AND abs(wait -
	(wait_backoff + wait_retry_after + wait_rate + wait_concurrency + wait_breaker)) > 1e-6")" 0 \
	"rate 5/s: wait is the sum of the reasons"

# status --stage: the reason column and the totals line.
"$PIPECTL" status --stage s >status.out 2>&1
is "$?" 0 "status --stage: exit 0"
is "$(grep -c '^  [0-9].* rate  ' status.out)" 5 "status --stage: 5 attempts show FOR rate"
grep -q '^  waited [0-9.]*s in all: backoff 0.00s, retry-after 0.00s, rate [1-9][0-9]*\.[0-9][0-9]s\|^  waited [0-9.]*s in all: backoff 0.00s, retry-after 0.00s, rate 0\.[89][0-9]s' status.out
ok $? "status --stage: the totals line counts the rate wait"
"$PIPECTL" status --stage s --json >status.json 2>&1
is "$?" 0 "status --stage --json: exit 0"
is "$($PY -c '
import json, sys
d = json.load(open("status.json"))
w = d["waited"]
a = d["attempts"]
print(w["rate"] >= 0.8, abs(w["total"] - sum(x["wait"] for x in a)) < 1e-6,
      sum(1 for x in a if x["waits"]["rate"] > 0),
      sorted(w) == ["backoff", "breaker", "concurrency", "rate", "retry_after", "total"])
' 2>&1)" "True True 5 True" "status --stage --json: waited totals and per-attempt waits"

# ---- concurrency: 3 requests held 400ms each by the server, one at a time
# for the host. The second waits for the first's slot; the third waits at
# least as long as the second is in flight, which the server makes >= 400ms.
case_dir concurrency
urls_pl p.yaml "hosts: {\"127.0.0.1:$MOCK_PORT\": {concurrency: 1}}" 3 "/json/1?delay=400&i="
run_pl p.yaml
is "$RC" 0 "host concurrency 1: exit 0"
is "$(stq "SELECT group_concat(w, ' ') FROM (SELECT wait_concurrency > 0 AS w
	FROM attempts WHERE run_id = $LAST ORDER BY rowid)")" "0 1 1" \
	"host concurrency 1: the 2nd and 3rd requests waited for a slot"
is "$(stq "SELECT max(wait_concurrency) >= 0.4 FROM attempts WHERE run_id = $LAST")" 1 \
	"host concurrency 1: the last one waited at least the 400ms the one before it took"
is "$(stq "SELECT sum(wait_rate) + sum(wait_breaker) + sum(wait_backoff)
	FROM attempts WHERE run_id = $LAST")" "0.0" \
	"host concurrency 1: counted under concurrency only"

# ---- without hosts: limits nobody waits for anything.
case_dir free
urls_pl p.yaml "" 3 "/json/"
run_pl p.yaml
is "$(stq "SELECT sum(wait) FROM attempts WHERE run_id = $LAST")" "0.0" \
	"no limits, no failures: no wait recorded"

done_testing
