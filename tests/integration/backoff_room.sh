#!/bin/sh
# Requests waiting out a backoff or a Retry-After do not hold up the others:
# with concurrency 1 and six requests told to come back much later, the
# next URL of the list is still sent at once. (The stage bounds the jobs it
# keeps started, in flight or waiting, to a multiple of its concurrency;
# the bound must leave room for the waits a busy fetch meets.)
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

{
	printf 'pipeline: room\nstages:\n  s:\n    fetch:\n      url:\n'
	for i in 1 2 3 4 5 6; do
		printf '        - %s/seq/room%d?codes=429,200&retry_after=3600\n' "$MOCK_URL" $i
	done
	printf '        - %s/json/7?gate=room\n' "$MOCK_URL"
	printf '      concurrency: 1\n'
	printf '      retry: {attempts: 2, retry_on: [429], max: 3600s}\n'
	printf '  out:\n    needs: s\n    load:\n      file: {path: out.jsonl}\n'
} >room.yaml
"$PIPECTL" run -q room.yaml >/dev/null 2>"$T_TMP/err.room" &
pid=$!
# Six answers of 429 first: each request then waits an hour for its retry.
wait_until mock_gate_waiting room 1
ok $? "the seventh URL is sent while the six wait out their Retry-After"
is "$(grep -c '"status":429' "$MOCK_LOG")" 6 "after six answers of 429"
kill -9 "$pid"
wait "$pid" 2>/dev/null

done_testing
