#!/bin/sh
# Crash tests: a paginated source, a fan-out fetch, a transform and two sinks
# (SQLite upsert on id, JSONL file) are killed with SIGKILL at random points
# (and stopped with SIGINT/SIGTERM, and failed by the API), then resumed until
# they succeed. Each time the sinks must equal those of an uninterrupted run,
# the server must have answered each successful request at most once (except
# for answers that a kill -9 could have caught uncommitted: DESIGN.md section
# 4, those after which the killed process had logged no journal commit, and
# those it had not read at all), and the state must show one run, succeeded.
# No check depends on timing: which answers a kill could lose follows from
# the order of pipectl's own log lines. CRASH_POINTS (default 20) and
# CRASH_SEED reproduce a series.
# The cases that need the run to be in progress when the signal lands hold a
# page at a gate of the mock API until the test has sent it.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi
PY=/usr/bin/python3

POINTS=${CRASH_POINTS:-20}
SEED=${CRASH_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
# Rounds of resume before giving up on a crash point.
ROUNDS=8
diag "CRASH_SEED=$SEED CRASH_POINTS=$POINTS (set both to repeat this series)"

# ---- helpers

# Random numbers in [0, 1) from the seed, one per call to rnd (sets R).
$PY -c "
import random, sys
random.seed(int(sys.argv[1]))
for _ in range(20000):
    print('%.4f' % random.random())
" "$SEED" >"$T_TMP/rand.txt"
RN=0
rnd() {
	RN=$((RN + 1))
	R=$(sed -n "${RN}p" "$T_TMP/rand.txt")
}
# fmul A B: A * B with three decimals.
fmul() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a * b }'; }
# flt A B: true when A < B.
flt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }
now() { date +%s.%N; }

# case_dir NAME: a fresh directory per crash point (own state database).
case_dir() {
	rm -rf "$T_TMP/$1"
	NPROC=0
	mkdir -p "$T_TMP/$1" && cd "$T_TMP/$1" || exit 1
}

# mark: the log analysis sees only requests logged after this point.
mark() { MARK=$(wc -l <"$MOCK_LOG"); }

# pipeline FILE [EXTRA-PAGE-QUERY [PAGE-RETRY [GATE]]]: the pipeline under
# test. Pages take 60ms each, detail requests 20ms, four at a time. With
# GATE, page 3 waits at that gate of the mock API until it is opened.
pipeline() {
	cat >"$1" <<YAML
pipeline: crash
stages:
  pages:
    fetch:
      url: "$MOCK_URL/pages?page=1&per=5&total=60$2&delay=60"
      records: '.items[]'
      paginate: {next: 'if .next then "$MOCK_URL" + .next + "&delay=60" + (if .page == 2 then "${4:+&gate=$4}" else "" end) else null end'}
${3:+      retry: $3}
  detail:
    needs: pages
    fetch:
      url: "$MOCK_URL/json/\${.id}?delay=20"
      merge: '.record + {detail: .response.name}'
      concurrency: 4
  shape:
    needs: detail
    transform:
      jq: '{id, name, price, detail, tag: ("t" + (.id | tostring))}'
  db:
    needs: shape
    load:
      sqlite: {path: out.db, table: items, key: id}
  file:
    needs: shape
    load:
      file: {path: out.jsonl}
YAML
}

# The sinks' content: SQLite rows by id, then the JSONL lines sorted.
sink_db() { sq out.db 'SELECT * FROM items ORDER BY id' 2>&1; }
sink_file() { LC_ALL=C sort out.jsonl 2>&1; }

