#!/bin/sh
# make bench: pipectl against the tools its users would pick instead, in
# interleaved rounds (references, then pipectl, on the same inputs in the
# same round); prints one table of medians and writes it to
# bench/out/results.md. The work is done by bench.py; see its header for
# the BENCH_* variables and README.md ("Performance") for what each row
# means. References that are not installed are reported and skipped.
set -eu
: "${PIPECTL:?}" "${MOCKAPI:?}" "${RUNSTAT:?}"
here=$(cd "$(dirname "$0")" && pwd)
export PIPECTL MOCKAPI RUNSTAT
exec /usr/bin/python3 "$here/bench.py"
