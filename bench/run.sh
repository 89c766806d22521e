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

# 3. Faults: 20% of the URLs answer 503 once, 5% answer 429 with
#    Retry-After: 1 once; 3 attempts, exponential backoff from 100 ms.
#    Reports wall time and how many requests the server saw.
/usr/bin/python3 - "$requests" "$port" <<'PY'
import sys
n, port = int(sys.argv[1]), sys.argv[2]
with open("faults.yaml", "w") as f:
    f.write("pipeline: bench-faults\nsettings: { concurrency: 64 }\n"
            "defaults:\n  concurrency: 64\n"
            "  retry: { attempts: 3, backoff: exponential, initial: 100ms, max: 5s,"
            " jitter: full, retry_on: [connect, timeout, network, 5xx, 429] }\n"
            "stages:\n  api:\n    fetch:\n      url:\n")
    for i in range(1, n + 1):
        if i % 20 < 4:      # 20%: one 503 first
            f.write("        - http://127.0.0.1:%s/seq/f%d?codes=503,200\n" % (port, i))
        elif i % 20 == 4:   # 5%: one 429 with Retry-After: 1 first
            f.write("        - http://127.0.0.1:%s/seq/f%d?codes=429,200&retry_after=1\n" % (port, i))
        else:
            f.write("        - http://127.0.0.1:%s/json/%d\n" % (port, i))
    f.write("      records: '{id: ((.id // .name) | tostring), attempt}'\n"
            "  db:\n    needs: api\n    load:\n"
            "      sqlite: { path: faults.db, table: items, key: id }\n")
PY
served() {
	/usr/bin/python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen("http://127.0.0.1:%s/stats" % sys.argv[1]))["requests"])' "$port"
}
before=$(served)
measure faults-sqlite requests "$requests" "$PIPECTL" run --state "$out/state.db" faults.yaml
after=$(served)
loaded=$(sqlite3 faults.db 'SELECT count(*) FROM items')
echo "bench faults-sqlite    server saw $((after - before)) requests for $requests URLs" \
     "(expected $((requests + requests / 4))); $loaded records loaded"
