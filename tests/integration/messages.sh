#!/bin/sh
# Messages a user acts on: a record that is not an object says what came and
# how to split it; the run summary shows the URL an http load sent to
# (rendered, secrets redacted); the "details:" hint of a failed run works
# from any directory.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

# 1. An array response loaded into SQLite as one record.
mkdir arr && cd arr || exit 1
cat >p.yaml <<YAML
pipeline: arr
stages:
  s:
    fetch: {url: "$MOCK_URL/records?n=2"}
  db:
    needs: s
    load:
      sqlite: {path: out.db, table: t}
YAML
"$PIPECTL" run -q p.yaml 2>err
is "$?" 1 "array record: the run fails"
grep -q "record is an array, not a JSON object" err
ok $? "array record: says an array was received"
grep -qF '(received: [{"id":1,"name":"rec-1"' err
ok $? "array record: shows the start of what was received"
grep -qF "records: '.[]'" err
ok $? "array record: suggests records: '.[]'"
cd "$T_TMP" || exit 1

# 2. The summary of an http load shows the URL rendered, secrets redacted.
mkdir hook && cd hook || exit 1
HOOK_TOKEN=tok-0123456789
export HOOK_TOKEN
cat >p.yaml <<YAML
pipeline: hook
params: {path: echo}
stages:
  s:
    fetch: {url: "$MOCK_URL/json/1"}
  send:
    needs: s
    load:
      http: {url: "$MOCK_URL/\${params.path}?t=\${env.HOOK_TOKEN}"}
YAML
"$PIPECTL" run p.yaml 2>err
is "$?" 0 "summary: the run succeeds"
grep -qF "send: 1 records delivered (POST $MOCK_URL/echo?t=***)" err
ok $? "summary: the URL is rendered, the token redacted"
grep -qF '${' err
is "$?" 1 "summary: no raw template"
cd "$T_TMP" || exit 1

# 3. The details hint of a failed run works from another directory.
mkdir -p fail/sub && cd fail || exit 1
cat >p.yaml <<YAML
pipeline: fail
stages:
  s:
    fetch: {url: "$MOCK_URL/status/500"}
YAML
"$PIPECTL" run -q p.yaml 2>err
is "$?" 1 "details: the run fails"
hint=$(sed -n 's/.*(details: \(pipectl status .*\))$/\1/p' err)
case $hint in
"pipectl status 1 --state /"*) r=0 ;;
*) r=1 ;;
esac
ok $r "details: the hint names the state database by its absolute path ($hint)"
out=$(cd / && eval "\"\$PIPECTL\" ${hint#pipectl }" 2>&1)
is "$?" 0 "details: the hint runs from /"
case $out in
*failed*) r=0 ;;
*) r=1 ;;
esac
ok $r "details: and shows the failed run"
cd "$T_TMP" || exit 1

done_testing
