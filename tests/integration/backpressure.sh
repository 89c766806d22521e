#!/bin/sh
# Backpressure: a JSON-lines source feeding a jq transform and a SQLite sink
# (slower than the reader) runs in about the same peak RSS for a 10x larger
# input. Without pausing the source, the queued records would make memory
# grow with the input. Compares the two runs' ratio, never wall time.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

gen() { # gen N FILE
	/usr/bin/python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write('{"id":%d,"name":"record number %d","price":%d.99,"tags":["a","b","c"],"note":"%s"}\n' % (i, i, i % 1000, "x" * 200))
PY
}
gen 30000 small.jsonl
gen 300000 large.jsonl

mk() { # mk NAME INPUT
	cat >"$1.yaml" <<YAML
pipeline: $1
settings: { queue: 2000, batch_size: 250 }
stages:
  src:
    fetch: { file: $2, format: jsonl }
  shape:
    needs: src
    transform: { jq: '{id, name, price, ntags: (.tags | length), note}' }
  db:
    needs: shape
    load:
      sqlite: { path: $1.db, table: t, key: id }
YAML
}
mk small small.jsonl
mk large large.jsonl

# Peak RSS of a child in KiB, and its exit status. In a sanitizer build,
# ASan keeps freed memory in a quarantine of up to 256 MiB, which a larger
# input fills further (more records freed): it is shrunk here so that the
# peak measures what pipectl holds, not what ASan holds back.
rss() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4:thread_local_quarantine_size_kb=64" \
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
is "$small_rc" 0 "small input: run succeeds"
is "$large_rc" 0 "large input (10x): run succeeds"
is "$(sq large.db 'SELECT count(*) FROM t')" 300000 "large input: every record loaded"
diag "peak RSS: small ${small_rss} KiB, large ${large_rss} KiB"
# The large input is ~75 MB of JSON; if it were queued, RSS would grow by
# hundreds of MiB. Allow 50% plus 16 MiB for allocator noise.
limit=$((small_rss * 3 / 2 + 16384))
ok "$([ "$large_rss" -le "$limit" ]; echo $?)" \
	"peak RSS does not grow with input size (${large_rss} <= ${limit} KiB)"

done_testing
