#!/usr/bin/python3
# make bench: pipectl against the tools its users would pick instead, in
# interleaved rounds on one machine; see "Performance" in README.md.
#
# Each round runs every workload's references and then pipectl on the same
# inputs, so that a ratio compares runs made under the same load; the table
# shows medians over the rounds (the ratio is the median of the per-round
# ratios). Inputs are generated before the first round and not timed. Every
# run's output is checked (rows in the database, requests the server saw);
# a run that fails or loads the wrong data is FAILED, never left out.
# Every command runs under bench/runstat, which times it and takes its own
# peak RSS (see runstat.c for why not from here).
#
# Environment (run.sh passes it on):
#   PIPECTL, MOCKAPI,
#   RUNSTAT                the binaries (required; RUNSTAT is bench/runstat)
#   BENCH_OUT              work directory (default bench/out)
#   BENCH_ROUNDS           rounds (default 3)
#   BENCH_SCALE            multiplies the default sizes (default 1)
#   BENCH_RECORDS          bulk records (default 1,000,000 x scale)
#   BENCH_REQUESTS         http documents (default 20,000 x scale)
#   BENCH_FAULT_REQUESTS   faults URLs (default BENCH_REQUESTS)
#   BENCH_DAG_STAGES       DAG stages (default 10,000 x scale)
#   BENCH_START_RUNS       start-up runs per command and round (default 20)
#   BENCH_WRK_SECONDS      duration of each wrk run (default 3)
#   BENCH_BIG=1            also bulk at 10 x BENCH_RECORDS, pipectl only, once
#   BENCH_ONLY             comma-separated subset of bulk,http,faults,dag,startup
#   BENCH_TIMEOUT          seconds before a run is killed and FAILED (default 900)
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
WORKLOADS = ("bulk", "http", "faults", "dag", "startup")


def env_num(name, default, kind=int):
    v = os.environ.get(name, "")
    if v == "":
        return default
    try:
        n = kind(v)
    except ValueError:
        sys.exit("bench: %s=%r is not a number" % (name, v))
    if n <= 0:
        sys.exit("bench: %s must be positive" % name)
    return n


PIPECTL = os.environ.get("PIPECTL") or sys.exit("bench: PIPECTL is not set")
MOCKAPI = os.environ.get("MOCKAPI") or sys.exit("bench: MOCKAPI is not set")
RUNSTAT = os.environ.get("RUNSTAT") or sys.exit("bench: RUNSTAT (bench/runstat) is not set")
OUT = os.path.abspath(os.environ.get("BENCH_OUT") or os.path.join(HERE, "out"))
SCALE = env_num("BENCH_SCALE", 1.0, float)
ROUNDS = env_num("BENCH_ROUNDS", 3)
RECORDS = env_num("BENCH_RECORDS", max(1, round(1000000 * SCALE)))
REQUESTS = env_num("BENCH_REQUESTS", max(1, round(20000 * SCALE)))
FAULT_REQUESTS = env_num("BENCH_FAULT_REQUESTS", REQUESTS)
DAG_STAGES = env_num("BENCH_DAG_STAGES", max(2, round(10000 * SCALE)))
START_RUNS = env_num("BENCH_START_RUNS", 20)
WRK_SECONDS = env_num("BENCH_WRK_SECONDS", 3)
TIMEOUT = env_num("BENCH_TIMEOUT", 900.0, float)
BIG = os.environ.get("BENCH_BIG", "") == "1"
ONLY = [w for w in os.environ.get("BENCH_ONLY", "").split(",") if w] or list(WORKLOADS)
for w in ONLY:
    if w not in WORKLOADS:
        sys.exit("bench: BENCH_ONLY: unknown workload %r (known: %s)" % (w, ",".join(WORKLOADS)))
CONCURRENCY = 64
PY = "/usr/bin/python3"


