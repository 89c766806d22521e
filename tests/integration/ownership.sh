#!/bin/sh
# Ownership: a run is owned by one process at a time (a lease in the state
# database naming the process by pid and start time), and so is each file a
# run writes. A second resume of a run in progress, or a run writing the
# same file, exits 4 with a message naming the owner and sends no request;
# the lease of a process that exited, is a zombie, or whose pid now belongs
# to another process is taken over; one on another host needs --force.
# Requests are held in flight at a gate of the mock (?gate=NAME) until the
# test opens it, so nothing here depends on timing.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

gate_open() { mock_gate "$1" open >/dev/null; }
nreq() { wc -l <"$MOCK_LOG" | tr -d ' '; }

# pipeline DIR GATE: a pipeline in its own directory (own state database)
# whose third request waits at the gate GATE.
pipeline() {
	mkdir -p "$1"
	cat >"$1/p.yaml" <<YAML
pipeline: own-$1
stages:
  src:
    fetch:
      url:
        - $MOCK_URL/json/1
        - $MOCK_URL/json/2
        - $MOCK_URL/json/3?gate=$2
  out:
    needs: src
    load:
      file: { path: out.jsonl }
YAML
}

# ---- two resumes of one run at once
pipeline two g1
"$PIPECTL" run two/p.yaml 2>/dev/null &
first=$!
gate_wait g1 1
# Kill it once the journal holds the two answers.
i=0
until [ "$(sq two/.pipectl/state.db 'SELECT COUNT(*) FROM journal' 2>/dev/null)" = 2 ]; do
	i=$((i + 1))
	[ $i -gt 2000 ] && { echo "Bail out! the journal never held two answers"; exit 1; }
	sleep 0.05
done
kill -9 "$first"
wait "$first"
is "$?" 137 "first run killed with SIGKILL"
"$PIPECTL" resume --last -f two/p.yaml 2>two/a.err &
a=$!
gate_wait g1 2
before=$(nreq)
"$PIPECTL" resume --last -f two/p.yaml 2>two/b.err
is "$?" 4 "a second resume of the run in progress exits 4"
grep -q "pipectl resume: run 1 is owned by pid $a (pipectl resume, since " two/b.err
ok $? "it names the owner: pid $a, pipectl resume"
grep -q "still running; wait for it to finish, stop it, or take the run over with --force" two/b.err
ok $? "and says what to do"
is "$(nreq)" "$before" "the second resume sent no request"
"$PIPECTL" run two/p.yaml 2>two/c.err
is "$?" 4 "a new run of the pipeline (same file sink) exits 4"
grep -q "pipectl run: /.*/two/out.jsonl (written by stage out) is owned by pid $a" two/c.err
ok $? "it names the file and its owner"
is "$(nreq)" "$before" "and sent no request"
is "$(sq two/.pipectl/state.db 'SELECT COUNT(*) FROM runs')" 1 "and recorded no run"
grep -q "run 1 was owned by pid $first (pipectl run, since .*), which has exited: taking it over" two/a.err
ok $? "the first resume said it took the run over from the killed run"
gate_open g1
wait "$a"
is "$?" 0 "the first resume succeeds"
is "$(wc -l <two/out.jsonl | tr -d ' ')" 3 "with all three records"
is "$(grep -c '"path":"/json/1"' "$MOCK_LOG")" 1 "/json/1 was fetched once"
is "$(sq two/.pipectl/state.db 'SELECT COUNT(*) FROM leases')" 0 "no lease left after the run"

# ---- a zombie owner: its lease is taken over without --force
pipeline zombie g2
# The shell starts pipectl and becomes sleep, which never reaps it.
sh -c "\"$PIPECTL\" run zombie/p.yaml 2>/dev/null & echo \$! >zombie/pid; exec sleep 100000" &
T_PIDS="$T_PIDS $!"
gate_wait g2 1
zpid=$(cat zombie/pid)
kill -9 "$zpid"
i=0
until [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$zpid/stat" 2>/dev/null)" = Z ]; do
	i=$((i + 1))
	[ $i -gt 2000 ] && { echo "Bail out! pid $zpid did not become a zombie"; exit 1; }
	sleep 0.05
done
ok 0 "pid $zpid is a zombie"
is "$(sq zombie/.pipectl/state.db "SELECT pid FROM leases WHERE resource = 'run:1'")" "$zpid" \
	"its lease is still recorded"
gate_open g2
"$PIPECTL" resume --last -f zombie/p.yaml 2>zombie/err
is "$?" 0 "resume of a run whose owner is a zombie proceeds"
grep -q "run 1 was owned by pid $zpid (pipectl run, since .*), which has exited (a zombie its parent has not reaped): taking it over" zombie/err
ok $? "and says the owner is a zombie"

# ---- a reused pid, and an owner on another host
mkdir -p reuse
cat >reuse/p.yaml <<YAML
pipeline: reuse
stages:
  src:
    fetch:
      url: $MOCK_URL/seq/reuse?codes=500,200
      retry: { attempts: 1 }
  out:
    needs: src
    load:
      file: { path: out.jsonl }
