#!/bin/sh
# fetch.sqlite: records from a read-only SQL query on a SQLite file made by
# the test. Types round-trip, bind values keep their JSON types, params and
# -p reach the query, errors come at validate time (file:line:col) where the
# file shows them and when the run starts otherwise, the file is never
# written, 100,000 rows stream in the memory of 1,000, a locked file is
# retried by the engine without blocking (and given up after the attempts of
# the stage's retry:), and a run
# killed with SIGKILL resumes by running the query again, its HTTP sink
# delivering each record once.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

# ---- types round-trip
sq types.db <<'SQL'
CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, n, big INTEGER);
INSERT INTO t VALUES (1, -7, 19.99, 'héllo "q" \ ☃', NULL, 4611686018427387904);
INSERT INTO t VALUES (2, 0, 0.1, '', NULL, -9223372036854775808);
SQL
cat >types.yaml <<'YAML'
pipeline: types
stages:
  src:
    fetch:
      sqlite:
        path: types.db
        query: SELECT id, i, r, s, n, big FROM t ORDER BY id
  out:
    needs: src
    load: { file: { path: types.jsonl } }
YAML
run_pl -q types.yaml
is "$RC" 0 "types: run succeeds"
is "$(cat types.jsonl)" '{"id":1,"i":-7,"r":19.99,"s":"héllo \"q\" \\ ☃","n":null,"big":4611686018427387904}
{"id":2,"i":0,"r":0.1,"s":"","n":null,"big":-9223372036854775808}' \
	"INTEGER, REAL, TEXT and NULL become integer, real, string and null, exactly"
is "$(stq "SELECT records_in || ' ' || records_out FROM stage_runs WHERE stage = 'src' AND run_id = $LAST")" \
	"2 2" "the stage counts the rows in and the records out"

# ---- bind: the JSON type of a single ${expr}, text otherwise
cat >bind.yaml <<'YAML'
pipeline: bind
params: { min: 50, ratio: 0.5, name: "b" }
stages:
  src:
    fetch:
      sqlite:
        path: types.db
        query: >-
          SELECT :i AS i, typeof(:i) AS ti, @r AS r, typeof(@r) AS tr,
                 $s AS s, typeof($s) AS ts, :n AS n, typeof(:n) AS tn,
                 :t AS t, typeof(:t) AS tt, :mixed AS mixed, typeof(:mixed) AS tmixed,
                 :const AS const, typeof(:const) AS tconst, :q AS q, typeof(:q) AS tq,
                 :arr AS arr,
                 typeof(:arr) AS tarr, :i + 1 AS i1
        bind:
          i: ${params.min}
          r: ${params.ratio}
          s: ${params.name}
          n: ${null}
          t: ${true}
          mixed: "min ${params.min}"
          const: 5
          q: "5"
          arr: ${[1, "x"]}
  out:
    needs: src
    load: { file: { path: bind.jsonl } }
YAML
run_pl -q bind.yaml
is "$RC" 0 "bind: run succeeds"
is "$(cat bind.jsonl)" \
	'{"i":50,"ti":"integer","r":0.5,"tr":"real","s":"b","ts":"text","n":null,"tn":"null","t":1,"tt":"integer","mixed":"min 50","tmixed":"text","const":5,"tconst":"integer","q":"5","tq":"text","arr":"[1,\"x\"]","tarr":"text","i1":51}' \
	"one \${expr} binds its JSON type (integer, real, text, null, 1 for true, JSON text), an unquoted number its number, other values text"

# ---- params and -p choose the rows
sq users.db <<'SQL'
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, score INTEGER, team TEXT);
INSERT INTO users VALUES (1, 'ann', 90, 'a'), (2, 'bob', 40, 'a'), (3, 'cy', 70, 'b'),
  (4, 'di', 55, 'b'), (5, 'ed', 10, 'b');
SQL
cat >users.yaml <<'YAML'
pipeline: users
params: { min_score: 50, team: a }
stages:
  users:
    fetch:
      sqlite:
        path: users.db
        query: SELECT id, name, score FROM users WHERE score >= :min AND team = :team ORDER BY id
        bind:
          min: ${params.min_score}
          team: ${params.team}
        records: '{id, who: .name}'
  out:
    needs: users
    load: { file: { path: users.jsonl } }
YAML
run_pl -q users.yaml
is "$RC" 0 "params: run succeeds"
is "$(cat users.jsonl)" '{"id":1,"who":"ann"}' "the params' defaults select the rows; records: reshapes each row"
run_pl -q users.yaml -p team=b -p min_score=50
is "$RC" 0 "-p: run succeeds"
is "$(cat users.jsonl | tr '\n' ' ')" '{"id":3,"who":"cy"} {"id":4,"who":"di"} ' "-p team=b -p min_score=50 select other rows"