def say(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def have(prog):
    return shutil.which(prog) is not None


def have_aiohttp():
    return subprocess.call([PY, "-c", "import aiohttp"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


class Run:
    """One timed run: ok, wall seconds, peak RSS (KiB) of that child, error."""

    def __init__(self, ok, secs, rss_kib, err="", out=""):
        self.ok, self.secs, self.rss_kib, self.err, self.out = ok, secs, rss_kib, err, out
        self.requests = None  # requests the server answered, where counted


def run(cmd, log, stdin=None, cwd=None, shell=False):
    """Run CMD (argv, or a sh -c string when SHELL) with stdout and stderr
    to LOG, under RUNSTAT, which times it and takes its peak RSS (for a
    shell string that is the shell's, so only argv runs report an RSS)."""
    logpath = os.path.join(OUT, "logs", log)
    statpath = logpath + ".stat"
    rm(statpath)
    argv = [RUNSTAT, statpath] + (["/bin/sh", "-c", cmd] if shell else cmd)
    with open(logpath, "wb") as lf:
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=fin, stdout=lf, stderr=lf, cwd=cwd or OUT,
                             start_new_session=True)
        killed = []

        def kill():
            killed.append(1)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = threading.Timer(TIMEOUT, kill)
        timer.daemon = True
        timer.start()
        try:
            p.wait()
        except BaseException:  # interrupted: take the run down with us
            kill()
            p.wait()
            raise
        finally:
            timer.cancel()
        secs = time.monotonic() - t0
        if stdin:
            fin.close()
    with open(logpath, "rb") as lf:
        out = lf.read(1 << 20).decode("utf-8", "replace")
    rel = shown(logpath)
    if killed:
        return Run(False, secs, 0, "killed after %gs (BENCH_TIMEOUT), see %s" % (TIMEOUT, rel), out)
    try:
        with open(statpath) as f:
            stat = dict(line.split() for line in f if line.strip())
        secs, rss = int(stat["wall_ns"]) / 1e9, int(stat["maxrss_kib"])
    except (OSError, KeyError, ValueError):
        return Run(False, secs, 0, "runstat wrote no result (exit %d), see %s" % (p.returncode, rel), out)
    if p.returncode != 0:
        return Run(False, secs, rss, "exit %d, see %s" % (p.returncode, rel), out)
    return Run(True, secs, rss, "", out)


def shown(path):
    """PATH relative to the source tree when inside it."""
    rel = os.path.relpath(path, SRCDIR)
    return path if rel.startswith("..") else rel


def check(r, cond, msg):
    """Fail R (in place) unless COND; returns R."""
    if r.ok and not cond:
        r.ok, r.err = False, msg
    return r


def db_query(path, sql):
    try:
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        try:
            return con.execute(sql).fetchone()
        finally:
            con.close()
    except sqlite3.Error as e:
        return ("error: %s" % e,)


def rm(*paths):
    for p in paths:
        for q in (p, p + "-wal", p + "-shm", p + "-journal"):
            if os.path.exists(q):
                os.remove(q)


# ---------------------------------------------------------------- results
# results[(workload, tool)] = [Run per round]
results = {}


def record(workload, tool, r, rnd):
    results.setdefault((workload, tool), []).append(r)
    if r.ok:
        extra = "  peak RSS %.1f MiB" % (r.rss_kib / 1024) if tool == "pipectl" else ""
        say("round %d %-8s %-28s %9.3f s%s" % (rnd, workload, tool, r.secs, extra))
    else:
        say("round %d %-8s %-28s FAILED: %s" % (rnd, workload, tool, r.err))


# ---------------------------------------------------------------- bulk
BULK_TABLE = ("CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT, price REAL,"
              " qty INTEGER, warehouse TEXT)")
BULK_JQ = "{id, sku, price, qty, warehouse: .meta.warehouse}"


def bulk_generate(n, jsonl, csv):
    """The input records and, for .import, the same rows projected as CSV.
    Returns (sum(qty), sum(price in cents)), which every loaded table must
    reproduce."""
    qty_sum = cents = 0
    with open(jsonl, "w") as fj, (open(csv, "w") if csv else open(os.devnull, "w")) as fc:
        for i in range(n):
            price = "%d.%02d" % (i % 500, i % 100)
            qty = i % 37
            qty_sum += qty
            cents += (i % 500) * 100 + i % 100
            fj.write('{"id":%d,"sku":"SKU-%07d","name":"Product %d","price":%s,"qty":%d,'
                     '"tags":["x","y"],"meta":{"warehouse":"w%d","updated":"2026-11-25T00:00:00Z"}}\n'
                     % (i, i, i, price, qty, i % 9))
            if csv:
                fc.write("%d,SKU-%07d,%s,%d,w%d\n" % (i, i, price, qty, i % 9))
    return qty_sum, cents


def bulk_yaml(path, src, db):
    with open(path, "w") as f:
        f.write("pipeline: bench-bulk\nstages:\n"
                "  src:\n    fetch: { file: %s, format: jsonl }\n"
                "  project:\n    needs: src\n    transform: { jq: '%s' }\n"
                "  db:\n    needs: project\n    load:\n"
                "      sqlite: { path: %s, table: products, key: id }\n" % (src, BULK_JQ, db))


def bulk_check(r, db, n, sums):
    row = db_query(db, "SELECT count(*), sum(qty), sum(CAST(round(price * 100) AS INTEGER)),"
                   " count(DISTINCT warehouse) FROM products")
    want = (n, sums[0], sums[1], min(n, 9))
    check(r, tuple(row) == want,
          "%s holds (rows, sum(qty), sum(price in cents), warehouses) = %r, expected %r"
          % (os.path.basename(db), tuple(row), want))
    rm(db)
    return r


def bulk_setup():
    say("bulk: generating %d records (JSON lines and the same rows as CSV)..." % RECORDS)
    qs = bulk_generate(RECORDS, os.path.join(OUT, "bulk.jsonl"), os.path.join(OUT, "bulk.csv"))
    bulk_yaml(os.path.join(OUT, "bulk.yaml"), "bulk.jsonl", "bulk-pipectl.db")
    with open(os.path.join(OUT, "bulk-import.sql"), "w") as f:
        f.write(BULK_TABLE + ";\n.import --csv bulk.csv products\n")
    return qs


def bulk_round(rnd, qs):
    db = os.path.join(OUT, "bulk-import.db")
    rm(db)
    record("bulk", "import", bulk_check(run(["sqlite3", db], "bulk-import.log",
                                            stdin=os.path.join(OUT, "bulk-import.sql")),
                                        db, RECORDS, qs), rnd)
    if have("jq"):
        db = os.path.join(OUT, "bulk-jq.db")
        rm(db)
        cmd = ("jq -r '%s | [.id, .sku, .price, .qty, .warehouse] | @csv' bulk.jsonl"
               " | sqlite3 -cmd '%s' bulk-jq.db '.import --csv /dev/stdin products'"
               % (BULK_JQ, BULK_TABLE))
        record("bulk", "jq", bulk_check(run(cmd, "bulk-jq.log", shell=True), db, RECORDS, qs), rnd)
    db = os.path.join(OUT, "bulk-python.db")
    rm(db)
    record("bulk", "python", bulk_check(run([PY, os.path.join(HERE, "ref", "bulk.py"), "bulk.jsonl", db],
                                            "bulk-python.log"), db, RECORDS, qs), rnd)
    db = os.path.join(OUT, "bulk-pipectl.db")
    state = os.path.join(OUT, "bulk-state.db")
    rm(db, state)
    r = run([PIPECTL, "run", "-q", "--state", state, "bulk.yaml"], "bulk-pipectl.log")
    record("bulk", "pipectl", bulk_check(r, db, RECORDS, qs), rnd)
    rm(state)


def bulk_big():
    n = RECORDS * 10
    say("bulk x10: generating %d records..." % n)
    qs = bulk_generate(n, os.path.join(OUT, "bulk10.jsonl"), None)
    bulk_yaml(os.path.join(OUT, "bulk10.yaml"), "bulk10.jsonl", "bulk10-pipectl.db")
    db, state = os.path.join(OUT, "bulk10-pipectl.db"), os.path.join(OUT, "bulk10-state.db")
    rm(db, state)
    r = run([PIPECTL, "run", "-q", "--state", state, "bulk10.yaml"], "bulk10-pipectl.log")
    record("bulk10", "pipectl", bulk_check(r, db, n, qs), 1)
    rm(state)
    os.remove(os.path.join(OUT, "bulk10.jsonl"))


# ---------------------------------------------------------------- servers
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


class Server:
    """The HTTP server the http workload runs against: nginx when installed,
    else tests/mockapi. Both serve /json/ID; served() counts requests."""

    def __init__(self, kind, proc, port, status_url):
        self.kind, self.proc, self.port, self.status_url = kind, proc, port, status_url
        self.polls = 0

    def served(self):
        body = http_get(self.status_url)
        if self.kind == "nginx":
            # "server accepts handled requests\n A H R": R counts the
            # status requests made before this one too.
            self.polls += 1
            return int(body.split("\n")[2].split()[2]) - (self.polls - 1)
        return json.loads(body)["requests"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.kind == "mockapi" else signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_up(url, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit("bench: %s exited at start (exit %d), see bench/out/logs" % (what, proc.returncode))
        try:
            http_get(url, 1)
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("bench: %s did not answer %s" % (what, url))


def start_mockapi():
    pf = os.path.join(OUT, "mockapi.port")
    log = open(os.path.join(OUT, "logs", "mockapi.log"), "wb")
    proc = subprocess.Popen([MOCKAPI, "--port", "0", "--port-file", pf, "--log", "/dev/null"],
                            stdout=log, stderr=log)
    for _ in range(200):
        if os.path.exists(pf) and os.path.getsize(pf) > 0:
            break
        if proc.poll() is not None:
            sys.exit("bench: mockapi exited at start, see bench/out/logs/mockapi.log")
        time.sleep(0.05)
    port = int(open(pf).read())
    srv = Server("mockapi", proc, port, "http://127.0.0.1:%d/stats" % port)
    wait_up(srv.status_url, proc, "mockapi")
    return srv


# One worker process: the clients measured (pipectl, wrk -t1, curl, the
# aiohttp loop) each run one event loop on one core, so one nginx worker on
# the other core serves them without the server and the client fighting for
# both cores, and every client meets the same server.
NGINX_CONF = """daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {www};
        location = /nginx_status {{ stub_status; }}
    }}
}}
"""


def start_nginx(n):
    d = os.path.join(OUT, "nginx")
    www = os.path.join(OUT, "www")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    os.makedirs(os.path.join(www, "json"), exist_ok=True)
    for i in range(1, n + 1):
        with open(os.path.join(www, "json", str(i)), "w") as f:
            f.write('{"id":%d,"name":"item-%d","price":19.99,"qty":3,"tags":["a","b"]}' % (i, i))
    os.chmod(OUT, 0o755)
    for attempt in range(5):
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=d, www=www, port=port))
        log = open(os.path.join(OUT, "logs", "nginx.log"), "wb")
        proc = subprocess.Popen(["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                                stdout=log, stderr=log)
        srv = Server("nginx", proc, port, "http://127.0.0.1:%d/nginx_status" % port)
        try:
            wait_up(srv.status_url, proc, "nginx")
            return srv
        except SystemExit:
            if attempt == 4:
                raise
            srv.stop()  # the port was taken meanwhile: another one


# ---------------------------------------------------------------- http
HTTP_TABLE = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, qty INTEGER)"
WRK_LUA = """-- cycles through the documents /json/1 .. /json/{n}
local i = 0
request = function()
  i = i % {n} + 1
  return wrk.format("GET", "/json/" .. i)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests %d duration_us %d errors %d\\n", summary.requests,
    summary.duration, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def http_setup(srv):
    base = "http://127.0.0.1:%d" % srv.port
    urls = ["%s/json/%d" % (base, i) for i in range(1, REQUESTS + 1)]
    with open(os.path.join(OUT, "http.urls"), "w") as f:
        f.write("".join(u + "\n" for u in urls))
    with open(os.path.join(OUT, "http.curl"), "w") as f:
        f.write("".join('url = "%s"\n' % u for u in urls))
    with open(os.path.join(OUT, "http.lua"), "w") as f:
        f.write(WRK_LUA.replace("{n}", str(REQUESTS)))
    with open(os.path.join(OUT, "http.yaml"), "w") as f:
        f.write("pipeline: bench-http\nsettings: { concurrency: %d }\n"
                "defaults: { concurrency: %d }\nstages:\n  api:\n    fetch:\n      url:\n"
                % (CONCURRENCY, CONCURRENCY))
        f.write("".join("        - %s\n" % u for u in urls))
        f.write("      records: '{id, name, price, qty}'\n"
                "  db:\n    needs: api\n    load:\n"
                "      sqlite: { path: http-pipectl.db, table: items, key: id }\n")


def http_check(r, srv, before, db, n):
    served = srv.served() - before
    r.requests = served
    check(r, served == n, "the server answered %d requests, expected %d" % (served, n))
    if db:
        row = db_query(db, "SELECT count(*), count(DISTINCT id), sum(qty) FROM items")
        check(r, tuple(row) == (n, n, 3 * n), "%s holds (rows, ids, sum(qty)) = %r, expected %r"
              % (os.path.basename(db), tuple(row), (n, n, 3 * n)))
        rm(db)
    return r


def http_round(rnd, srv):
    if have("wrk"):
        before = srv.served()
        r = run(["wrk", "-t1", "-c%d" % CONCURRENCY, "-d%ds" % WRK_SECONDS, "-s", "http.lua",
                 "http://127.0.0.1:%d/" % srv.port], "http-wrk.log")
        served = srv.served() - before
        line = [l.split() for l in r.out.splitlines() if l.startswith("BENCH requests")]
        if r.ok and not line:
            check(r, False, "no summary from wrk, see bench/out/logs/http-wrk.log")
        if r.ok:
            reqs, dur, errs = int(line[0][2]), int(line[0][4]), int(line[0][6])
            check(r, reqs > 0 and errs == 0, "wrk: %d requests, %d errors" % (reqs, errs))
            # wrk counts the requests answered within -d; the server also sees
            # those still in flight when it stops.
            check(r, reqs <= served <= reqs + CONCURRENCY,
                  "wrk reports %d requests, the server answered %d" % (reqs, served))
            if r.ok:
                # Its rate over the run, as the time it takes for our documents.
                r.secs = REQUESTS * (dur / 1e6) / reqs
                r.requests = reqs
        record("http", "wrk", r, rnd)
    if have("curl") and have("jq"):
        db = os.path.join(OUT, "http-curl.db")
        rm(db)
        before = srv.served()
        cmd = ("curl -sS --parallel --parallel-immediate --parallel-max %d -K http.curl"
               " | jq -r '[.id, .name, .price, .qty] | @csv'"
               " | sqlite3 -cmd '%s' http-curl.db '.import --csv /dev/stdin items'"
               % (CONCURRENCY, HTTP_TABLE))
        record("http", "curl", http_check(run(cmd, "http-curl.log", shell=True), srv, before, db,
                                          REQUESTS), rnd)
    if have_aiohttp():
        db = os.path.join(OUT, "http-aiohttp.db")
        rm(db)
        before = srv.served()
        r = run([PY, os.path.join(HERE, "ref", "fetch_aiohttp.py"), "http.urls", db, "http",
                 str(CONCURRENCY)], "http-aiohttp.log")
        record("http", "aiohttp", http_check(r, srv, before, db, REQUESTS), rnd)
    db, state = os.path.join(OUT, "http-pipectl.db"), os.path.join(OUT, "http-state.db")
    rm(db, state)
    before = srv.served()
    r = run([PIPECTL, "run", "-q", "--state", state, "http.yaml"], "http-pipectl.log")
    record("http", "pipectl", http_check(r, srv, before, db, REQUESTS), rnd)
    rm(state)


# ---------------------------------------------------------------- faults
def fault_urls(port, prefix):
    """Every URL is a /seq name of its own (unique per round and client):
    20 % answer 503 once, 5 % 429 with Retry-After: 1 once, then 200."""
    urls, expected = [], 0
    for i in range(1, FAULT_REQUESTS + 1):
        base = "http://127.0.0.1:%d/seq/%s-%d" % (port, prefix, i)
        if i % 20 < 4:
            urls.append(base + "?codes=503,200")
            expected += 2
        elif i % 20 == 4:
            urls.append(base + "?codes=429,200&retry_after=1")
            expected += 2
        else:
            urls.append(base + "?codes=200")
            expected += 1
    return urls, expected


def faults_check(r, mock, before, db, expected):
    served = mock.served() - before
    r.requests = served
    check(r, served == expected, "the server answered %d requests, expected %d" % (served, expected))
    row = db_query(db, "SELECT count(*), sum(attempt) FROM items")
    want = (FAULT_REQUESTS, expected)
    check(r, tuple(row) == want, "%s holds (rows, sum(attempt)) = %r, expected %r"
          % (os.path.basename(db), tuple(row), want))
    rm(db)
    return r


def faults_round(rnd, mock):
    if have_aiohttp():
        urls, expected = fault_urls(mock.port, "r%da" % rnd)
        with open(os.path.join(OUT, "faults.urls"), "w") as f:
            f.write("".join(u + "\n" for u in urls))
        db = os.path.join(OUT, "faults-aiohttp.db")
        rm(db)
        before = mock.served()
        r = run([PY, os.path.join(HERE, "ref", "fetch_aiohttp.py"), "faults.urls", db, "faults",
                 str(CONCURRENCY)], "faults-aiohttp.log")
        record("faults", "aiohttp", faults_check(r, mock, before, db, expected), rnd)
    urls, expected = fault_urls(mock.port, "r%dp" % rnd)
    with open(os.path.join(OUT, "faults.yaml"), "w") as f:
        f.write("pipeline: bench-faults\nsettings: { concurrency: %d }\n"
                "defaults:\n  concurrency: %d\n"
                "  retry: { attempts: 3, backoff: exponential, initial: 100ms, max: 5s,"
                " jitter: full, retry_on: [connect, timeout, network, 5xx, 429] }\n"
                "stages:\n  api:\n    fetch:\n      url:\n" % (CONCURRENCY, CONCURRENCY))
        f.write("".join("        - %s\n" % u for u in urls))
        f.write("      records: '{name, attempt}'\n"
                "  db:\n    needs: api\n    load:\n"
                "      sqlite: { path: faults-pipectl.db, table: items, key: name }\n")
    db, state = os.path.join(OUT, "faults-pipectl.db"), os.path.join(OUT, "faults-state.db")
    rm(db, state)
    before = mock.served()
    r = run([PIPECTL, "run", "-q", "--state", state, "faults.yaml"], "faults-pipectl.log")
    record("faults", "pipectl", faults_check(r, mock, before, db, expected), rnd)
    rm(state)


# ---------------------------------------------------------------- dag
def dag_setup():
    """A binary tree of DAG_STAGES stages: s0 reads one record, s(i) needs
    s((i-1)/2) and passes it on with jq '.'. A tree, so that every stage
    sees exactly one record. The Makefiles have the same graph."""
    n = DAG_STAGES
    with open(os.path.join(OUT, "dag.jsonl"), "w") as f:
        f.write('{"x":1}\n')
    with open(os.path.join(OUT, "dag.yaml"), "w") as f:
        f.write("pipeline: bench-dag\nstages:\n  s0:\n    fetch: { file: dag.jsonl, format: jsonl }\n")
        f.write("".join("  s%d:\n    needs: s%d\n    transform: { jq: . }\n" % (i, (i - 1) // 2)
                        for i in range(1, n)))
    names = " ".join("s%d" % i for i in range(n))
    for kind, recipe in (("empty", " ;\n"), ("colon", "\n\t@:\n")):
        with open(os.path.join(OUT, "dag-%s.mk" % kind), "w") as f:
            f.write(".PHONY: all %s\nall: %s\ns0:%s" % (names, names, recipe))
            f.write("".join("s%d: s%d%s" % (i, (i - 1) // 2, recipe) for i in range(1, n)))


def dag_round(rnd):
    if have("make"):
        for kind in ("empty", "colon"):
            record("dag", "make-" + kind, run(["make", "-j2", "-s", "-f", "dag-%s.mk" % kind],
                                              "dag-make-%s.log" % kind), rnd)
    r = run([PIPECTL, "validate", "dag.yaml"], "dag-validate.log")
    check(r, "(%d stages)" % DAG_STAGES in r.out, "validate did not report %d stages" % DAG_STAGES)
    record("dag", "validate", r, rnd)
    state = os.path.join(OUT, "dag-state.db")
    rm(state)
    r = run([PIPECTL, "run", "--state", state, "dag.yaml"], "dag-run.log")
    ok_lines = sum(1 for l in r.out.splitlines() if re.match(r"\s+s\d+\s+\S+\s+succeeded ", l))
    check(r, ok_lines == DAG_STAGES, "%d of %d stages succeeded" % (ok_lines, DAG_STAGES))
    record("dag", "pipectl", r, rnd)
    # Setup and scheduling apart: the stages' start and finish times that
    # pipectl keeps in its state (status --json, not timed).
    sched = Run(False, 0, 0, r.err or "no stage times")
    if r.ok:
        try:
            st = json.loads(subprocess.run([PIPECTL, "status", "--state", state, "--json"],
                                           capture_output=True, text=True, check=True).stdout)
            first = min(x["started"] for x in st["stages"])
            last = max(x["finished"] for x in st["stages"])
            sched = Run(True, last - first, r.rss_kib)
            say("round %d dag      setup before the first stage %.3f s, stages %.3f s"
                % (rnd, first - st["run"]["started"], last - first))
        except (subprocess.CalledProcessError, ValueError, KeyError, TypeError) as e:
            sched.err = "no stage times from pipectl status --json: %s" % e
    results.setdefault(("dag-sched", "pipectl"), []).append(sched)
    if ("dag", "make-empty") in results:
        results[("dag-sched", "make-empty")] = results[("dag", "make-empty")]
    rm(state)


# ---------------------------------------------------------------- start-up
def startup_setup():
    d = os.path.join(OUT, "startup")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(os.path.join(SRCDIR, "pipelines"), d,
                    ignore=shutil.ignore_patterns(".pipectl", "out"))
    return d


def startup_round(rnd, d):
    """START_RUNS runs of each command, interleaved; a round's figure is
    the median run."""
    cmds = []
    if have("jq"):
        cmds.append(("jq", ["jq", "-n", "1"]))
    state = os.path.join(OUT, "startup-state.db")
    cmds.append(("validate", [PIPECTL, "validate", "quickstart.yaml"]))
    cmds.append(("pipectl", [PIPECTL, "run", "-q", "--state", state, "quickstart.yaml"]))
    rm(state)
    runs = {name: [] for name, _ in cmds}
    for _ in range(START_RUNS):
        for name, cmd in cmds:
            runs[name].append(run(cmd, "startup-%s.log" % name, cwd=d))
    for name, rs in runs.items():
        bad = [r for r in rs if not r.ok]
        if bad:
            record("startup", name, bad[0], rnd)
            continue
        rs.sort(key=lambda r: r.secs)
        med = rs[len(rs) // 2]
        record("startup", name, Run(True, med.secs, max(r.rss_kib for r in rs)), rnd)
    rm(state)


# ---------------------------------------------------------------- table
def fmt_t(s):
    if s is None:
        return "—"
    if s >= 1:
        return "%.2f s" % s
    if s >= 0.001:
        return "%.1f ms" % (s * 1e3)
    return "%.0f µs" % (s * 1e6)


def fmt_q(q):
    if q is None:
        return "—"
    return ("%.2f ×" if q >= 0.1 else "%.2g ×") % q


def summary(workload, tool):
    """(state, median seconds, max RSS KiB, runs): state is 'ok', 'FAILED:
    reason', 'not installed' or 'not run'."""
    rs = results.get((workload, tool))
    if rs is None:
        return "not run", None, None, []
    bad = [r for r in rs if not r.ok]
    if bad:
        return "FAILED: " + bad[0].err, None, None, rs
    return "ok", statistics.median(r.secs for r in rs), max(r.rss_kib for r in rs), rs


def ratio(workload, ref, tool="pipectl"):
    """Median over rounds of ref time / pipectl time in the same round."""
    a, b = results.get((workload, ref)), results.get((workload, tool))
    if not a or not b or len(a) != len(b) or not all(r.ok for r in a + b):
        return None
    return statistics.median(x.secs / y.secs for x, y in zip(a, b))


failed = []


def row(rows, workload, label, ref, ref_label, tool, goal, met_fn, per=None, missing=None):
    """One table row. PER: divide times by it and show per unit too."""
    def cell(name):
        if name is None:
            return "—", None
        if missing:
            return "not installed (%s)" % missing, None
        st, t, _, _ = summary(workload, name)
        if st != "ok":
            if st.startswith("FAILED"):
                failed.append("%s %s: %s" % (workload, name, st[8:]))
                return "FAILED", None
            return st, None
        s = fmt_t(t)
        if per:
            s += " (%s/stage)" % fmt_t(t / per)
        return s, t
    rc, rt = cell(ref)
    if missing:
        ref = None
    st, pt, rss, _ = summary(workload, tool)
    if st.startswith("FAILED"):
        failed.append("%s %s: %s" % (workload, tool, st[8:]))
        pc, pt = "FAILED", None
    elif st != "ok":
        pc = st
    else:
        pc = fmt_t(pt) + (" (%s/stage)" % fmt_t(pt / per) if per else "")
    q = ratio(workload, ref, tool) if ref and rt is not None and pt is not None else None
    rss_s = "%.1f MiB" % (rss / 1024) if pt is not None and rss else "—"
    if pc == "FAILED" or rc == "FAILED":
        met = "FAILED"
    elif pt is None or missing:
        met = "—"
    else:
        m = met_fn(q, pt, rss)
        met = "—" if m is None else ("yes" if m else "**no**")
    rows.append((label, ref_label, rc, pc, fmt_q(q), rss_s, goal, met))


def table():
    rows = []
    mb = lambda kib: kib / 1024 if kib else None
    if "bulk" in ONLY:
        w = "bulk %s records" % format(RECORDS, ",")
        row(rows, "bulk", w, "import", "`sqlite3 .import` of ready CSV", "pipectl",
            "≥ 1.0 ×; RSS ≤ 32 MiB", lambda q, t, rss: q is not None and q >= 1.0 and mb(rss) <= 32)
        row(rows, "bulk", w, "jq", "jq → CSV → `sqlite3 .import`", "pipectl", "> 1 × (beat it)",
            lambda q, t, rss: q is not None and q > 1.0, missing=None if have("jq") else "jq")
        row(rows, "bulk", w, "python", "python3 json + sqlite3 loop", "pipectl", "> 1 × (beat it)",
            lambda q, t, rss: q is not None and q > 1.0)
        if BIG:
            base = summary("bulk", "pipectl")[2]
            row(rows, "bulk10", "bulk %s records" % format(RECORDS * 10, ","), None,
                "— (RSS flatness, 1 run)", "pipectl", "RSS ≤ 32 MiB, flat from 1 ×",
                lambda q, t, rss: mb(rss) <= 32 and (base is None or rss <= base * 1.15))
    if "http" in ONLY:
        w = "http %s docs, c=%d, %s" % (format(REQUESTS, ","), CONCURRENCY, SERVER_KIND)
        row(rows, "http", w, "wrk", "`wrk -t1 -c64` (rate)", "pipectl", "≥ 0.5 ×; RSS ≤ 16 MiB",
            lambda q, t, rss: q is not None and q >= 0.5 and mb(rss) <= 16,
            missing=None if have("wrk") else "wrk")
        row(rows, "http", w, "curl", "curl --parallel + jq + sqlite3", "pipectl", "≥ 2 ×",
            lambda q, t, rss: q is not None and q >= 2.0,
            missing=None if have("curl") and have("jq") else "curl, jq")
        row(rows, "http", w, "aiohttp", "python3 aiohttp + sqlite3", "pipectl", "> 1 × (beat it)",
            lambda q, t, rss: q is not None and q > 1.0,
            missing=None if have_aiohttp() else "python3-aiohttp")
    if "faults" in ONLY:
        w = "faults %s URLs, 20%% 503, 5%% 429" % format(FAULT_REQUESTS, ",")
        reqs = {}
        for tool in ("aiohttp", "pipectl"):
            rs = results.get(("faults", tool)) or []
            reqs[tool] = sorted(set(getattr(r, "requests", None) for r in rs))
        same = reqs["aiohttp"] == reqs["pipectl"]
        row(rows, "faults", w, "aiohttp", "aiohttp retry loop, same policy", "pipectl",
            "≥ 5 × (wall ≤ 0.2 ×), same requests",
            lambda q, t, rss: q is not None and q >= 5.0 and same,
            missing=None if have_aiohttp() else "python3-aiohttp")
        rows[-1] = rows[-1][:3] + (rows[-1][3] + "; requests: pipectl %s, aiohttp %s" % (
            "/".join(map(str, reqs["pipectl"])) or "—", "/".join(map(str, reqs["aiohttp"])) or "—"),) + rows[-1][4:]
    if "dag" in ONLY:
        n = DAG_STAGES
        w = "dag %s stages" % format(n, ",")
        full = n >= 10000
        row(rows, "dag", w, "make-empty", "`make -j2`, empty recipes", "pipectl",
            "run ≤ 1 s at 10,000 stages",
            lambda q, t, rss: (t <= 1.0) if full else None, per=n,
            missing=None if have("make") else "make")
        row(rows, "dag", w, "make-colon", "`make -j2`, `@:` recipes", "pipectl", "—",
            lambda q, t, rss: None, per=n, missing=None if have("make") else "make")
        row(rows, "dag-sched", w + ", scheduling (first stage start to last stage end)",
            "make-empty", "`make -j2`, empty recipes", "pipectl", "≤ 2 µs/stage",
            lambda q, t, rss: t / n <= 2e-6, per=n, missing=None if have("make") else "make")
        row(rows, "dag", w + ", validate", None, "—", "validate", "≤ 1 s at 10,000 stages",
            lambda q, t, rss: (t <= 1.0) if full else None)
    if "startup" in ONLY:
        miss = None if have("jq") else "jq"
        row(rows, "startup", "start-up: validate quickstart", "jq", "`jq -n 1`", "validate",
            "≤ 20 ms", lambda q, t, rss: t <= 0.020, missing=miss)
        row(rows, "startup", "start-up: run quickstart", "jq", "`jq -n 1`", "pipectl",
            "≤ 50 ms", lambda q, t, rss: t <= 0.050, missing=miss)
    return rows


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        ver = subprocess.run([PIPECTL, "--version"], capture_output=True,
                             text=True).stdout.strip().split("\n")[0]
    except OSError:
        ver = "?"
    return ("%s UTC; %d cores (nproc), %s; Linux %s; %s; %d rounds (medians)"
            % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()), os.cpu_count(), cpu,
               platform.release(), ver or "pipectl", ROUNDS))


def render(rows):
    head = ("workload", "reference", "ref time", "pipectl time",
            "ratio (ref time / pipectl time; > 1 = pipectl faster)", "pipectl peak RSS", "goal", "met?")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- main
SERVER_KIND = "nginx"


def main():
    global SERVER_KIND
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, "logs"))
    os.chdir(OUT)
    say("out: %s; %d rounds; workloads: %s" % (OUT, ROUNDS, ",".join(ONLY)))
    for prog, pkg, used in (("sqlite3", "sqlite3", "bulk"), ("jq", "jq", "bulk, http, start-up"),
                            ("wrk", "wrk", "http"), ("curl", "curl", "http"),
                            ("make", "make", "dag")):
        if not have(prog):
            say("%s not installed (Debian package %s): reference skipped in %s" % (prog, pkg, used))
    if not have("nginx"):
        say("nginx not installed (Debian package nginx-light): tests/mockapi serves the http workload")
    if not have_aiohttp():
        say("aiohttp not installed (Debian package python3-aiohttp): reference skipped in http, faults")
    if "bulk" in ONLY and not have("sqlite3"):
        sys.exit("bench: sqlite3 (Debian package sqlite3) is needed for the bulk reference")

    servers = []
    try:
        qs = bulk_setup() if "bulk" in ONLY else None
        mock = None
        if "faults" in ONLY or ("http" in ONLY and not have("nginx")):
            mock = start_mockapi()
            servers.append(mock)
        srv = None
        if "http" in ONLY:
            if have("nginx"):
                srv = start_nginx(REQUESTS)
                servers.append(srv)
            else:
                srv, SERVER_KIND = mock, "mockapi"
            http_setup(srv)
        if "dag" in ONLY:
            dag_setup()
        sdir = startup_setup() if "startup" in ONLY else None
        for rnd in range(1, ROUNDS + 1):
            if "bulk" in ONLY:
                bulk_round(rnd, qs)
            if "http" in ONLY:
                http_round(rnd, srv)
            if "faults" in ONLY:
                faults_round(rnd, mock)
            if "dag" in ONLY:
                dag_round(rnd)
            if "startup" in ONLY:
                startup_round(rnd, sdir)
        if BIG and "bulk" in ONLY:
            bulk_big()
    finally:
        for s in servers:
            s.stop()
    text = "%s\n\n%s\n" % (machine(), render(table()))
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text)
    print()
    print(text)
    print("(written to %s)" % shown(os.path.join(OUT, "results.md")))
    for f in sorted(set(failed)):
        print("FAILED %s" % f)
    return 1 if failed else 0


sys.exit(main())
