#!/bin/sh
# -f FILE scopes a command to the pipeline FILE defines: pipelines in one
# directory share .pipectl/state.db, but runs, status, resume, dlq list and
# dlq replay with -f see only the runs of that pipeline (by its name), and
# say so when the file's pipeline name changed since its runs.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

# pl X NAME STATUS [ON-ERROR]: writes X.yaml, the pipeline NAME of one
# request answered with STATUS (tried once), loaded into X.jsonl.
pl() {
	{
		printf 'pipeline: %s\nstages:\n  s:\n' "$2"
		[ -z "${4:-}" ] || printf '    on_error: %s\n' "$4"
		cat <<YAML
    fetch:
      url: $MOCK_URL/status/$3
      retry: { attempts: 1 }
  o:
    needs: s
    load:
      file: { path: $1.jsonl }
YAML
	} >"$1.yaml"
}

pl a alpha 500
pl b beta 503 dlq
"$PIPECTL" run -q a.yaml 2>/dev/null
is "$?" 1 "run 1 (alpha) fails"
"$PIPECTL" run -q b.yaml 2>/dev/null
is "$?" 0 "run 2 (beta) succeeds with a dead letter"

is "$("$PIPECTL" runs -f a.yaml | awk 'NR > 1 { print $1 ":" $2 }')" "1:alpha" \
	"runs -f a.yaml lists only alpha's run"
is "$("$PIPECTL" runs -f b.yaml | awk 'NR > 1 { print $1 ":" $2 }')" "2:beta" \
	"runs -f b.yaml lists only beta's run"
is "$("$PIPECTL" runs | awk 'NR > 1 { print $1 }' | tr '\n' ' ')" "2 1 " \
	"runs without -f lists both"
out=$("$PIPECTL" resume --last --dry-run -f b.yaml 2>&1)
is "$?:$out" '0:no run of pipeline "beta" to resume' \
	"resume --last --dry-run -f b.yaml does not plan alpha's failed run"
"$PIPECTL" resume --last --dry-run -f a.yaml | grep -q '^resume of run 1 would:'
ok $? "resume --last --dry-run -f a.yaml plans run 1"
is "$("$PIPECTL" status -f a.yaml | head -n 1 | awk '{ print $2 ":" $3 }')" "1:alpha" \
	"status -f a.yaml shows alpha's latest run, not the newest of the database"
"$PIPECTL" status 2 -f a.yaml >/dev/null 2>err
is "$?" 2 "status of beta's run with -f a.yaml exits 2"
is "$(cat err)" 'pipectl status: run 2 is a run of pipeline "beta", not of "alpha" (a.yaml)' \
	"and says whose run it is"
is "$("$PIPECTL" dlq list -f a.yaml)" "$(printf '%-6s %-6s %-20s %-20s %s\n(no dead letters)' \
	ID RUN STAGE CREATED 'ERROR / PAYLOAD')" "dlq list -f a.yaml shows none of beta's dead letters"
is "$("$PIPECTL" dlq list -f b.yaml | awk 'NR == 2 { print $2 }')" 2 \
	"dlq list -f b.yaml shows beta's"
"$PIPECTL" dlq replay 2 -f a.yaml >/dev/null 2>err
is "$?" 2 "dlq replay of beta's run with -f a.yaml exits 2"
"$PIPECTL" resume 2 -f a.yaml >/dev/null 2>err
is "$?" 2 "resume of beta's run with -f a.yaml exits 2"

# The file's pipeline was renamed: its old runs are left out, with a note.
sed 's/^pipeline: beta/pipeline: gamma/' b.yaml >b2.yaml && mv b2.yaml b.yaml
out=$("$PIPECTL" runs -f b.yaml 2>err | awk 'NR > 1')
is "$out" "" "after renaming beta to gamma, runs -f b.yaml lists no run"
is "$(cat err)" 'pipectl runs: note: b.yaml now names its pipeline "gamma"; 1 run recorded under its former name "beta" is left out (newest: run 2; --state DB shows every run)' \
	"and says the file's pipeline name changed"

done_testing