# ---- the file is only read
before=$(sha256sum users.db)
cat >write.yaml <<'YAML'
pipeline: write
stages:
  src:
    fetch:
      sqlite: { path: users.db, query: "DELETE FROM users RETURNING id" }
  out:
    needs: src
    load: { stdout: }
YAML
run_pl -q write.yaml
is "$RC" 1 "a query that writes: the run fails"
grep -q 'users.db: "query" is not read-only' "$ERR"
ok $? "saying the query is not read-only"
cat >two.yaml <<'YAML'
pipeline: two
stages:
  src:
    fetch:
      sqlite: { path: users.db, query: "SELECT id FROM users; DELETE FROM users" }
  out:
    needs: src
    load: { stdout: }
YAML
run_pl -q two.yaml
is "$RC" 1 "a second statement after the query: the run fails"
grep -q '"query" holds more than one statement' "$ERR"
ok $? "saying there is more than one statement"
is "$(sha256sum users.db)" "$before" "the database file is unchanged"
is "$(sq users.db 'SELECT count(*) FROM users')" 5 "and still holds its rows"
cat >trail.yaml <<'YAML'
pipeline: trail
stages:
  src:
    fetch:
      sqlite: { path: users.db, query: "SELECT id FROM users WHERE id = 1; -- one row\n ;" }
  out:
    needs: src
    load: { file: { path: trail.jsonl } }
YAML
run_pl -q trail.yaml
is "$RC:$(cat trail.jsonl)" '0:{"id":1}' "a trailing ; and comment are not a second statement"

# A $ inside a word is part of it (SQLite identifiers may hold $), and
# :x in a string or a comment is text, not a parameter.
sq dollar.db "CREATE TABLE \"a\$b\" (id INTEGER); INSERT INTO \"a\$b\" VALUES (1), (2);"
cat >dollar.yaml <<'YAML'
pipeline: dollar
stages:
  src:
    fetch:
      sqlite:
        path: dollar.db
        query: "SELECT id AS x$y, ':no' AS s FROM a$b /* :nor */ WHERE id = :v -- :nor\n"
        bind: { v: "${2}" }
  out:
    needs: src
    load: { file: { path: dollar.jsonl } }
YAML
"$PIPECTL" validate dollar.yaml >/dev/null 2>&1
is "$?" 0 "validate: no parameter inside a word, a string or a comment"
run_pl -q dollar.yaml
is "$RC:$(cat dollar.jsonl)" '0:{"x$y":2,"s":":no"}' "and the run binds only :v"

# ---- errors when the run starts
start_err() { # start_err NAME QUERY EXPECTED DESC
	cat >"$1.yaml" <<YAML
pipeline: $1
stages:
  src:
    fetch:
      sqlite: { path: users.db, query: "$2" }
  out:
    needs: src
    load: { stdout: }
YAML
	run_pl -q "$1.yaml"
	is "$RC" 1 "$4: exit 1"
	grep -qF "$3" "$ERR"
	ok $? "$4: says $3"
}
start_err dup 'SELECT id, name AS id FROM users' \
	'"query" returns two columns named "id" (columns 1 and 2): give one another name with AS' \
	"duplicate column names"
start_err blob "SELECT id, x'00ff' AS b FROM users" \
	'column "b" of row 1 is a BLOB' "a BLOB value"
start_err nosuch 'SELECT * FROM nope' '"query": no such table: nope' "an unknown table"
start_err utf8 "SELECT CAST(x'ff' AS TEXT) AS t" \
	'column "t" of row 1 is not valid UTF-8 text' "text that is not UTF-8"
start_err inf 'SELECT 9e999 AS r' 'column "r" of row 1 is inf, which JSON cannot hold' "an infinite REAL"
start_err nocols 'PRAGMA user_version = 0' '"query" is not read-only' "a PRAGMA that writes"
start_err empty ' -- nothing' '"query" is empty' "a query of comments only"
sed 's/users.db/missing.db/' nosuch.yaml >missing.yaml
run_pl -q missing.yaml
is "$RC" 1 "a missing database file: exit 1"
grep -q "stage src: cannot open missing.db: No such file or directory" "$ERR"
ok $? "saying which file is missing"
ok "$([ ! -e missing.db ]; echo $?)" "and no empty database is created"

# ---- env: values are secrets; an unset variable is an error before the run
cat >env.yaml <<'YAML'
pipeline: env
stages:
  src:
    fetch:
      sqlite:
        path: ${env.SQ_DIR}/nope.db
        query: SELECT id FROM users WHERE team = :team
        bind: { team: "${env.SQ_TEAM}" }
  out:
    needs: src
    load: { stdout: }