YAML
"$PIPECTL" run reuse/p.yaml 2>/dev/null
is "$?" 1 "a run that fails"
sleep 100000 &
other=$!
T_PIDS="$T_PIDS $other"
start=$(sed 's/.*) //' "/proc/$other/stat" | cut -d' ' -f20)
host=$(uname -n)
boot=$(cat /proc/sys/kernel/random/boot_id)
# As if the run were still owned by pid $other, started at another time:
# the pid was reused by an unrelated process.
sq reuse/.pipectl/state.db "UPDATE runs SET status = 'running', pid = $other;
	INSERT INTO leases VALUES ('run:1', 1, $other, $start - 1, '$host', '$boot', 'run', 1000)"
"$PIPECTL" resume 1 -f reuse/p.yaml 2>reuse/err
is "$?" 0 "resume of a run whose owner's pid was reused proceeds"
grep -q "run 1 was owned by pid $other (pipectl run, since 1970-01-01T00:16:40Z), which has exited (its pid now belongs to another process): taking it over" reuse/err
ok $? "and says the pid belongs to another process now"

"$PIPECTL" run reuse/p.yaml 2>/dev/null
sq reuse/.pipectl/state.db "UPDATE runs SET status = 'failed' WHERE id = 2;
	INSERT INTO leases VALUES ('run:2', 2, $other, $start, 'elsewhere.example', 'b', 'resume', 1000)"
before=$(nreq)
"$PIPECTL" resume 2 -f reuse/p.yaml 2>reuse/err2
is "$?" 4 "a lease held on another host: resume exits 4"
grep -q "pipectl resume: run 2 is owned by pid $other on host elsewhere.example (pipectl resume, since 1970-01-01T00:16:40Z), which runs on another host, so it cannot be checked from here; wait for it to finish, stop it, or take the run over with --force" reuse/err2
ok $? "and says why"
is "$(nreq)" "$before" "and sent no request"
"$PIPECTL" resume 2 --force -f reuse/p.yaml 2>reuse/err3
is "$?" 0 "resume --force takes it over"
grep -q -- "--force: taking run 2 over from pid $other on host elsewhere.example (pipectl resume, since 1970-01-01T00:16:40Z), which runs on another host" reuse/err3
ok $? "after saying what it overrides"
is "$(sq reuse/.pipectl/state.db "SELECT status FROM runs WHERE id = 2")" succeeded "run 2 succeeded"

# ---- the file sink never follows a link planted at its temporary name
mkdir -p link
cat >link/p.yaml <<YAML
pipeline: link
stages:
  src:
    fetch:
      url: $MOCK_URL/json/7
  out:
    needs: src
    load:
      file: { path: out.jsonl }
YAML
echo "precious" >link/victim
# The shell's pid is the pipectl's after exec: the old temporary name.
(cd link && sh -c 'ln -s "$PWD/victim" "out.jsonl.tmp.$$" && exec "$0" run -q p.yaml' "$PIPECTL")
is "$?" 0 "run with a symlink planted at out.jsonl.tmp.PID succeeds"
is "$(cat link/victim)" "precious" "the link's target is untouched"
is "$(cat link/out.jsonl)" '{"id":7,"name":"item-7","price":19.99,"qty":3,"tags":["a","b"]}' \
	"the output is written"
test -f link/out.jsonl && ! test -L link/out.jsonl
ok $? "and is a regular file, not a link"
is "$(ls link | grep -c 'out.jsonl.tmp.[0-9]*\.')" 0 "no temporary file left"

# ---- dlq replay adds to the file sink, as to the SQLite sink
mkdir -p replay
cat >replay/p.yaml <<YAML
pipeline: replay
stages:
  src:
    on_error: dlq
    fetch:
      retry: { attempts: 1 }
      url:
        - $MOCK_URL/json/1
        - $MOCK_URL/json/2
        - $MOCK_URL/json/3
        - $MOCK_URL/seq/replay?codes=500,200
  file:
    needs: src
    load:
      file: { path: out.jsonl }
  db:
    needs: src
    load:
      sqlite: { path: out.db, table: t }
YAML
"$PIPECTL" run -q replay/p.yaml 2>/dev/null
is "$?" 0 "a run that dead-letters one request"
is "$(wc -l <replay/out.jsonl | tr -d ' '):$(sq replay/out.db 'SELECT COUNT(*) FROM t')" "3:3" \
	"three records in the file and in the table"
cp replay/out.jsonl replay/before.jsonl
"$PIPECTL" dlq replay -q 1 -f replay/p.yaml >/dev/null 2>replay/err
is "$?" 0 "dlq replay succeeds"
is "$(wc -l <replay/out.jsonl | tr -d ' '):$(sq replay/out.db 'SELECT COUNT(*) FROM t')" "4:4" \
	"the replayed record is added to the file (3 -> 4 lines) as to the table"
is "$(head -n 3 replay/out.jsonl)" "$(cat replay/before.jsonl)" "the file's first lines are kept"
is "$(tail -n 1 replay/out.jsonl)" '{"name":"replay","attempt":2}' "the last line is the replayed record"
is "$(ls replay | grep -c 'out.jsonl.tmp')" 0 "no temporary file left"

done_testing
