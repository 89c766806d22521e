#!/bin/sh
# make bench's own machinery (bench/): bench/runstat reports a command's
# exit status and its own peak RSS (not its parent's, which Linux carries
# across fork and exec), and the harness reports a pipectl that fails as
# FAILED and exits 1 instead of leaving the row out. Speed is not checked.
. "$TOP_SRCDIR/tests/lib.sh"
RUNSTAT="$TOP_BUILDDIR/bench/runstat"

"$RUNSTAT" "$T_TMP/st" sh -c 'exit 3'
is "$?" 3 "runstat exits with the command's status"
is "$(sed -n 's/^status //p' "$T_TMP/st")" 768 "and writes its wait status"
wall=$(sed -n 's/^wall_ns //p' "$T_TMP/st")
[ "${wall:-0}" -gt 0 ]
ok $? "and its wall time"

"$RUNSTAT" "$T_TMP/st" sh -c 'kill -TERM $$'
is "$?" 143 "a command killed by a signal: 128 + the signal"

# From a parent holding 200 MB: measured straight from the parent (what
# the harness did before), /bin/true seems to take 200 MB; through runstat
# it is /bin/true's own few.
out=$(/usr/bin/python3 - "$RUNSTAT" "$T_TMP/st" <<'PY'
import os, subprocess, sys
ballast = bytearray(200 * 1024 * 1024)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
p = subprocess.Popen(["/bin/true"])
_, _, ru = os.wait4(p.pid, 0)
p.returncode = 0
subprocess.check_call([sys.argv[1], sys.argv[2], "/bin/true"])
with open(sys.argv[2]) as f:
    own = int(dict(l.split() for l in f)["maxrss_kib"])
print(ru.ru_maxrss // 1024, own // 1024)
PY
)
set -- $out
[ "${1:-0}" -ge 200 ]
ok $? "straight from a 200 MB parent /bin/true reports the parent's RSS ($1 MB)"
[ "${2:-999}" -lt 16 ]
ok $? "through runstat it reports its own ($2 MB)"

# The harness: a failing pipectl is a FAILED row and exit 1.
bench() {
	PIPECTL="$1" RUNSTAT="$RUNSTAT" MOCKAPI="$MOCKAPI" BENCH_OUT="$T_TMP/out" \
	BENCH_ROUNDS=1 BENCH_ONLY=dag BENCH_DAG_STAGES=3 \
		/bin/sh "$TOP_SRCDIR/bench/run.sh" >"$T_TMP/bench.out" 2>"$T_TMP/bench.err"
}
bench /bin/false
is "$?" 1 "bench with a failing pipectl exits 1"
grep -q '^| dag 3 stages, validate | — | — | FAILED |' "$T_TMP/bench.out"
ok $? "and its validate row says FAILED"
grep -q '^FAILED dag validate: exit 1' "$T_TMP/bench.out"
ok $? "and names the failure"
bench "$PIPECTL"
is "$?" 0 "bench with pipectl exits 0"
grep -c '^| dag 3 stages' "$T_TMP/out/results.md" | grep -qx 4
ok $? "and writes its four DAG rows to results.md"
grep -q FAILED "$T_TMP/out/results.md"
is "$?" 1 "none of them FAILED"

done_testing
