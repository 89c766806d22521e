#!/bin/sh
# Secrets end to end: an ${env.X} value never reaches a log, an output or the
# state database in any encoding pipectl produces or a server echoes (raw,
# JSON-escaped, with "\/", escaped twice, percent-encoded, base64); dead
# letters and the journal keep ${env.NAME} placeholders and are rendered
# again from the environment on dlq replay and resume; an unset variable is
# an error before any request.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
mkdir -p data
start_mockapi --data "$T_TMP/data"
PY=/usr/bin/python3

# A password with a quote, an ampersand, a backslash, a slash, a plus, an
# equals sign and a space: each encoding differs from the raw text.
SECRET='Pw"&\1/+q= Zk'
API_KEY=$SECRET
# And a plain one, which even a redactor of raw text alone would catch.
PLAIN='plainKey0123456789'
PLAIN_KEY=$PLAIN
export API_KEY PLAIN_KEY

# forms.txt: the secret in every encoding, one per line.
$PY - "$SECRET" >forms.txt <<'PY'
import base64, json, re, sys, urllib.parse as u
s = sys.argv[1]
j = json.dumps(s)[1:-1]
forms = [s, j, j.replace('/', '\\/'), json.dumps(j)[1:-1],
         u.quote(s, safe="-_.!~*'()"), u.quote(s, safe="-_.~"),
         base64.b64encode(s.encode()).decode()]
forms += [re.sub('%[0-9A-F]{2}', lambda m: m.group(0).lower(), f) for f in forms[4:6]]
for f in forms:
    print(f)
PY
echo "$PLAIN" >>forms.txt
URI=$(sed -n 5p forms.txt)
JSONESC=$(sed -n 2p forms.txt)
JSONSLASH=$(sed -n 3p forms.txt)

# leaks FILE...: the files holding the secret in some encoding ("" if none).
leaks() {
	out=""
	for f in "$@"; do
		[ -e "$f" ] || continue
		n=0
		while IFS= read -r form; do
			n=$((n + 1))
			grep -aqF -- "$form" "$f" && out="$out $(basename "$f"):form$n"
		done <"$T_TMP/forms.txt"
	done
	echo "$out"
}

# logq PATH FIELD: FIELD (query or body_len) of the last request to PATH.
logq() {
	$PY - "$MOCK_LOG" "$1" "$2" <<'PY'
import json, sys
log, path, field = sys.argv[1:4]
last = None
for line in open(log):
    r = json.loads(line)
    if r["path"] == path:
        last = r
print("" if last is None else last[field])
PY
}
count() { grep -c "\"path\":\"$1\"" "$MOCK_LOG"; }

# =====================================================================
# 1. dlq replay of a source fetch re-renders the secret (url and json body)
# from the environment of the replaying process.
case_dir replay
out_pl p.yaml replay_secret <<YAML
  s:
    on_error: dlq
    fetch:
      method: POST
      url: "$MOCK_URL/seq/r1?codes=503,200&key=\${env.API_KEY | @uri}&plain=\${env.PLAIN_KEY}"
      json: '{token: env.API_KEY}'
YAML
"$PIPECTL" run -q --state st.db p.yaml 2>err.run
is "$?:$(sq st.db 'SELECT count(*) FROM dlq')" "0:1" "replay: the failed request is dead-lettered"
payload=$(sq st.db 'SELECT payload FROM dlq')
case $payload in
*'key=${env.API_KEY|@uri}&plain=${env.PLAIN_KEY}'*'\"token\":\"${env.API_KEY|@json2}\"'*) r=0 ;;
*) r=1 ;;
esac
ok $r "replay: the dead letter keeps placeholders for the secret (url and body)"
diag "payload: $payload"
is "$(leaks st.db st.db-wal err.run)" "" "replay: no encoding of the secret in the state database"
"$PIPECTL" dlq replay -q --state st.db 1 >out.replay 2>err.replay
is "$?" 0 "replay: dlq replay exits 0"
is "$(logq /seq/r1 query)" "codes=503,200&key=$URI&plain=$PLAIN" "replay: the replayed URL carries the real key"
want_len=$(printf '{"token":"%s"}' "$JSONESC" | wc -c)
is "$(logq /seq/r1 body_len)" "$want_len" "replay: the replayed JSON body carries the real key"
is "$(sq st.db 'SELECT replayed FROM dlq WHERE id = 1')" 1 "replay: the letter is marked replayed"
is "$(leaks st.db st.db-wal err.replay out.replay)" "" "replay: no secret stored or printed by the replay"
cd "$T_TMP" || exit 1

