#!/usr/bin/python3
# Reference for the bulk workload: the plain Python a user would write.
# JSON lines -> {id, sku, price, qty, warehouse: .meta.warehouse} -> SQLite
# upsert on id, one transaction, standard library only.
#   bulk.py INPUT.jsonl DB
import json
import sqlite3
import sys

SQL = ("INSERT INTO products (id, sku, price, qty, warehouse) VALUES (?, ?, ?, ?, ?)"
       " ON CONFLICT(id) DO UPDATE SET sku = excluded.sku, price = excluded.price,"
       " qty = excluded.qty, warehouse = excluded.warehouse")


def rows(f):
    for line in f:
        r = json.loads(line)
        yield r["id"], r["sku"], r["price"], r["qty"], r["meta"]["warehouse"]


def main():
    src, db = sys.argv[1], sys.argv[2]
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT,"
                " price REAL, qty INTEGER, warehouse TEXT)")
    with con, open(src, encoding="utf-8") as f:
        con.executemany(SQL, rows(f))
    con.close()


main()