# Repeated successful requests since the mark. EVENTS holds one line per
# process that ended without success before the next one started: "kill T
# D LOG" (SIGKILL sent just after T to the process that logged to LOG, dead
# by D) or "end T LOG" (the process that logged to LOG exited at T).
#
# What a process had committed when it died follows from the order of its
# log (-v --log-json), not from times: it logs "answer S: METHOD URL" when an
# answer arrives and buffers the answer for the journal in the same callback
# (bodies here are far below the size whose parse goes to a worker thread),
# and it logs "journal: committed N responses" after each commit that
# succeeded (of the journal's group commit or of the state writer's
# transaction); a commit writes every answer buffered so far. So an answer
# followed by a commit line in the log of its process is in the journal, and
# a resume must not ask for it again.
#
# A success repeated across a kill is excused when the killed process
# received it with no commit logged after it ("uncommitted"), or never read
# it ("unread"); across an exit (which commits what it buffered), when the
# process never read it ("end"). Any other repeat, or one with no such event
# between the two requests, is a violation. Times serve only to pair the two
# requests with the processes in between (causal order: a process dead by D
# asks nothing after D; an answer is logged after its request reached the
# server).
cat >"$T_TMP/repeats.py" <<'PY'
import json, re, sys
from urllib.parse import urlsplit
log, mark, events = sys.argv[1], int(sys.argv[2]), sys.argv[3]
answers = {}
def received(path):
    """key -> [(time, committed)]: the 2xx answers pipectl (logging to path)
    received for key, and whether it logged a journal commit after each."""
    if path not in answers:
        got, pending = {}, []
        for line in open(path, errors="replace").read().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            msg = d.get("msg", "")
            m = re.match(r"answer (\d+): \S+ (\S+)$", msg)
            if m and 200 <= int(m.group(1)) < 300:
                u = urlsplit(m.group(2))
                a = [d["ts"], False]
                got.setdefault(u.path + ("?" + u.query if u.query else ""), []).append(a)
                pending.append(a)
            elif re.match(r"journal: committed \d+ responses?$", msg):
                for a in pending:
                    a[1] = True
                pending = []
        answers[path] = got
    return answers[path]
ev = []
for line in open(events).read().split("\n"):
    if line.strip():
        f = line.split()
        if f[0] == "kill":
            ev.append((f[0], float(f[1]), float(f[2]), f[3]))
        else:
            ev.append((f[0], float(f[1]), float(f[1]), f[2]))
occ = {}
for line in open(log).read().splitlines()[mark:]:
    d = json.loads(line)
    if not 200 <= d["status"] < 300:
        continue
    key = d["path"] + ("?" + d["query"] if d["query"] else "")
    occ.setdefault(key, []).append(d["ts"])
uncommitted = unread = end_ex = 0
margin = 0.0
bad = []
for key, lst in sorted(occ.items()):
    lst.sort()
    for ts, ts2 in zip(lst, lst[1:]):
        # The process may have sent the first request after the signal was
        # sent but before it died (ts < its end), never the second.
        between = [e for e in ev if ts < e[2] < ts2]
        # What each process in between did with the answer to the first
        # request (its log can only hold it after the server took it up).
        got = [(k, t, [a for a in received(p).get(key, []) if a[0] >= ts])
               for k, t, _, p in between]
        why = None
        if not between:
            pass
        elif any(a[1] for k, t, rs in got for a in rs):
            pass        # received, then committed: the resume must not ask again
        elif any(k == "end" and rs for k, t, rs in got):
            pass        # received before a graceful exit, which commits it
        elif any(k == "kill" and rs for k, t, rs in got):
            why = "uncommitted"
            margin = max([margin] + [t - a[0] for k, t, rs in got if k == "kill"
                                     for a in rs])
        elif any(k == "kill" for k, t, rs in got):
            why = "unread"
        else:
            why = "end"
        if why == "uncommitted":
            uncommitted += 1
        elif why == "unread":
            unread += 1
        elif why == "end":
            end_ex += 1
        else:
            recv = ["received by the %s process (%s) at %s" % (
                        "killed" if k == "kill" else "exited", p, ", ".join(
                        "%.3f (%s)" % (a[0], "journal commit logged after it" if a[1]
                                       else "no commit logged after it")
                        for a in rs))
                    for (k, t, rs), (_, _, _, p) in zip(got, between) if rs]
            bad.append("%s: asked at %.3f, asked again at %.3f; %s" % (
                key, ts, ts2,
                "between: " + ", ".join("%s %.3f" % (k, t) for k, t, _, _ in between)
                + ("; " + "; ".join(recv) if recv else "") if between
                else "no kill or exit between"))
print("excused %d %d %d %.3f" % (uncommitted, unread, end_ex, margin))
for b in bad:
    print(b)
PY
# repeats EVENTS-FILE: sets EXCUSED_UNCOMMITTED (received by a killed process
# that logged no journal commit after it), EXCUSED_UNREAD (answered, not yet
# read by the killed process), EXCUSED_END (never read by a process that
# exited), MARGIN (the longest an excused answer had been received before its
# kill: informative only) and VIOLATIONS.
repeats() {
	$PY "$T_TMP/repeats.py" "$MOCK_LOG" "$MARK" "$1" >"$T_TMP/repeats.out" 2>&1
	set -- $(head -n 1 "$T_TMP/repeats.out")
	EXCUSED_UNCOMMITTED=${2:-?}
	EXCUSED_UNREAD=${3:-?}
	EXCUSED_END=${4:-?}
	MARGIN=${5:-?}
	VIOLATIONS=$(tail -n +2 "$T_TMP/repeats.out")
}