# =====================================================================
# 2. A letter whose variable is no longer set is an error, not a request.
case_dir unset
sed 's/seq\/r1?codes=503,200/seq\/r2?codes=503,200/' ../replay/p.yaml >p.yaml
"$PIPECTL" run -q --state st.db p.yaml 2>/dev/null
n0=$(count /seq/r2)
env -u API_KEY "$PIPECTL" dlq replay -q --state st.db 1 >/dev/null 2>err.replay
is "$?" 2 "unset: dlq replay without API_KEY exits 2"
grep -q 'API_KEY is not set' err.replay
ok $? "unset: the message names the variable"
is "$(count /seq/r2)" "$n0" "unset: nothing is sent"
is "$(sq st.db 'SELECT replayed FROM dlq WHERE id = 1')" 0 "unset: the letter stays to replay"
cd "$T_TMP" || exit 1

# =====================================================================
# 3. Every sink of text, with a server that echoes the secret back in
# several encodings: logs (text and JSON), the state database (all tables,
# the file itself), status/runs/dlq output.
case_dir echo
printf '{"token":"%s","q":"%s","items":[1]}\n' "$JSONSLASH" "$URI" >"$T_TMP/data/echo.json"
out_pl p.yaml leak '[e, f]' <<YAML
  e:
    on_error: dlq
    fetch:
      method: POST
      url: "$MOCK_URL/echo?key=\${env.API_KEY | @uri}"
      headers:
        X-Key: "\${env.API_KEY}"
        Authorization: "Basic \${env.API_KEY | @base64}"
      json: '{token: env.API_KEY}'
      records: 'error(tostring)'
  f:
    fetch:
      url: "$MOCK_URL/files/echo.json"
      headers: {X-Key: "\${env.API_KEY}"}
      records: '.items[]'
  g:
    fetch:
      url: "$MOCK_URL/status/500?key=\${env.API_KEY | @uri}"
YAML
"$PIPECTL" run -v --state st.db p.yaml >out.run 2>err.run
is "$?" 1 "echo: the run fails (stage g)"
"$PIPECTL" run -v --log-json --state st.db p.yaml >out.json 2>err.json
"$PIPECTL" status --state st.db 1 >status.txt 2>&1
"$PIPECTL" status --json --state st.db 1 >status.json 2>&1
"$PIPECTL" runs --json --state st.db >runs.json 2>&1
"$PIPECTL" dlq list --state st.db >dlq.txt 2>&1
"$PIPECTL" dlq list --json --state st.db >dlq.json 2>&1
grep -q 'dead-lettered' err.run
ok $? "echo: the echoed secret reached an error message (dead letter)"
is "$(sq st.db 'SELECT count(*) FROM journal')" 4 "echo: the responses are journaled"
is "$(leaks err.run err.json out.run out.json)" "" "echo: no encoding of the secret in the logs"
is "$(leaks st.db st.db-wal st.db-shm)" "" "echo: no encoding of the secret in the state database file"
for t in runs stage_runs attempts dlq events journal; do
	sq st.db "SELECT * FROM $t" >"table.$t" 2>&1
done
is "$(leaks table.runs table.stage_runs table.attempts table.dlq table.events table.journal)" "" \
	"echo: no encoding of the secret in any table"
is "$(leaks status.txt status.json runs.json dlq.txt dlq.json)" "" \
	"echo: no encoding of the secret in status, runs and dlq list (text and --json)"
sq st.db "SELECT body FROM journal" | grep -qF '"token":"${env.API_KEY|@json_slash}"'
ok $? "echo: the journal keeps a placeholder for the \\/-escaped secret"
grep -q '\*\*\*' err.run
ok $? "echo: the logs show *** where the secret was"
cd "$T_TMP" || exit 1

# =====================================================================
# 4. Resume serves a journaled page whose next link holds the key: the next
# request carries the real key, not "***".
case_dir resume
printf '{"items":[{"n":1}],"next":"/files/p2.json?key=%s&plain=%s"}\n' "$URI" "$PLAIN" \
	>"$T_TMP/data/p1.json"
rm -f "$T_TMP/data/p2.json"
out_pl p.yaml resume_secret <<YAML
  s:
    fetch:
      url: "$MOCK_URL/files/p1.json"
      headers: {X-Key: "\${env.API_KEY}", X-Plain: "\${env.PLAIN_KEY}"}
      records: '.items[]'
      paginate: {next: '.next'}