YAML
SQ_DIR=/tmp/sq-secret-dir run_pl -q env.yaml
is "$RC" 2 "an unset env variable in a bind value: exit 2 before anything runs"
grep -q '^env.yaml:8:23: stage src: environment variable SQ_TEAM is not set (read by a bind value' "$ERR"
ok $? "naming the variable and the bind value"
SQ_DIR=/tmp/sq-secret-dir SQ_TEAM=a run_pl -q env.yaml
is "$RC" 1 "a missing file named by an env variable: exit 1"
grep -q 'cannot open \*\*\*/nope.db' "$ERR" && ! grep -rq sq-secret-dir "$ERR" .pipectl/state.db
ok $? "the path's env value is redacted from the message and the state database"

# ---- errors at validate time, with their position
cat >bad.yaml <<'YAML'
pipeline: bad
params: { x: 1 }
stages:
  src:
    fetch:
      sqlite:
        path: users.db
        query: SELECT * FROM users WHERE id = :id AND team = :team OR id = :id
        bind:
          id: ${params.x}
          extra: ${params.x}
        limit: 3
  fan:
    needs: src
    fetch:
      sqlite: { path: users.db, query: "SELECT ?" }
  out:
    needs: fan
    load: { stdout: }
YAML
"$PIPECTL" validate bad.yaml >/dev/null 2>err
is "$?" 2 "validate: exit 2 on config errors"
grep -q '^bad.yaml:8:16: query parameter "team" has no value: add it to "bind"$' err
ok $? "a parameter without a bind entry, at the query"
is "$(grep -c 'query parameter "id"' err)" 0 "a bound parameter used twice is fine"
grep -q '^bad.yaml:11:11: bind: "extra" is not a parameter of the query' err
ok $? "a bind entry the query does not use, at the entry"
grep -q '^bad.yaml:12:9: unknown key "limit" in sqlite' err
ok $? "an unknown key, at the key"
grep -q '^bad.yaml:16:.*positional parameter "?" in "query"' err
ok $? "a positional parameter"
grep -q '^bad.yaml:14:.*fetch.sqlite takes no input' err
ok $? "needs on a fetch.sqlite stage"
cat >bad2.yaml <<'YAML'
pipeline: bad2
stages:
  src:
    fetch:
      sqlite: { path: users.db }
  out:
    needs: src
    load: { stdout: }
YAML
"$PIPECTL" validate bad2.yaml >/dev/null 2>err
is "$?" 2 "validate: a missing query is a config error"
grep -q '^bad2.yaml:5:.*"query"' err
ok $? "naming the key"

# ---- streaming: 100,000 rows in about the memory of 1,000
mkdb() { # mkdb FILE ROWS
	sq "$1" "CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, note TEXT);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $2)
INSERT INTO big SELECT i, 'row ' || i, printf('%.300d', i) FROM c;"
}
mkdb small.db 1000
mkdb large.db 100000
mkstream() { # mkstream NAME DB
	cat >"$1.yaml" <<YAML
pipeline: $1
settings: { queue: 200, batch_size: 50 }
stages:
  src:
    fetch:
      sqlite: { path: $2, query: "SELECT id, name, note FROM big ORDER BY id" }
  slow:
    needs: src
    transform: { jq: '{id, n: (.note | length)}' }
  out:
    needs: slow
    load: { file: { path: $1.jsonl } }
YAML
}
mkstream small small.db
mkstream large large.db
# Under AddressSanitizer (./configure --enable-sanitizers) freed memory
# waits in a quarantine of up to 256 MiB, so peak RSS would follow what was
# ever allocated: measure these two runs without it (other builds ignore
# ASAN_OPTIONS).
rss() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0" \
	/usr/bin/python3 - "$@" <<'PY'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
PY
}
set -- $(rss "$PIPECTL" run small.yaml)
small_rss=$1 small_rc=$2
set -- $(rss "$PIPECTL" run large.yaml)
large_rss=$1 large_rc=$2
is "$small_rc $large_rc" "0 0" "1,000 and 100,000 rows: both runs succeed"
is "$(wc -l <large.jsonl | tr -d ' ')" 100000 "every row arrives"
is "$(sed -n '100000p' large.jsonl)" '{"id":100000,"n":300}' "in order, the last one last"
diag "peak RSS: 1,000 rows ${small_rss} KiB, 100,000 rows ${large_rss} KiB"
# 100,000 rows of ~350 bytes held at once would take well over 60 MiB as
# JSON objects. Allow 50% plus 16 MiB for the allocator and SQLite's cache.
limit=$((small_rss * 3 / 2 + 16384))
ok "$([ "$large_rss" -le "$limit" ]; echo $?)" \
	"peak RSS does not grow with the rows (${large_rss} <= ${limit} KiB)"