# state_summary: run id, run status, stage statuses, number of runs.
state_summary() {
	"$PIPECTL" status --json >st.json 2>st.err
	"$PIPECTL" runs --json >runs.json 2>>st.err
	$PY -c '
import json
st = json.load(open("st.json"))
runs = json.load(open("runs.json"))
print("run=%s %s stages=%s runs=%d" % (st["run"]["id"], st["run"]["status"],
      ",".join("%s:%s" % (s["stage"], s["status"]) for s in st["stages"]), len(runs)))
' 2>&1
}
WANT_STATE="run=1 succeeded stages=pages:succeeded,detail:succeeded,shape:succeeded,db:succeeded,file:succeeded runs=1"

# start CMD ARGS...: runs pipectl CMD in the background (PID), output in
# run.N.out/err (ERRLOG); its JSON log records when each answer arrived.
NPROC=0
start() {
	NPROC=$((NPROC + 1))
	ERRLOG="$PWD/run.$NPROC.err"
	cmd=$1
	shift
	"$PIPECTL" "$cmd" -v --log-json "$@" >"run.$NPROC.out" 2>"$ERRLOG" &
	PID=$!
}
# finish: waits for PID; RC is its exit status.
finish() {
	wait "$PID" 2>/dev/null
	RC=$?
}
# kill_at SECONDS SIGNAL: sends SIGNAL to PID after SECONDS (the random
# crash point); waits for it; KT is the time just before the signal.
kill_at() {
	sleep "$1"
	KT=$(now)
	kill "-$2" "$PID" 2>/dev/null
	finish
	KD=$(now)
}
# has_run: the state database records a run.
has_run() { "$PIPECTL" runs --json 2>/dev/null | grep -q '"id"'; }

# resume_until_done EVENTS [KILLS]: resumes (or, when the kill came before the
# run was recorded, runs again) until an exit status 0, for at most ROUNDS
# rounds; with KILLS=kill, SIGKILLs some of the first rounds at random points.
# Appends to EVENTS; RCS lists the exit statuses.
resume_until_done() {
	r=0
	while [ $r -lt $ROUNDS ]; do
		r=$((r + 1))
		if has_run; then
			start resume --last
		else
			start run p.yaml
		fi
		rnd
		if [ "${2:-}" = kill ] && [ $r -le 2 ] && flt "$R" 0.3; then
			rnd
			kill_at "$(fmul "$R" "$REF_DUR")" KILL
			[ "$RC" = 137 ] && echo "kill $KT $KD $ERRLOG" >>"$1"
		else
			finish
		fi
		RCS="$RCS $RC"
		[ "$RC" = 0 ] && return 0
		[ "$RC" = 137 ] || echo "end $(now) $ERRLOG" >>"$1"
	done
	return 1
}

# check_case NAME EVENTS: the checks after a case resumed to success.
check_case() {
	is "$(sink_db)" "$REF_DB" "$1: SQLite rows equal the uninterrupted run's"
	is "$(sink_file)" "$REF_FILE" "$1: JSONL lines (sorted) equal the uninterrupted run's"
	is "$(ls -a | grep -c '\.tmp')" 0 "$1: no temporary file is left"
	repeats "$2"
	[ -z "$VIOLATIONS" ]
	ok $? "$1: no successful request repeated once its journal commit was logged"
	if [ -n "$VIOLATIONS" ]; then
		diag "$1: seed $SEED; events (kill: SIGKILL sent, end: exited):" \
			"$(tr '\n' ' ' <"$2")" "repeated:"
		printf '%s\n' "$VIOLATIONS" | sed 's/^/#   /'
	fi
	[ "$EXCUSED_UNCOMMITTED$EXCUSED_UNREAD$EXCUSED_END" = 000 ] ||
		diag "$1: excused repeats: $EXCUSED_UNCOMMITTED received by a killed process that had logged no journal commit after it (the earliest ${MARGIN}s before its kill), $EXCUSED_UNREAD answered but not yet read by the killed process, $EXCUSED_END never read by a process that exited"
	TOTAL_UNCOMMITTED=$((TOTAL_UNCOMMITTED + EXCUSED_UNCOMMITTED))
	TOTAL_UNREAD=$((TOTAL_UNREAD + EXCUSED_UNREAD))
	[ "$MARGIN" != "?" ] && awk -v a="$MARGIN" -v b="$MAX_MARGIN" 'BEGIN { exit !(a > b) }' &&
		MAX_MARGIN=$MARGIN
	is "$(state_summary)" "$WANT_STATE" "$1: status: one run, succeeded, every stage succeeded"
}
TOTAL_UNCOMMITTED=0
TOTAL_UNREAD=0
MAX_MARGIN=0