YAML
"$PIPECTL" run -q --state st.db p.yaml 2>err.run
is "$?" 1 "resume: the first run fails on page 2"
is "$(leaks st.db st.db-wal err.run)" "" "resume: no secret in the state database"
printf '{"items":[{"n":2}],"next":null}\n' >"$T_TMP/data/p2.json"
env -u API_KEY "$PIPECTL" resume -q --state st.db 1 2>err.unset
is "$?" 2 "resume: without API_KEY the resume exits 2"
grep -q 'stage s: environment variable API_KEY is not set' err.unset
ok $? "resume: the message names the variable and the stage"
is "$(count /files/p1.json):$(count /files/p2.json)" "1:1" "resume: without API_KEY nothing is sent"
"$PIPECTL" resume -q --state st.db 1 2>err.resume
is "$?" 0 "resume: the resume succeeds"
is "$(count /files/p1.json)" 1 "resume: page 1 comes from the journal"
is "$(logq /files/p2.json query)" "key=$URI&plain=$PLAIN" "resume: page 2 is asked for with the real key"
is "$(cat out.jsonl)" '{"n":1}
{"n":2}' "resume: both pages are loaded"
cd "$T_TMP" || exit 1

# =====================================================================
# 4b. on_error: pass puts the failed URL in the record's _errors: redacted.
case_dir pass
out_pl p.yaml pass_secret e <<YAML
  s:
    fetch: {url: "$MOCK_URL/json/1"}
  e:
    needs: s
    on_error: pass
    fetch: {url: "$MOCK_URL/status/500?id=\${.id}&key=\${env.API_KEY | @uri}"}
YAML
"$PIPECTL" run -q --state st.db p.yaml 2>err.run
is "$?" 0 "pass: the run succeeds"
grep -qF '"url":"'"$MOCK_URL"'/status/500?id=1&key=***"' out.jsonl
ok $? "pass: _errors holds the URL with the key redacted"
is "$(leaks out.jsonl err.run st.db st.db-wal)" "" "pass: no encoding of the secret in the record"
cd "$T_TMP" || exit 1

# =====================================================================
# 5. An unset ${env.X} is an error before any request (not "null" sent),
# unless the template gives a default.
case_dir unsetvar
out_pl p.yaml unset_env '[s, t]' <<YAML
  s:
    fetch:
      url: "$MOCK_URL/json/7?api-key=\${env.PIPECTL_TEST_UNSET_KEY}"
  t:
    fetch:
      url: "$MOCK_URL/json/8?opt=\${env.PIPECTL_TEST_UNSET_OPT // \"\"}"
YAML
env -u PIPECTL_TEST_UNSET_KEY "$PIPECTL" validate p.yaml >out.validate 2>err.validate
is "$?" 0 "unset: validate exits 0 (the file is valid)"
grep -q '^p.yaml:5:12: warning: stage s: environment variable PIPECTL_TEST_UNSET_KEY is not set' \
	err.validate
ok $? "unset: validate warns that run would refuse to start"
env -u PIPECTL_TEST_UNSET_KEY -u PIPECTL_TEST_UNSET_OPT "$PIPECTL" run --state st.db p.yaml \
	>/dev/null 2>err.run
is "$?" 2 "unset: run exits 2"
grep -q '^p.yaml:5:12: stage s: environment variable PIPECTL_TEST_UNSET_KEY is not set' err.run
ok $? "unset: file:line:col, the stage and the variable"
grep -q 'PIPECTL_TEST_UNSET_OPT' err.run
is "$?" 1 "unset: a variable with a default is not an error"
is "$(count /json/7):$(count /json/8)" "0:0" "unset: no request is sent"
is "$(sq st.db 'SELECT count(*) FROM runs' 2>/dev/null || echo 0)" 0 "unset: no run is recorded"
PIPECTL_TEST_UNSET_KEY=k3y-value-123 "$PIPECTL" run -q --state st.db p.yaml 2>/dev/null
is "$?" 0 "unset: with the variable set the run succeeds"
is "$(logq /json/7 query):$(logq /json/8 query)" "api-key=k3y-value-123:opt=" \
	"unset: the set value is sent; the unset one with a default is empty"
# A sink path built from an unset variable would name a file "null".
cat >f.yaml <<YAML
pipeline: unset_path
stages:
  s:
    fetch:
      url: "$MOCK_URL/json/9"
  o:
    needs: s
    load:
      file: { path: "snap-\${env.PIPECTL_TEST_UNSET_DIR}.jsonl" }
YAML
env -u PIPECTL_TEST_UNSET_DIR "$PIPECTL" run --state st2.db f.yaml >/dev/null 2>err.path
is "$?" 2 "unset in a sink path: run exits 2"
grep -q '^f.yaml:9:21: stage o: environment variable PIPECTL_TEST_UNSET_DIR is not set' err.path
ok $? "unset in a sink path: file:line:col, the stage and the variable"
is "$(count /json/9):$(ls snap-* 2>/dev/null | wc -l)" "0:0" \
	"unset in a sink path: nothing fetched, no file written"
cd "$T_TMP" || exit 1

done_testing