# ---- a locked file: waited for without blocking, or given up
lock() { # lock DB: holds an exclusive lock on DB until the file "release" exists
	rm -f locked release
	/usr/bin/python3 - "$1" <<'PY' &
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
open("locked", "w").write("1")
while not os.path.exists("release"):
    time.sleep(0.02)
c.execute("COMMIT")
PY
	LOCK_PID=$!
	T_PIDS="$T_PIDS $LOCK_PID"
	wait_until test -s locked || { echo "Bail out! the lock was not taken"; exit 1; }
}
# The stage's retry: (not defaults.retry, which would allow many attempts).
sed 's/^        path: users.db$/&\n        retry: { attempts: 3, initial: 10ms, jitter: none }/' users.yaml >busy.yaml
sed -i 's/^pipeline: users/pipeline: busy\ndefaults: { retry: { attempts: 100 } }/' busy.yaml
lock users.db
run_pl busy.yaml
is "$RC" 1 "a file locked for longer than the stage's retry attempts: exit 1"
grep -q 'stage users: .*users.db: database is locked, retry 2/3 in 10ms' "$ERR"
ok $? "each retry is logged as the engine logs retries"
grep -q 'stage users failed: .*users.db: database is locked (after 3 attempts)' "$ERR"
ok $? "the stage fails saying the database is locked, after the policy's attempts"
touch release
wait "$LOCK_PID"

# Enough attempts that the lock is released long before they are used up
# (exponential from 100ms, at most 2s between: minutes).
sed 's/^        path: users.db$/&\n        retry: { attempts: 100, initial: 100ms, max: 2s }/' users.yaml >wait.yaml
sed -i 's/^pipeline: users/pipeline: wait/' wait.yaml
rm -f users.jsonl
lock users.db
"$PIPECTL" run wait.yaml >/dev/null 2>wait.err &
RUN_PID=$!
wait_until grep -q 'users.db: database is locked, retry 2/100 in' wait.err
ok $? "a locked file: the stage says it retries"
touch release
wait "$LOCK_PID"
wait "$RUN_PID"
is "$?" 0 "and once the lock is released, the run succeeds"
is "$(cat users.jsonl)" '{"id":1,"who":"ann"}' "with the rows"

# ---- resume after SIGKILL: the query runs again; the sink delivers once
start_mockapi
sq seq.db "CREATE TABLE r (id INTEGER PRIMARY KEY);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20)
INSERT INTO r SELECT i FROM c;"
cat >resume.yaml <<YAML
pipeline: resume
stages:
  src:
    fetch:
      sqlite: { path: seq.db, query: "SELECT id FROM r ORDER BY id" }
  hook:
    needs: src
    load:
      http:
        url: '$MOCK_URL/seq/r\${.id}\${if .id == 6 then "?gate=sq" else "" end}'
        concurrency: 1
YAML
"$PIPECTL" run -q resume.yaml >/dev/null 2>&1 &
RUN_PID=$!
gate_wait sq 1
delivered() { [ "$(stq "SELECT count(*) FROM journal WHERE stage = 'hook'")" -ge "$1" ]; }
wait_until delivered 5
ok $? "records 1 to 5 are delivered and journaled, record 6 is held"
kill -9 "$RUN_PID"
wait "$RUN_PID" 2>/dev/null
mock_gate sq open >/dev/null
"$PIPECTL" resume --last -f resume.yaml -q >/dev/null 2>err
is "$?" 0 "resume after kill -9: exit 0"
is "$(/usr/bin/python3 -c '
import collections, json, sys
c = collections.Counter(json.loads(l)["path"] for l in open(sys.argv[1]))
print(" ".join("%s=%d" % (p, c["/seq/r%d" % p]) for p in range(1, 21)))' "$MOCK_LOG")" \
	"1=1 2=1 3=1 4=1 5=1 6=2 7=1 8=1 9=1 10=1 11=1 12=1 13=1 14=1 15=1 16=1 17=1 18=1 19=1 20=1" \
	"each record reached the sink once, and the one unanswered at the kill twice"
is "$(stq "SELECT count(*) FROM journal WHERE stage = 'hook'")" 20 "all 20 deliveries are journaled"
is "$(stq "SELECT status || ' ' || records_in FROM stage_runs WHERE stage = 'src' AND run_id = $LAST")" \
	"succeeded 20" "the resumed run ran the query again"

done_testing