# =====================================================================
# Reference: an uninterrupted run.
case_dir ref
pipeline p.yaml
mark
t0=$(now)
start run p.yaml
finish
t1=$(now)
REF_DUR=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
# The time from the run's first request to its end: the kill points below
# fall in it (on a loaded machine, starting up can take most of a run).
REF_XFER=$($PY -c '
import json, sys
t = [json.loads(l)["ts"] for l in open(sys.argv[1]) if l.startswith("{") and "\"answer " in l]
print("%.3f" % (float(sys.argv[2]) - t[0] + 0.06))
' "$ERRLOG" "$t1" 2>/dev/null)
[ -n "$REF_XFER" ] || REF_XFER=$REF_DUR
is "$RC" 0 "reference run: exit 0"
REF_DB=$(sink_db)
REF_FILE=$(sink_file)
is "$(sq out.db 'SELECT count(*), count(DISTINCT detail) FROM items' 2>&1)" "60|60" \
	"reference run: 60 rows, each with its detail"
is "$(wc -l <out.jsonl)" 60 "reference run: 60 lines in the file"
: >events
repeats events
is "$VIOLATIONS/$(($(wc -l <"$MOCK_LOG") - MARK))" "/72" \
	"reference run: 72 requests (12 pages, 60 details), none repeated"
# The repeat check reads answer times from pipectl's log: every answer the
# server logged must be found there under the same key, or the check would
# excuse repeats as unread.
is "$($PY -c '
import json, re, sys
from urllib.parse import urlsplit
srv = sorted(d["path"] + "?" + d["query"] for d in map(json.loads,
             open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]))
got = []
for l in open(sys.argv[3]).read().splitlines():
    if not l.startswith("{"):
        continue          # the summary table
    m = re.match(r"answer 200: GET (\S+)$", json.loads(l).get("msg", ""))
    if m:
        u = urlsplit(m.group(1))
        got.append(u.path + "?" + u.query)
print("same" if sorted(got) == srv else "server %d, pipectl %d" % (len(srv), len(got)))
' "$MOCK_LOG" "$MARK" "$ERRLOG" 2>&1)" same \
	"reference run: pipectl logged the arrival of each of the 72 answers"
# The repeat check counts an answer as journaled once a commit line follows
# it: a run that succeeded journaled every answer, so one must follow each.
is "$($PY -c '
import json, sys
n = pending = 0
for l in open(sys.argv[1]).read().splitlines():
    if not l.startswith("{"):
        continue
    m = json.loads(l).get("msg", "")
    if m.startswith("answer 200: "):
        pending += 1
    elif m.startswith("journal: committed "):
        n, pending = n + pending, 0
print(n, pending)
' "$ERRLOG" 2>&1)" "72 0" \
	"reference run: a journal commit was logged after each of the 72 answers"
is "$(state_summary)" "$WANT_STATE" "reference run: status succeeded"
diag "reference run took ${REF_DUR}s, ${REF_XFER}s from its first request"

# =====================================================================
# SIGKILL at random points.
killed=0
i=0
while [ $i -lt "$POINTS" ]; do
	i=$((i + 1))
	case_dir "kill$i"
	pipeline p.yaml
	mark
	: >events
	RCS=""
	start run p.yaml
	# The kill point counts from the run's start line (a condition), so it
	# falls among the transfers, not in the process start-up.
	wait_until grep -qs 'run 1 of p.yaml started' "$ERRLOG"
	rnd
	delay=$(fmul "$R" "$REF_XFER")
	kill_at "$delay" KILL
	RCS="$RC"
	when="after ${delay}s, at $KT"
	if [ "$RC" = 137 ]; then
		echo "kill $KT $KD $ERRLOG" >>events
		killed=$((killed + 1))
	else
		when="after ${delay}s: the run had ended"
	fi
	resume_until_done events kill
	ok $? "kill -9 point $i ($when): resumed to exit 0 (exit statuses:$RCS)"
	check_case "kill -9 point $i" events
done
diag "$killed of $POINTS kills landed before the run ended; repeats excused in all: $TOTAL_UNCOMMITTED received with no journal commit logged after them (the earliest ${MAX_MARGIN}s before its kill), $TOTAL_UNREAD not yet read"

