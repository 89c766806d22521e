# tests/lib.sh: helpers for the end-to-end tests (sourced by tests/*/*.sh).
# Produces TAP: call ok/fail/is per case and done_testing at the end.
# Needs PIPECTL, MOCKAPI, TOP_SRCDIR (set by `make check`).

: "${PIPECTL:?PIPECTL is not set (run through make check)}"
: "${TOP_SRCDIR:?TOP_SRCDIR is not set}"

T_N=0
T_FAILED=0
T_PIDS=""

# A scratch directory per test script, removed at exit unless KEEP_TMP=1.
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/pipectl-test.XXXXXX")

t_cleanup() {
	for p in $T_PIDS; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	[ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T_TMP"
}
trap t_cleanup EXIT

ok() { # ok COND-STATUS DESCRIPTION  (pass the status of a test: ok $? "desc")
	T_N=$((T_N + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $T_N - $2"
	else
		echo "not ok $T_N - $2"
		T_FAILED=$((T_FAILED + 1))
	fi
}

is() { # is GOT WANT DESCRIPTION
	T_N=$((T_N + 1))
	if [ "$1" = "$2" ]; then
		echo "ok $T_N - $3"
	else
		echo "not ok $T_N - $3"
		printf '#   got:  %s\n#   want: %s\n' "$1" "$2" | sed '3,$s/^/#   /'
		T_FAILED=$((T_FAILED + 1))
	fi
}

diag() { printf '# %s\n' "$@"; }

done_testing() {
	echo "1..$T_N"
	[ "$T_FAILED" -eq 0 ]
	exit $?
}

# start_mockapi [ARGS...]: starts tests/mockapi on 127.0.0.1 on a free port;
# sets MOCK_PORT, MOCK_URL (http://127.0.0.1:PORT) and MOCK_LOG (request log).
start_mockapi() {
	: "${MOCKAPI:?MOCKAPI is not set}"
	MOCK_LOG="$T_TMP/mock.$T_N.$$.log"
	local pf="$T_TMP/mock.port.$$"
	rm -f "$pf"
	"$MOCKAPI" --port 0 --port-file "$pf" --log "$MOCK_LOG" "$@" &
	T_PIDS="$T_PIDS $!"
	MOCK_PID=$!
	local i=0
	# 60 s of trying, as wait_until: a sanitizer build on a loaded machine
	# can take seconds to start.
	while [ ! -s "$pf" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
	if [ ! -s "$pf" ]; then
		echo "Bail out! mockapi did not start"
		exit 1
	fi
	MOCK_PORT=$(cat "$pf")
	MOCK_URL="http://127.0.0.1:$MOCK_PORT"
}

stop_mockapi() {
	[ -n "${MOCK_PID:-}" ] || return 0
	kill "$MOCK_PID" 2>/dev/null
	wait "$MOCK_PID" 2>/dev/null
	MOCK_PID=
}

# sqlite3 wrapper: the sqlite3 CLI, in -batch mode.
sq() { sqlite3 -batch "$@"; }

# mock_gate NAME [open|close]: the state of the mock API's gate NAME (see
# tests/mockapi/README.md: a response to a request with ?gate=NAME is held
# until the gate opens), after opening or closing it when asked, as
# "open=BOOL waiting=N passed=M".
mock_gate() {
	/usr/bin/python3 - "$MOCK_URL/gate/$1${2:+/$2}" <<'PY'
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1], timeout=30))
print("open=%s waiting=%d passed=%d" % (str(d["open"]).lower(), d["waiting"], d["passed"]))
PY
}

# mock_gate_waiting NAME N: true when at least N responses wait at gate NAME.
mock_gate_waiting() {
	[ "$(mock_gate "$1" | sed 's/.*waiting=\([0-9]*\).*/\1/')" -ge "$2" ]
}

# wait_until CMD...: runs CMD until it succeeds (status 0), or fails after
# 60 s of trying. For conditions the test itself brings about (a gate that
# holds a request), not for guessing how long something takes.
wait_until() {
	local i=0
	while ! "$@"; do
		i=$((i + 1))
		[ $i -lt 1200 ] || return 1
		sleep 0.05
	done
}

# gate_arrived NAME N: true when N requests for gate NAME reached the mock
# (its request log has them as they are taken up, held or not).
gate_arrived() { [ "$(grep -c "\"query\":\"gate=$1\"" "$MOCK_LOG")" -ge "$2" ]; }

# gate_wait NAME N: waits until gate_arrived NAME N, or bails out.
gate_wait() {
	wait_until gate_arrived "$1" "$2" || { echo "Bail out! gate $1 never saw $2 requests"; exit 1; }
}

# case_dir NAME: a fresh directory per case (under T_TMP), made the current
# one, so each case has its own state database.
case_dir() {
	mkdir -p "$T_TMP/$1" && cd "$T_TMP/$1" || exit 1
}

# run_pl FILE [ARGS]: runs the pipeline (`pipectl run FILE ARGS`); RC is its
# exit status, ERR the file that holds its stderr.
run_pl() {
	ERR="$T_TMP/err.$T_N"
	"$PIPECTL" run "$@" >"$T_TMP/out.$T_N" 2>"$ERR"
	RC=$?
}

# stq SQL...: a query on the state database of the current directory;
# $LAST in it stands for the id of the latest run.
stq() { sq .pipectl/state.db "$@"; }
LAST='(SELECT max(id) FROM runs)'

# mark: later queries on the mock API's request log see only the requests
# logged after this point (MARK is the number of lines before it).
mark() { MARK=$(wc -l <"$MOCK_LOG"); }

# out_pl FILE NAME [NEEDS] <STAGES: writes FILE, the pipeline NAME of the
# stages read (YAML lines under stages:) and a stage out that loads NEEDS
# (default s) into out.jsonl.
out_pl() {
	{
		printf 'pipeline: %s\nstages:\n' "$2"
		cat
		printf '  out:\n    needs: %s\n    load:\n      file: {path: out.jsonl}\n' "${3:-s}"
	} >"$1"
}
