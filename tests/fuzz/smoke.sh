#!/bin/sh
# tests/fuzz/smoke.sh SRCDIR BUILDDIR TARGET...: `make fuzz-smoke`. Runs each
# libFuzzer target for FUZZ_TIME seconds (default 25) from its seed corpus
# and prints executions and executions per second, then "# PASS:  N" and
# "# FAIL:  N" lines as automake's test driver does. Exits 1 when any target
# crashed, leaked, hit undefined behaviour, timed out on an input or failed
# a check; the input that did it is kept as tests/fuzz/out/TARGET/crash-*
# (or leak-*, timeout-*) in the build directory. Corpora are rebuilt from
# scratch on every run (tests/config/ and pipelines/ for fuzz_config,
# tests/fuzz/seeds/TARGET/ for the others). Then fuzz_config replays its
# seeds once with libjq really compiling (PIPECTL_FUZZ_JQ=real), so the
# stubbed path and the real one both run.
set -u
srcdir=$1
builddir=$2
shift 2
time=${FUZZ_TIME:-25}
status=0
passed=0
failed=0

# run OUTDIR TARGET JQMODE ARGS...: one libFuzzer run, its output in
# OUTDIR/log; JQMODE is PIPECTL_FUZZ_JQ (stub or real).
run() {
	dir=$1
	bin=$builddir/$2
	jq=$3
	shift 3
	# With libjq really compiling, its parser's known leaks are suppressed by
	# function name, which needs whole malloc stacks (libjq keeps no frame
	# pointers, so the fast unwinder stops inside it).
	unwind=
	[ "$jq" = real ] && unwind=:fast_unwind_on_malloc=0
	PIPECTL_FUZZ_JQ=$jq \
	ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0$unwind \
	LSAN_OPTIONS=suppressions=$srcdir/tests/fuzz/lsan.supp \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$bin" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$dir/" "$@" >"$dir/log" 2>&1
}

# report NAME OUTDIR STATUS TEXT
report() {
	if [ "$3" -eq 0 ]; then
		passed=$((passed + 1))
		echo "PASS: $1: $4"
	else
		status=1
		failed=$((failed + 1))
		echo "FAIL: $1: libFuzzer exit status $3 (log: $2/log)"
		ls "$2"/crash-* "$2"/leak-* "$2"/timeout-* "$2"/oom-* 2>/dev/null | sed 's/^/  input: /'
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*fuzz check failed|.*runtime error)' "$2/log" |
			head -n 5 | sed 's/^/  /'
	fi
}

for target in "$@"; do
	name=$(basename "$target")
	out=$builddir/tests/fuzz/out/$name
	rm -rf "$out"
	mkdir -p "$out/corpus" "$out/seeds"
	dict=
	case $name in
	fuzz_config)
		for f in "$srcdir"/tests/config/invalid/*/pipeline.yaml; do
			case_name=$(basename "$(dirname "$f")")
			cp "$f" "$out/seeds/invalid_$case_name.yaml"
		done
		for f in "$srcdir"/tests/config/valid/*.yaml "$srcdir"/pipelines/*.yaml; do
			cp "$f" "$out/seeds/$(basename "$f")"
		done
		dict=-dict=$srcdir/tests/fuzz/pipeline.dict
		;;
	*)
		cp "$srcdir/tests/fuzz/seeds/$name"/* "$out/seeds/"
		;;
	esac
	run "$out" "$target" "${PIPECTL_FUZZ_JQ:-stub}" -max_total_time="$time" $dict "$out/corpus" "$out/seeds"
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/log" | tail -n 1)
	cov=$(sed -n 's/^#[0-9]*.*DONE *cov: \([0-9]*\).*/\1/p' "$out/log" | tail -n 1)
	units=$(find "$out/corpus" -type f | wc -l)
	report "$name" "$out" $rc \
		"${execs:-?} execs in ${time}s, ${rate:-?} execs/s, cov ${cov:-?}, $units new corpus inputs"

	if [ "$name" = fuzz_config ]; then
		mkdir -p "$out/real"
		run "$out/real" "$target" real -runs=0 "$out/seeds"
		rc=$?
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/real/log" | tail -n 1)
		report "$name (PIPECTL_FUZZ_JQ=real, seeds)" "$out/real" $rc "${execs:-?} inputs"
	fi
done
# The summary lines of automake's test driver, for scripts that add them up.
echo "# TOTAL: $((passed + failed))"
echo "# PASS:  $passed"
echo "# FAIL:  $failed"
exit $status