# =====================================================================
# A kill after the journal has recorded responses: status and --dry-run.
# Page 3 waits at a gate, so the run is still going when the kill lands;
# pages 1 and 2 were answered (and committed) before page 3 was asked for.
case_dir journal
pipeline p.yaml "" "" crash-journal
mark
: >events
start run p.yaml
wait_until mock_gate_waiting crash-journal 1
ok $? "journal: page 3 is held by the mock API"
KT=$(now)
kill -KILL "$PID" 2>/dev/null
finish
KD=$(now)
RCS="$RC"
echo "kill $KT $KD $ERRLOG" >>events
is "$RC" 137 "journal: the run was killed while running"
"$PIPECTL" status >status.out 2>&1
grep -q '^journal: [1-9][0-9]* responses\? recorded' status.out
ok $? "journal: status shows \"journal:\" with a positive count ($(grep '^journal' status.out))"
grep -q '^resume of run 1 would:' status.out
ok $? "journal: status shows the resume plan"
mark_before=$(wc -l <"$MOCK_LOG")
"$PIPECTL" resume 1 --dry-run >dry.out 2>&1
is "$?" 0 "journal: resume --dry-run exits 0"
missing=""
for s in pages detail shape db file; do
	grep -q "^  $s " dry.out || missing="$missing $s"
done
is "$missing" "" "journal: --dry-run lists every stage"
grep -q 'journal' dry.out
ok $? "journal: --dry-run mentions the journal"
is "$(wc -l <"$MOCK_LOG")" "$mark_before" "journal: --dry-run sends no request"
is "$(state_summary | cut -d' ' -f2)" running "journal: --dry-run leaves the run as it was"
[ -f out.jsonl ]
is "$?" 1 "journal: no final file before the run succeeds"
mock_gate crash-journal open >/dev/null
resume_until_done events
ok $? "journal: resumed to exit 0 (exit statuses:$RCS)"
grep -q 'run 1 .*resumed' run.2.err
ok $? "journal: the resume says it continues run 1"
check_case "journal" events

# =====================================================================
# SIGINT and SIGTERM: a graceful stop commits the journal, so no repeat at all.
# Page 3 waits at a gate until the signal has been received, so the signal
# always lands in a running run, and the held page is answered while the run
# stops (it must be journaled, not lost).
for sig in INT TERM; do
	case_dir "sig$sig"
	want=130
	[ $sig = TERM ] && want=143
	pipeline p.yaml "" "" "crash-sig$sig"
	mark
	: >events
	start run p.yaml
	wait_until mock_gate_waiting "crash-sig$sig" 1
	ok $? "SIG$sig: page 3 is held by the mock API"
	kill -s $sig "$PID"
	wait_until grep -qs "SIG$sig received" "$ERRLOG"
	ok $? "SIG$sig: pipectl says it is stopping"
	mock_gate "crash-sig$sig" open >/dev/null
	finish
	RCS="$RC"
	is "$RC" $want "SIG$sig while page 3 is in flight: exit $want"
	echo "end $(now) $ERRLOG" >>events
	resume_until_done events
	ok $? "SIG$sig: resumed to exit 0 (exit statuses:$RCS)"
	check_case "SIG$sig" events
	is "$EXCUSED_END" 0 "SIG$sig: no request was cut off by the stop"
done

# =====================================================================
# The API fails a page (attempts: 1, so the run fails); it recovers for the
# resume (fail=P fails only the first request for page P).
case_dir apifail
rnd
fp=$(awk -v r="$R" 'BEGIN { printf "%d", 2 + r * 10 }')
# total=60 and a fail= parameter the server has not seen in this test.
pipeline p.yaml "&fail=$fp" "{attempts: 1}"
mark
: >events
start run p.yaml
finish
RCS="$RC"
is "$RC" 1 "API fails page $fp: exit 1"
echo "end $(now) $ERRLOG" >>events
is "$(state_summary | cut -d' ' -f2)" failed "API fails page $fp: the run is recorded as failed"
resume_until_done events
ok $? "API fails page $fp, then recovers: resumed to exit 0 (exit statuses:$RCS)"
check_case "API fails page $fp" events
is "$($PY -c '
import json, sys
n = 0
for l in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]:
    d = json.loads(l)
    if d["path"] == "/pages" and "page=%s&" % sys.argv[3] in d["query"]:
        print(d["status"], end=" ")
' "$MOCK_LOG" "$MARK" "$fp")" "503 200 " "API fails page $fp: the server saw it fail, then succeed once"

"$PIPECTL" resume 1 >again.out 2>&1
is "$?" 0 "resuming a run that succeeded exits 0"
grep -q 'already succeeded' again.out
ok $? "resuming a run that succeeded says so"

done_testing
