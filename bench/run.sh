#!/bin/sh
# make bench: throughput and peak RSS of pipectl on this machine.
#   1. 1,000,000-record JSON-lines file -> jq projection -> SQLite upsert
#   2. 20,000 small JSON documents from a local HTTP server (tests/mockapi)
#      at concurrency 64 -> SQLite
# Each scenario runs once; figures vary with the machine, so compare runs
# made on the same machine. BENCH_RECORDS / BENCH_REQUESTS scale them.
set -eu
: "${PIPECTL:?}" "${MOCKAPI:?}"
here=$(cd "$(dirname "$0")" && pwd)
out="${BENCH_OUT:-$here/out}"
records="${BENCH_RECORDS:-1000000}"
requests="${BENCH_REQUESTS:-20000}"
rm -rf "$out"
mkdir -p "$out"
cd "$out"

# measure NAME UNITS COUNT CMD...: wall time, units/s and peak RSS of CMD.
measure() {
	/usr/bin/python3 - "$@" <<'PY'
import resource, subprocess, sys, time
name, units, count, cmd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
t0 = time.monotonic()
rc = subprocess.call(cmd, stdout=subprocess.DEVNULL, stderr=open("bench-%s.log" % name, "w"))
dt = time.monotonic() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
if rc != 0:
    print("bench %-14s FAILED (exit %d), see %s/bench-%s.log" % (name, rc, sys.path[0] or ".", name))
    sys.exit(1)
print("bench %-14s %9d %-8s %8.2f s %12.0f %s/s   peak RSS %7.1f MiB"
      % (name, count, units, dt, count / dt, units, rss))
PY
}

echo "generating $records records..."
/usr/bin/python3 - "$records" <<'PY'
import sys
n = int(sys.argv[1])
with open("input.jsonl", "w") as f:
    for i in range(n):
        f.write('{"id":%d,"sku":"SKU-%07d","name":"Product %d","price":%d.%02d,"qty":%d,"tags":["x","y"],"meta":{"warehouse":"w%d","updated":"2026-11-25T00:00:00Z"}}\n'
                % (i, i, i, i % 500, i % 100, i % 37, i % 9))
PY
cat >jsonl.yaml <<'YAML'
pipeline: bench-jsonl
stages:
  src:
    fetch: { file: input.jsonl, format: jsonl }
  project:
    needs: src
    transform: { jq: '{id, sku, price, qty, warehouse: .meta.warehouse}' }
  db:
    needs: project
    load:
      sqlite: { path: jsonl.db, table: products, key: id }
YAML
measure jsonl-jq-sqlite records "$records" "$PIPECTL" run --state "$out/state.db" jsonl.yaml

pf="$out/mock.port"
"$MOCKAPI" --port 0 --port-file "$pf" --log /dev/null &
mock=$!
trap 'kill $mock 2>/dev/null' EXIT
i=0
while [ ! -s "$pf" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
port=$(cat "$pf")
/usr/bin/python3 - "$requests" "$port" <<'PY'
import sys
n, port = int(sys.argv[1]), sys.argv[2]
with open("http.yaml", "w") as f:
    f.write("pipeline: bench-http\nsettings: { concurrency: 64 }\n"
            "defaults: { concurrency: 64 }\nstages:\n  api:\n    fetch:\n      url:\n")
    for i in range(1, n + 1):
        f.write("        - http://127.0.0.1:%s/json/%d\n" % (port, i))
    f.write("      records: '{id, name, price, qty}'\n"
            "  db:\n    needs: api\n    load:\n"
            "      sqlite: { path: http.db, table: items, key: id }\n")
PY
measure http-sqlite requests "$requests" "$PIPECTL" run --state "$out/state.db" http.yaml
