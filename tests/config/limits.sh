#!/bin/sh
# tests/config/limits.sh: pipeline files of the largest sizes pipectl accepts.
# Mappings of 100,000 keys (params, headers, stages chained by needs,
# duplicated keys) validate, with every duplicate reported; a file above the
# documented maximum of 16 MiB, or an endless stream, is refused with
# "file: file too large: ..." and exit status 2. Reading these files used to
# compare each key with every other one (minutes of CPU at this size); no check
# here measures time: each pipectl runs under a generous CPU-time ceiling
# (ulimit -t) only so that a quadratic regression fails instead of hanging.

. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

N=100000
CPU=120                 # seconds of CPU per command: a safety net, not a bound

# validate FILE: runs pipectl validate under the CPU ceiling; sets RC, OUT, ERR.
validate() {
	(ulimit -t $CPU && exec "$PIPECTL" validate "$1") >out 2>err
	RC=$?
	OUT=$(cat out)
	ERR=$(head -c 2000 err)
}

# validates FILE STAGES WHAT [WHAT-FOR-EXIT]: FILE validates, exit 0 and
# "FILE: ok (STAGES stages)"; the cases are named after WHAT (the exit
# status one after WHAT-FOR-EXIT when given).
validates() {
	validate "$1"
	is "$RC" 0 "${4:-$3}: exit 0"
	is "$OUT" "$1: ok ($2 stages)" "$3: ok"
	[ -z "$ERR" ] || diag "$ERR"
}

awk -v n=$N 'BEGIN {
	print "pipeline: params"
	print "params:"
	for (i = 0; i < n; i++) printf "  p%d: v%d\n", i, i
	print "stages:\n  a:\n    fetch: {url: \"http://example.com/${params.p99999}\"}"
}' >params.yaml
validates params.yaml 1 "$N params"

awk -v n=$N 'BEGIN {
	print "pipeline: headers\nstages:\n  a:\n    fetch:\n      url: http://example.com/\n      headers:"
	for (i = 0; i < n; i++) printf "        X-H%d: v%d\n", i, i
}' >headers.yaml
validates headers.yaml 1 "$N headers"

awk -v n=$N 'BEGIN {
	print "pipeline: chain\nstages:\n  s0:\n    fetch: {url: http://example.com/}"
	for (i = 1; i < n; i++) printf "  s%d:\n    needs: s%d\n    transform: {jq: .}\n", i, i - 1
}' >stages.yaml
validates stages.yaml $N "$N stages" "$N stages, each needing the one before"

# Every key twice: each second copy is reported once, pointing at the first.
awk -v n=$N 'BEGIN {
	print "pipeline: dups\nparams:"
	for (i = 0; i < n / 2; i++) printf "  p%d: 1\n", i
	for (i = 0; i < n / 2; i++) printf "  p%d: 2\n", i
	print "stages:\n  a:\n    fetch: {url: http://example.com/}"
}' >dups.yaml
validate dups.yaml
is "$RC" 2 "$N keys, each twice: exit 2"
is "$(grep -c 'duplicate key' err)" $((N / 2)) "$N keys, each twice: every second copy is reported"
is "$(sed -n '1p;$p' err)" "dups.yaml:$((N / 2 + 3)):3: duplicate key \"p0\" (first defined at line 3)
dups.yaml:$((N + 2)):3: duplicate key \"p$((N / 2 - 1))\" (first defined at line $((N / 2 + 2)))" \
	"$N keys, each twice: in file order, each naming the line of the first copy"

# The documented maximum: 16 MiB. Exactly that much is read (and rejected
# for what it holds: here a comment, so an empty file); one byte more is not.
max=$((16 * 1024 * 1024))
awk -v n=$max 'BEGIN { s = "#"; while (length(s) < 65536) s = s s; s = substr(s, 1, 65535) "\n"
	for (i = 0; i + 65536 <= n; i += 65536) printf "%s", s }' >max.yaml
is "$(wc -c <max.yaml | tr -d ' ')" $max "max.yaml is 16 MiB"
validate max.yaml
is "$RC.$ERR" "2.max.yaml:1:1: empty pipeline file" "a file of exactly 16 MiB is read"
printf '#' >>max.yaml
validate max.yaml
is "$RC.$ERR" "2.max.yaml: file too large: a pipeline file may hold at most 16 MiB (16777216 bytes)" \
	"a file of 16 MiB and one byte: file too large, exit 2"

# A stream with no size to look up, like /dev/zero (which pipectl now refuses
# the same way): 64 MiB of zero bytes through a FIFO, so that a regression
# reads a bounded amount instead of exhausting the machine's memory.
mkfifo zero.fifo || exit 1
head -c $((64 * 1024 * 1024)) /dev/zero >zero.fifo 2>/dev/null &
T_PIDS="$T_PIDS $!"
validate zero.fifo
is "$RC.$ERR" "2.zero.fifo: file too large: a pipeline file may hold at most 16 MiB (16777216 bytes)" \
	"an unsized stream of zero bytes: file too large, exit 2 (not out of memory)"

done_testing
