#!/bin/sh
# The default retry policy, with no retry: anywhere in the file: transient
# failures (connect, timeout, network, 429, 502, 503, 504) are retried, 3
# attempts in all, with Retry-After honoured; other answers, unsafe methods
# and permanent errors are not; retry: {attempts: 1} turns it off. Checks
# the number of requests the server saw and the attempts recorded, never
# wall-clock time.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

# seen NAME: requests the server saw for /seq/NAME.
seen() {
	grep -c "\"path\":\"/seq/$1\"" "$MOCK_LOG"
}

# one_fetch FILE URL [FETCH-LINES]: a pipeline with one fetch into out.jsonl.
one_fetch() {
	cat >"$1" <<YAML
pipeline: defaults
stages:
  s:
    fetch:
      url: "$2"
$3
  out:
    needs: s
    load:
      file: {path: out.jsonl}
YAML
}

# ---- retried by default
for code in 503 502 504 429; do
	case_dir "d$code"
	one_fetch p.yaml "$MOCK_URL/seq/d$code?codes=$code,$code,200"
	run_pl p.yaml
	is "$RC" 0 "no retry: key, $code, $code, 200: exit 0"
	is "$(seen "d$code")" 3 "no retry: key, $code, $code, 200: the server saw 3 requests"
	is "$(cat out.jsonl 2>/dev/null)" "{\"name\":\"d$code\",\"attempt\":3}" \
		"no retry: key, $code, $code, 200: the third answer is loaded"
done

case_dir exhausted
one_fetch p.yaml "$MOCK_URL/seq/dx?codes=503,503,503,503,200"
run_pl p.yaml
is "$RC" 1 "default: 503 four times: exit 1"
is "$(seen dx)" 3 "default: 3 attempts in all"
grep -q "(after 3 attempts)" "$ERR"
ok $? "default: the error says \"after 3 attempts\""

case_dir retry_after
one_fetch p.yaml "$MOCK_URL/seq/dra?codes=429,200&retry_after=1"
run_pl p.yaml
is "$RC" 0 "default: 429 with Retry-After: 1: exit 0"
is "$(seen dra)" 2 "default: 429 with Retry-After: 2 requests"
is "$(stq "SELECT attempt, wait_retry_after, wait_backoff FROM attempts
	WHERE run_id = $LAST ORDER BY rowid")" "1|0.0|0.0
2|1.0|0.0" "default: the retry waited the 1s the server asked for, and no backoff"

case_dir connect

one_fetch p.yaml "http://127.0.0.1:9/nothing-listens"
run_pl p.yaml
is "$RC" 1 "default: connection refused: exit 1"
is "$(stq "SELECT count(*) FROM attempts WHERE run_id = $LAST")" 3 \
	"default: connection refused is tried 3 times"

# ---- not retried by default
case_dir d500
one_fetch p.yaml "$MOCK_URL/seq/d500?codes=500,200"
run_pl p.yaml
is "$RC" 1 "default: 500 is not retried: exit 1"
is "$(seen d500)" 1 "default: 500: the server saw 1 request"

case_dir d404
one_fetch p.yaml "$MOCK_URL/seq/d404?codes=404,200"
run_pl p.yaml
is "$RC" 1 "default: 404 is not retried: exit 1"
is "$(seen d404)" 1 "default: 404: the server saw 1 request"

case_dir post
one_fetch p.yaml "$MOCK_URL/seq/dpost?codes=503,200" "      method: POST
      json: '{a: 1}'"
run_pl p.yaml
is "$RC" 1 "default: a POST is not retried: exit 1"
is "$(seen dpost)" 1 "default: POST: the server saw 1 request"

case_dir post_idem
one_fetch p.yaml "$MOCK_URL/seq/dpi?codes=503,200" "      method: POST
      json: '{a: 1}'
      idempotent: true"
run_pl p.yaml
is "$RC" 0 "default: a POST marked idempotent is retried: exit 0"
is "$(seen dpi)" 2 "default: idempotent POST: the server saw 2 requests"

case_dir missing_file
one_fetch p.yaml "file://$T_TMP/missing_file/no-such-file.json"
run_pl p.yaml
is "$RC" 1 "default: a missing file:// file: exit 1"
is "$(stq "SELECT count(*) FROM attempts WHERE run_id = $LAST")" 1 \
	"default: a missing file is tried once (no retry can bring it)"

# ---- turned off
case_dir off_stage
one_fetch p.yaml "$MOCK_URL/seq/doff?codes=503,200" "      retry: {attempts: 1}"
run_pl p.yaml
is "$RC" 1 "retry: {attempts: 1} on the stage: exit 1"
is "$(seen doff)" 1 "retry: {attempts: 1} on the stage: the server saw 1 request"

case_dir off_defaults
cat >p.yaml <<YAML
pipeline: off
defaults:
  retry: {attempts: 1}
stages:
  s:
    fetch:
      url: "$MOCK_URL/seq/doffd?codes=503,200"
YAML
run_pl p.yaml
is "$RC" 1 "defaults: retry: {attempts: 1}: exit 1"
is "$(seen doffd)" 1 "defaults: retry: {attempts: 1}: the server saw 1 request"

# A retry: block keeps the default for the keys it leaves out.
case_dir partial
one_fetch p.yaml "$MOCK_URL/seq/dpart?codes=503,503,200" "      retry: {initial: 10ms}"
run_pl p.yaml
is "$RC" 0 "retry: {initial: 10ms}: exit 0"
is "$(seen dpart)" 3 "retry: {initial: 10ms}: still 3 attempts, on 503"

done_testing
