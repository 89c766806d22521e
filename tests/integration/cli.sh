#!/bin/sh
# The command line: usage errors, validate, exit codes, status and runs on
# empty or missing state, --version/--help.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

"$PIPECTL" >/dev/null 2>&1
is "$?" 2 "no command: exit 2"
"$PIPECTL" frobnicate >/dev/null 2>"$T_TMP/err"
is "$?" 2 "unknown command: exit 2"
grep -q 'unknown command "frobnicate"' "$T_TMP/err"
ok $? "unknown command is named"
"$PIPECTL" --version | grep -Eq '^pipectl [0-9]+\.[0-9]+'
ok $? "--version prints the version"
"$PIPECTL" --help | grep -q 'pipectl run FILE'
ok $? "--help lists the commands"

"$PIPECTL" validate "$TOP_SRCDIR/pipelines/quickstart.yaml" >"$T_TMP/out" 2>&1
is "$?" 0 "validate quickstart: exit 0"
grep -q 'quickstart.yaml: ok (6 stages)' "$T_TMP/out"
ok $? "validate reports ok with the stage count"

cat >bad.yaml <<'YAML'
pipeline: bad
stages:
  a:
    fetch:
      url: http://127.0.0.1:1/x
      timeout: 10x
  b:
    needs: [a, c]
    load:
      stdout: {}
YAML
"$PIPECTL" validate bad.yaml "$TOP_SRCDIR/pipelines/quickstart.yaml" >"$T_TMP/out" 2>"$T_TMP/err"
is "$?" 2 "validate with one bad file among good ones: exit 2"
grep -q '^bad.yaml:6:16: ' "$T_TMP/err"
ok $? "bad duration reported at its line and column"
grep -q '^bad.yaml:8:16: unknown stage "c"' "$T_TMP/err"
ok $? "unknown need reported at its line and column"
grep -q 'quickstart.yaml: ok' "$T_TMP/out"
ok $? "the good file is still validated"

"$PIPECTL" run bad.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 2 "run of an invalid file: exit 2"
test ! -e .pipectl
ok $? "an invalid file creates no state database"

"$PIPECTL" validate missing.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 2 "validate of a missing file: exit 2"
grep -q 'missing.yaml' "$T_TMP/err"
ok $? "missing file is named"

"$PIPECTL" run >/dev/null 2>&1
is "$?" 2 "run without a file: exit 2"
"$PIPECTL" run --bogus x.yaml >/dev/null 2>&1
is "$?" 2 "run with an unknown option: exit 2"

"$PIPECTL" status --state "$T_TMP/none.db" >/dev/null 2>"$T_TMP/err"
is "$?" 3 "status without a state database: exit 3"
grep -q 'no state database' "$T_TMP/err"
ok $? "status says there is no state database"
"$PIPECTL" status abc --state "$T_TMP/none.db" >/dev/null 2>&1
is "$?" 2 "status with a malformed run id: exit 2"

cat >ok.yaml <<'YAML'
pipeline: tiny
stages:
  src:
    fetch:
      file: in.jsonl
      format: jsonl
  out:
    needs: src
    load:
      stdout: {}
YAML
printf '{"a":1}\n{"a":2.5}\n\n{"a":"x"}\n' >in.jsonl
"$PIPECTL" run -q ok.yaml >"$T_TMP/out" 2>"$T_TMP/err"
is "$?" 0 "file → stdout run exits 0"
is "$(cat "$T_TMP/out")" '{"a":1}
{"a":2.5}
{"a":"x"}' "stdout sink prints JSON lines, blank input lines skipped"
is "$(cat "$T_TMP/err")" "" "--quiet prints nothing on success"
"$PIPECTL" status 99 -f ok.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 2 "status of an unknown run: exit 2"
grep -q 'no run 99' "$T_TMP/err"
ok $? "unknown run is named"
"$PIPECTL" runs --json -f ok.yaml >"$T_TMP/out"
is "$(/usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r), r[0]["status"], r[0]["pipeline"])' <"$T_TMP/out")" \
	"1 succeeded tiny" "runs --json lists the run"
PIPECTL_STATE="$T_TMP/elsewhere.db" "$PIPECTL" run -q ok.yaml >/dev/null 2>&1
ok "$(test -s "$T_TMP/elsewhere.db"; echo $?)" "PIPECTL_STATE chooses the state database"

printf '{"a":1}\n{"a":\n' >in.jsonl
"$PIPECTL" run -q ok.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 1 "invalid JSON line: run fails with exit 1"
grep -q 'in.jsonl: line 2: invalid JSON' "$T_TMP/err"
ok $? "the bad line is named"
"$PIPECTL" status -f ok.yaml >"$T_TMP/out"
grep -q '^run [0-9]*  tiny  failed' "$T_TMP/out"
ok $? "status shows the failed run"
grep -q 'in.jsonl: line 2: invalid JSON' "$T_TMP/out"
ok $? "status shows the failure message"
grep -Eq '^out +load.stdout +cancelled' "$T_TMP/out"
ok $? "the stage downstream of a failure is cancelled"

# gc: old runs go, with everything recorded for them.
n_before=$(sqlite3 .pipectl/state.db 'SELECT count(*) FROM runs')
"$PIPECTL" gc --older-than 1h -f ok.yaml >"$T_TMP/out" 2>&1
is "$?" 0 "gc --older-than 1h: exit 0"
is "$(cat "$T_TMP/out")" "deleted 0 runs older than 1h" "gc keeps recent runs"
is "$(sqlite3 .pipectl/state.db 'SELECT count(*) FROM runs')" "$n_before" "recent runs are still there"
sleep 0.1
"$PIPECTL" gc --older-than 50ms -f ok.yaml >"$T_TMP/out" 2>&1
is "$(cat "$T_TMP/out")" "deleted $n_before runs older than 50ms" "gc deletes runs older than the age"
is "$(sqlite3 .pipectl/state.db 'SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM stage_runs)')" 0 \
	"their stage rows go with them"
"$PIPECTL" gc --older-than 30x -f ok.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 2 "gc with a bad age: exit 2"
"$PIPECTL" gc -f ok.yaml >/dev/null 2>&1
is "$?" 2 "gc without --older-than: exit 2"

done_testing
