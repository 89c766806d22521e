#!/bin/sh
# -p on resume and dlq replay: dead letters aimed at a wrong webhook URL are
# replayed to the right one; a resume with changed params says what changed,
# goes on when no finished fetch used them, and needs --force when they
# change what was already fetched.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

cat >hook.yaml <<YAML
pipeline: hook
params:
  hook: $MOCK_URL/status/404
  id: 1
stages:
  src:
    fetch:
      url: "$MOCK_URL/json/\${params.id}"
  send:
    needs: src
    on_error: dlq
    load:
      http: { url: "\${params.hook}", retry: { attempts: 1 } }
YAML
"$PIPECTL" run -q hook.yaml >/dev/null 2>err
is "$?" 0 "run 1: the record is dead-lettered (wrong webhook URL)"
is "$(grep -c '"path":"/status/404"' "$MOCK_LOG")" 1 "it was sent to the wrong URL"
"$PIPECTL" dlq replay 1 -f hook.yaml -p hook="$MOCK_URL/echo" >out 2>err
is "$?" 0 "dlq replay -p hook=... succeeds"
grep -q "^  hook: \"$MOCK_URL/status/404\" -> \"$MOCK_URL/echo\"$" err
ok $? "and says which param changed"
is "$(grep -c '"method":"POST","path":"/echo"' "$MOCK_LOG")" 1 "the letter went to the new URL"
is "$(sq .pipectl/state.db "SELECT json_extract(params, '\$.hook') FROM runs WHERE id = 2")" \
	"$MOCK_URL/echo" "the replay run records the new params"
is "$("$PIPECTL" dlq list 1 --all -f hook.yaml | grep -c "(replayed)$")" 1 "the letter is marked replayed"

# A run that fails in its sink, resumed with another webhook URL: the fetch
# that succeeded did not use it, so no --force is needed.
sed 's/on_error: dlq/on_error: fail/' hook.yaml >fail.yaml
sed -i 's/^pipeline: hook/pipeline: fail/' fail.yaml
"$PIPECTL" run -q fail.yaml >/dev/null 2>&1
is "$?" 1 "run 3 fails in its sink"
n=$(grep -c '"path":"/json/1"' "$MOCK_LOG")
"$PIPECTL" resume --last -f fail.yaml -p hook="$MOCK_URL/echo" >/dev/null 2>err
is "$?" 0 "resume -p hook=... succeeds without --force"
grep -q "^  hook: \"$MOCK_URL/status/404\" -> \"$MOCK_URL/echo\"$" err
ok $? "and says what changed"
is "$(grep -c '"path":"/json/1"' "$MOCK_LOG")" "$n" "the fetch is not repeated"
is "$(sq .pipectl/state.db "SELECT json_extract(params, '\$.hook') FROM runs WHERE id = 3")" \
	"$MOCK_URL/echo" "run 3 records its new params"

# Changing a param the finished fetch used needs --force.
"$PIPECTL" run -q fail.yaml >/dev/null 2>&1
is "$?" 1 "run 4 fails in its sink"
before=$(wc -l <"$MOCK_LOG")
"$PIPECTL" resume --last -f fail.yaml -p id=2 -p hook="$MOCK_URL/echo" >/dev/null 2>err
is "$?" 2 "resume -p id=2 (used by the finished fetch) exits 2"
grep -q "^  id: 1 -> 2$" err && grep -q "^    stage src fetched with the old value (it succeeded)$" err &&
	grep -q "^resume with --force to go on with the new values" err
ok $? "and says which stage fetched with the old value and what to do"
is "$(wc -l <"$MOCK_LOG")" "$before" "and sends nothing"
"$PIPECTL" resume --last --force -f fail.yaml -p id=2 -p hook="$MOCK_URL/echo" >/dev/null 2>err
is "$?" 0 "with --force it goes on"
grep -q "params changed what run 4 already fetched or loaded; resuming anyway (--force)" err
ok $? "after a warning"
"$PIPECTL" run -q fail.yaml >/dev/null 2>&1
"$PIPECTL" resume --last -f fail.yaml -p nosuch=1 >/dev/null 2>err
is "$?:$(cat err)" '2:pipectl resume: unknown parameter "nosuch" (the pipeline declares: hook, id)' \
	"an unknown param is a usage error"

# A sink whose path is built from a changed param, and which already loaded
# records with the old value, needs --force too: the rest of the run would
# go to another database.
cat >sink.yaml <<YAML
pipeline: sink
params:
  db: one
stages:
  src:
    fetch:
      url: "$MOCK_URL/json/1"
  keep:
    needs: src
    load:
      sqlite: { path: "out-\${params.db}.db", table: t, key: id }
  bad:
    fetch:
      url: "$MOCK_URL/status/500"
      retry: { attempts: 1 }
YAML
"$PIPECTL" run -q sink.yaml >/dev/null 2>&1
is "$?:$(sq out-one.db 'SELECT COUNT(*) FROM t')" "1:1" "run 6 fails after loading 1 row into out-one.db"
"$PIPECTL" resume --last -f sink.yaml -p db=two >/dev/null 2>err
is "$?" 2 "resume -p db=two (the path of a sink that loaded) exits 2"
grep -q "^    stage keep loaded with the old value (it succeeded)$" err
ok $? "and names the sink that loaded with the old value"
[ ! -e out-two.db ]
ok $? "and writes nothing to the new path"

done_testing
