#!/usr/bin/python3
# Reference for the http and faults workloads: a hand-written aiohttp client.
# GETs every URL of URLS (one a line) with at most CONCURRENCY connections,
# projects each JSON body and upserts the rows into SQLite in one transaction.
#   fetch_aiohttp.py URLS DB http|faults [CONCURRENCY]
# http:   {id, name, price, qty} into items (key id), one attempt.
# faults: {name, attempt} into items (key name), with pipectl's retry policy
#         {attempts: 3, backoff: exponential, initial: 100ms, max: 5s,
#          jitter: full, retry_on: [connect, timeout, network, 5xx, 429]}:
#         a 429 or 503 with Retry-After waits that long (capped at max),
#         other retries wait a uniform random part of 100ms * 2^(attempt-1).
#         A request waiting out its delay holds no connection.
# Prints "requests N" (attempts made) on stdout.
import asyncio
import json
import random
import sqlite3
import sys

import aiohttp

ATTEMPTS, INITIAL, MAX_DELAY = 3, 0.1, 5.0


async def fetch(session, url, attempts, counter):
    for attempt in range(1, attempts + 1):
        counter[0] += 1
        status, retry_after, raw = None, None, b""
        try:
            async with session.get(url) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                raw = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = None  # connect, timeout, network: retried
        if status is not None and 200 <= status < 300:
            return json.loads(raw)
        retryable = status is None or status >= 500 or status == 429
        if not retryable or attempt == attempts:
            raise RuntimeError("%s: status %s after %d attempts" % (url, status, attempt))
        if retry_after is not None and status in (429, 503):
            delay = min(float(retry_after), MAX_DELAY)
        else:
            delay = random.uniform(0, min(MAX_DELAY, INITIAL * 2 ** (attempt - 1)))
        await asyncio.sleep(delay)


async def main():
    urls_file, db, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    with open(urls_file, encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip()]
    attempts = ATTEMPTS if mode == "faults" else 1
    counter = [0]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        bodies = await asyncio.gather(*(fetch(session, u, attempts, counter) for u in urls))
    con = sqlite3.connect(db)
    with con:
        if mode == "faults":
            con.execute("CREATE TABLE items (name TEXT PRIMARY KEY, attempt INTEGER)")
            con.executemany("INSERT INTO items VALUES (?, ?) ON CONFLICT(name) DO UPDATE"
                            " SET attempt = excluded.attempt",
                            ((b["name"], b["attempt"]) for b in bodies))
        else:
            con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT,"
                        " price REAL, qty INTEGER)")
            con.executemany("INSERT INTO items VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE"
                            " SET name = excluded.name, price = excluded.price,"
                            " qty = excluded.qty",
                            ((b["id"], b["name"], b["price"], b["qty"]) for b in bodies))
    con.close()
    print("requests %d" % counter[0])


asyncio.run(main())
