#!/bin/sh
# Sinks: SQLite create/insert/upsert, new columns, types, composite keys,
# refusal of a table that cannot be upserted, non-object records; the file
# sink's temp-then-rename; fan-in of several sources.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

cat >a.jsonl <<'J'
{"id":1,"name":"one","price":19.99,"ok":true,"meta":{"k":[1,2]},"none":null,"odd \"col\"":"q"}
{"id":2,"name":"two","price":0.1,"ok":false}
{"id":3,"name":"it's \"quoted\"","price":-5,"extra":"new column"}
J
cat >load.yaml <<'YAML'
pipeline: load
stages:
  src:
    fetch: { file: a.jsonl, format: jsonl }
  upsert:
    needs: src
    load:
      sqlite: { path: out/db.sqlite, table: items, key: id }
  plain:
    needs: src
    load:
      sqlite: { path: out/db.sqlite, table: plain }
YAML
"$PIPECTL" run -q load.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 0 "sqlite load: exit 0"
db=out/db.sqlite
is "$(sq -separator '|' $db 'SELECT id, name, price, ok, meta, none IS NULL, extra FROM items ORDER BY id')" \
'1|one|19.99|1|{"k":[1,2]}|1|
2|two|0.1|0||1|
3|it'"'"'s "quoted"|-5|||1|new column' "rows, quoting, booleans, nested JSON, nulls, late columns"
is "$(sq $db 'SELECT typeof(id), typeof(price) FROM items WHERE id = 3')" "integer|integer" \
	"integers stay integers"
is "$(sq $db "SELECT \"odd \"\"col\"\"\" FROM items WHERE id = 1")" q "odd column names are quoted"
is "$(sq $db "SELECT group_concat(name) FROM pragma_table_info('items') WHERE pk")" id \
	"the key becomes the primary key"

# Change the input and run again: upsert updates, plain inserts again.
sed -i 's/"one"/"uno"/' a.jsonl
"$PIPECTL" run -q load.yaml >/dev/null 2>&1
is "$(sq $db 'SELECT count(*), group_concat(name) FROM items WHERE id = 1')" "1|uno" \
	"upsert on key updates the row"
is "$(sq $db 'SELECT count(*) FROM plain')" 6 "without a key rows are inserted"

# Composite key.
printf '{"a":1,"b":"x","v":1}\n{"a":1,"b":"y","v":2}\n{"a":1,"b":"x","v":3}\n' >c.jsonl
cat >comp.yaml <<'YAML'
pipeline: comp
stages:
  src:
    fetch: { file: c.jsonl, format: jsonl }
  db:
    needs: src
    load:
      sqlite: { path: comp.db, table: t, key: [a, b] }
YAML
"$PIPECTL" run -q comp.yaml >/dev/null 2>&1
is "$(sq comp.db 'SELECT a, b, v FROM t ORDER BY b')" "1|x|3
1|y|2" "composite key: last write wins per (a, b)"

# An existing table without a unique index on the key is refused, untouched.
sqlite3 legacy.db 'CREATE TABLE t (a, b, v); INSERT INTO t VALUES (9, "z", 9);'
sed 's/comp.db/legacy.db/' comp.yaml >legacy.yaml
"$PIPECTL" run legacy.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 1 "table without a unique key: run fails"
grep -q 'exists without a PRIMARY KEY or UNIQUE index on exactly (a, b)' "$T_TMP/err"
ok $? "the message explains the missing unique index"
is "$(sq legacy.db 'SELECT count(*) FROM t')" 1 "the table is left untouched"

# Records that are not objects cannot become rows.
printf '[1,2]\n' >arr.jsonl
sed 's/c.jsonl/arr.jsonl/; s/comp.db/arr.db/' comp.yaml >arr.yaml
"$PIPECTL" run arr.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 1 "non-object record: run fails"
grep -q 'not a JSON object (a array)' "$T_TMP/err" || grep -q 'not a JSON object' "$T_TMP/err"
ok $? "the message says the record is not an object"
printf '{"b":"x"}\n' >nokey.jsonl
sed 's/c.jsonl/nokey.jsonl/; s/comp.db/nokey.db/' comp.yaml >nokey.yaml
"$PIPECTL" run nokey.yaml >/dev/null 2>"$T_TMP/err"
is "$?" 1 "record without its key column: run fails"
grep -q 'no value for key column "a"' "$T_TMP/err"
ok $? "the missing key column is named"

# File sink: a failed run leaves the previous file as it was.
echo '{"old":true}' >keep.jsonl
printf '{"x":1}\n{"x":2}\nnot json\n' >bad.jsonl
cat >file.yaml <<'YAML'
pipeline: file
settings: { batch_size: 1 }
stages:
  src:
    fetch: { file: bad.jsonl, format: jsonl }
  out:
    needs: src
    load:
      file: { path: keep.jsonl }
YAML
"$PIPECTL" run file.yaml >/dev/null 2>&1
is "$?" 1 "file sink with a failing source: run fails"
is "$(cat keep.jsonl)" '{"old":true}' "the previous file is untouched"
ok "$(ls | grep -c 'keep.jsonl.tmp')" "no temporary file left"
printf '{"x":1}\n{"x":2}\n' >bad.jsonl
"$PIPECTL" run -q file.yaml >/dev/null 2>&1
is "$(cat keep.jsonl)" '{"x":1}
{"x":2}' "a successful run replaces the file"

# Fan-in of three sources into one sink; fan-out of one source to two sinks.
printf '{"s":"a","n":1}\n{"s":"a","n":2}\n' >fa.jsonl
printf '{"s":"b","n":3}\n' >fb.jsonl
printf '{"s":"c","n":4}\n{"s":"c","n":5}\n{"s":"c","n":6}\n' >fc.jsonl
cat >fan.yaml <<'YAML'
pipeline: fan
stages:
  a: { fetch: { file: fa.jsonl, format: jsonl } }
  b: { fetch: { file: fb.jsonl, format: jsonl } }
  c: { fetch: { file: fc.jsonl, format: jsonl } }
  all:
    needs: [a, b, c]
    transform: { jq: '. + {n2: (.n * 2)}' }
  db:
    needs: all
    load: { sqlite: { path: fan.db, table: t, key: n } }
  file:
    needs: [all]
    load: { file: { path: fan.jsonl } }
YAML
"$PIPECTL" run -q fan.yaml >/dev/null 2>&1
is "$?" 0 "fan-in/fan-out: exit 0"
is "$(sq fan.db 'SELECT group_concat(s || n || ":" || n2, " ") FROM (SELECT * FROM t ORDER BY n)')" \
	"a1:2 a2:4 b3:6 c4:8 c5:10 c6:12" "fan-in: the union of all sources"
is "$(wc -l <fan.jsonl | tr -d ' ')" 6 "fan-out: the file sink got every record too"

done_testing
