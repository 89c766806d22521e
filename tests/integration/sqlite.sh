#!/bin/sh
# The SQLite sink against tables it did not create and records it must
# refuse: an existing INTEGER PRIMARY KEY table, the INTEGER PRIMARY KEY it
# creates itself, on_conflict replace/merge/ignore, keys that differ only in
# case, a load that receives no records, and templated paths.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

# src_pl NAME INPUT <STAGES: writes NAME.yaml, the pipeline NAME whose stage
# src reads the file INPUT (JSON lines), then the stages read.
src_pl() {
	{
		printf 'pipeline: %s\nstages:\n  src:\n    fetch: { file: %s, format: jsonl }\n' \
			"$1" "$2"
		cat
	} >"$1.yaml"
}

# pipe NAME INPUT SQLITE-MAPPING [EXTRA STAGE LINES]: writes NAME.yaml, a
# file source INPUT loaded into the given sqlite mapping (taken as it is:
# a ${...} in it stays a template), then the extra lines.
pipe() {
	src_pl "$1" "$2" <<YAML
  db:
    needs: src
    load:
      sqlite: $3
YAML
	[ -z "${4:-}" ] || printf '%s\n' "$4" >>"$1.yaml"
}

# --- An existing table whose key is an INTEGER PRIMARY KEY (the rowid).
sq ipk.db 'CREATE TABLE t (id INTEGER PRIMARY KEY, v, w); INSERT INTO t VALUES (1, "old", "kept");'
printf '{"id":1,"v":"new","w":"w1"}\n{"id":2,"v":"two"}\n' >ipk.jsonl
pipe ipk ipk.jsonl '{ path: ipk.db, table: t, key: id }'
"$PIPECTL" run -q ipk.yaml >/dev/null 2>err
is "$?" 0 "existing table with id INTEGER PRIMARY KEY: the upsert is accepted"
is "$(sq ipk.db 'SELECT id, v, w FROM t ORDER BY id')" "1|new|w1
2|two|" "the row with the key is updated, the new one inserted"
"$PIPECTL" run -q ipk.yaml >/dev/null 2>&1
is "$(sq ipk.db 'SELECT count(*) FROM t')" 2 "a second run upserts again: no duplicate rows"

# The key given in another case names the same column, as in SQL.
pipe ipkcase ipk.jsonl '{ path: ipk.db, table: t, key: ID }'
"$PIPECTL" run -q ipkcase.yaml >/dev/null 2>err
is "$?" 0 "key: ID matches the PRIMARY KEY column id"

# A UNIQUE index that is partial cannot serve ON CONFLICT: still refused.
sq part.db 'CREATE TABLE t (id, v); CREATE UNIQUE INDEX t_id ON t (id) WHERE id > 0;'
pipe part ipk.jsonl '{ path: part.db, table: t, key: id }'
"$PIPECTL" run part.yaml >/dev/null 2>err
is "$?" 1 "a partial unique index is not enough for an upsert"
grep -q 'without a PRIMARY KEY or UNIQUE index on exactly (id)' err
ok $? "the message names the key it needs an index on"

# A key that is not an integer cannot go into an INTEGER PRIMARY KEY: the
# record goes to on_error (here dlq), the others are loaded.
printf '{"id":3,"v":"three"}\n{"id":"x7","v":"bad"}\n' >ipkbad.jsonl
pipe ipkbad ipkbad.jsonl '{ path: ipk.db, table: t, key: id }'
printf '    on_error: dlq\n' >>ipkbad.yaml
"$PIPECTL" run ipkbad.yaml >/dev/null 2>err
is "$?" 0 "a non-integer key for an INTEGER PRIMARY KEY: the run goes on (on_error: dlq)"
is "$(sq ipk.db 'SELECT id, v FROM t WHERE id = 3')" "3|three" "the good record is loaded"
"$PIPECTL" dlq list >dlq.out 2>&1
grep -q 'is an INTEGER PRIMARY KEY, which holds only integers' dlq.out
ok $? "the dead letter says why: INTEGER PRIMARY KEY holds only integers"

# --- A table pipectl creates with one integer key gets INTEGER PRIMARY KEY.
printf '{"id":10,"v":"a"}\n{"id":11,"v":"b"}\n' >new.jsonl
pipe newint new.jsonl '{ path: new.db, table: t, key: id }'
"$PIPECTL" run -q newint.yaml >/dev/null 2>&1
is "$(sq new.db "SELECT type, pk FROM pragma_table_info('t') WHERE name = 'id'")" "INTEGER|1" \
	"a single integer key column is declared INTEGER PRIMARY KEY"
is "$(sq new.db "SELECT count(*) FROM pragma_index_list('t')")" 0 \
	"it is the rowid: no separate index"
is "$(sq new.db 'SELECT rowid, v FROM t ORDER BY id')" "10|a
11|b" "rowid and key are the same"
# A string key is a TEXT PRIMARY KEY (typed from its values).
printf '{"sku":"A1","v":1}\n' >str.jsonl
pipe newstr str.jsonl '{ path: new.db, table: s, key: sku }'
"$PIPECTL" run -q newstr.yaml >/dev/null 2>&1
is "$(sq new.db "SELECT type, pk FROM pragma_table_info('s') WHERE name = 'sku'")" "TEXT|1" \
	"a string key is a TEXT PRIMARY KEY"

# --- on_conflict.
sq oc.db 'CREATE TABLE t (id INTEGER PRIMARY KEY, a, b); INSERT INTO t VALUES (1, "a0", "b0"), (2, "a0", "b0"), (3, "a0", "b0");'
cp oc.db oc_merge.db
cp oc.db oc_ignore.db
cp oc.db oc_default.db
printf '{"id":1,"a":"a1"}\n{"id":2,"b":null}\n{"id":4,"a":"a4"}\n' >oc.jsonl
pipe ocr oc.jsonl '{ path: oc.db, table: t, key: id, on_conflict: replace }'
pipe ocm oc.jsonl '{ path: oc_merge.db, table: t, key: id, on_conflict: merge }'
pipe oci oc.jsonl '{ path: oc_ignore.db, table: t, key: id, on_conflict: ignore }'
pipe ocd oc.jsonl '{ path: oc_default.db, table: t, key: id }'
for p in ocr ocm oci ocd; do
	"$PIPECTL" run -q $p.yaml >/dev/null 2>err
	is "$?" 0 "on_conflict ($p): exit 0"
done
is "$(sq oc.db "SELECT id, a, ifnull(b, 'NULL') FROM t ORDER BY id")" "1|a1|NULL
2||NULL
3|a0|b0
4|a4|NULL" "replace: the row becomes the record, absent columns NULL"
is "$(sq oc_default.db "SELECT id, a, ifnull(b, 'NULL') FROM t ORDER BY id")" \
	"$(sq oc.db "SELECT id, a, ifnull(b, 'NULL') FROM t ORDER BY id")" "replace is the default"
is "$(sq oc_merge.db "SELECT id, a, ifnull(b, 'NULL') FROM t ORDER BY id")" "1|a1|b0
2|a0|NULL
3|a0|b0
4|a4|NULL" "merge: only the columns present in the record change (null sets NULL)"
is "$(sq oc_ignore.db "SELECT id, a, ifnull(b, 'NULL') FROM t ORDER BY id")" "1|a0|b0
2|a0|b0
3|a0|b0
4|a4|NULL" "ignore: existing rows stay as they are, new keys are inserted"
# merge with a column the table lacks adds it and leaves other rows alone.
printf '{"id":3,"c":"c3"}\n' >oc2.jsonl
pipe ocm2 oc2.jsonl '{ path: oc_merge.db, table: t, key: id, on_conflict: merge }'
"$PIPECTL" run -q ocm2.yaml >/dev/null 2>&1
is "$(sq oc_merge.db "SELECT id, a, b, c FROM t WHERE id = 3")" "3|a0|b0|c3" \
	"merge with a new column: the column is added, the rest of the row kept"
# Merging again (a resume or a rerun) changes nothing.
"$PIPECTL" run -q ocm.yaml >/dev/null 2>&1
is "$(sq oc_merge.db "SELECT group_concat(id || a || ifnull(b, '-') || ifnull(c, '-'), ' ') FROM (SELECT * FROM t ORDER BY id)")" \
	"1a1b0- 2a0-- 3a0b0c3 4a4--" "merge is idempotent"
# on_conflict without a key is an error with a position.
pipe ocnokey oc.jsonl '{ path: x.db, table: t, on_conflict: merge }'
"$PIPECTL" validate ocnokey.yaml >/dev/null 2>err
is "$?" 2 "on_conflict without key: validate fails"
grep -q 'ocnokey.yaml:8:[0-9]*: "on_conflict" needs a "key"' err
ok $? "the error points at on_conflict"

# --- Keys that differ only in case.
printf '{"id":1,"Name":"A","name":"a"}\n' >case.jsonl
pipe case case.jsonl '{ path: case.db, table: t, key: id }'
"$PIPECTL" run case.yaml >/dev/null 2>err
is "$?" 1 "keys Name and name in one record: the run fails"
grep -q 'record keys "name" and "Name" differ only in case' err ||
	grep -q 'record keys "Name" and "name" differ only in case' err
ok $? "the message names both keys"
grep -q "jq: 'with_entries(if .key == \"Name\" then .key = \"Name_2\" else . end)'" err
ok $? "the message shows a jq rename"
is "$(sq case.db "SELECT count(*) FROM sqlite_master WHERE name = 't'")" 0 \
	"no table was created from the clashing record"
# The suggested rename works.
src_pl case2 case.jsonl <<'YAML'
  fix:
    needs: src
    transform: { jq: 'with_entries(if .key == "Name" then .key = "Name_2" else . end)' }
  db:
    needs: fix
    load:
      sqlite: { path: case.db, table: t, key: id }
YAML
"$PIPECTL" run -q case2.yaml >/dev/null 2>&1
is "$(sq case.db 'SELECT id, Name_2, name FROM t')" "1|A|a" "after the suggested rename the load works"
# A later record's key in another case goes into the existing column.
printf '{"id":2,"NAME":"b"}\n' >case3.jsonl
pipe case3 case3.jsonl '{ path: case.db, table: t, key: id }'
"$PIPECTL" run -q case3.yaml >/dev/null 2>err
is "$?" 0 "a key in another case than the column: accepted"
is "$(sq case.db 'SELECT name FROM t WHERE id = 2')" "b" "its value is in the column of that name"
# With on_error: skip only the clashing record is left out.
printf '{"id":5,"Name":"A","name":"a"}\n{"id":6,"name":"f"}\n' >case4.jsonl
pipe case4 case4.jsonl '{ path: case.db, table: t, key: id }'
printf '    on_error: skip\n' >>case4.yaml
"$PIPECTL" run -q case4.yaml >/dev/null 2>err
is "$?" 0 "on_error: skip: the run goes on"
is "$(sq case.db 'SELECT group_concat(id) FROM t WHERE id >= 5')" 6 "only the clashing record is skipped"

# --- A load that receives no records.
: >empty.jsonl
src_pl empty empty.jsonl <<'YAML'
  keyed:
    needs: src
    load:
      sqlite: { path: empty.db, table: k, key: id, columns: [name, price] }
  declared:
    needs: src
    load:
      sqlite: { path: empty.db, table: d, columns: [a, b] }
  unknown:
    needs: src
    load:
      sqlite: { path: empty.db, table: u }
YAML
"$PIPECTL" run empty.yaml >/dev/null 2>err
is "$?" 0 "a load without records succeeds"
is "$(sq empty.db "SELECT group_concat(name) FROM pragma_table_info('k')")" "id,name,price" \
	"key and columns: the table is created with them"
is "$(sq empty.db 'SELECT count(*) FROM k')" 0 "and a query on it finds no rows"
is "$(sq empty.db "SELECT group_concat(name) FROM pragma_table_info('d')")" "a,b,_pipectl_row" \
	"columns without a key: created with them and the row identity column"
is "$(sq empty.db "SELECT count(*) FROM sqlite_master WHERE name = 'u'")" 0 \
	"no key and no columns: no table (its columns are unknown)"
grep -A1 '^keyed: 0 records' err | grep -q '0 records loaded: the table exists'
ok $? "the summary says 0 records were loaded into the declared table"
grep -A1 '^unknown: 0 records' err | grep -q '0 records loaded: a table that did not exist was not created.*columns:'
ok $? "the summary says why no table was created, and how to get one"
# Without key and columns, the columns of the last successful run are used:
# a new database (a templated path) still gets the table.
printf '{"a":1,"b":"x"}\n' >day1.jsonl
cat >prev.yaml <<'YAML'
pipeline: prev
params: { day: d1, input: day1.jsonl }
stages:
  src:
    fetch: { file: '${params.input}', format: jsonl }
  db:
    needs: src
    load:
      sqlite: { path: 'days/${params.day}.db', table: t }
YAML
"$PIPECTL" run -q prev.yaml >/dev/null 2>&1
is "$(sq days/d1.db 'SELECT a, b FROM t')" "1|x" "previous-run case: the first run loads its record"
"$PIPECTL" run prev.yaml -p day=d2 -p input=empty.jsonl >/dev/null 2>err
is "$?" 0 "a later run without records succeeds"
is "$(sq days/d2.db "SELECT group_concat(name) FROM pragma_table_info('t')")" "a,b,_pipectl_row" \
	"it creates the table with the columns of the previous run"
grep -A1 '^db: 0 records' err | grep -q '0 records loaded: the table exists'
ok $? "and the summary says so"
# Declared columns are added to an existing table, and kept when records lack them.
printf '{"id":1,"name":"n"}\n' >one.jsonl
sq decl.db 'CREATE TABLE t (id INTEGER PRIMARY KEY, name)'
pipe decl one.jsonl '{ path: decl.db, table: t, key: id, columns: [name, price, Stock] }'
"$PIPECTL" run -q decl.yaml >/dev/null 2>&1
is "$(sq decl.db "SELECT group_concat(name) FROM pragma_table_info('t')")" "id,name,price,Stock" \
	"columns: the existing table gains the declared columns it lacks"
is "$(sq decl.db "SELECT id, name, ifnull(price, 'NULL') FROM t")" "1|n|NULL" \
	"a declared column the record lacks is NULL"
printf '{"id":2,"stock":5}\n' >two.jsonl
pipe decl2 two.jsonl '{ path: decl.db, table: t, key: id, columns: [name, price, Stock] }'
"$PIPECTL" run -q decl2.yaml >/dev/null 2>&1
is "$(sq decl.db "SELECT Stock FROM t WHERE id = 2")" 5 \
	"a record key in another case goes into the declared column"

# --- Templated paths of sinks.
printf '{"id":1}\n{"id":2}\n' >tp.jsonl
cat >tp.yaml <<'YAML'
pipeline: tp
params: { region: eu }
stages:
  src:
    fetch: { file: tp.jsonl, format: jsonl }
  db:
    needs: src
    load:
      sqlite: { path: 'out/snap-${run.id}-${params.region}.db', table: t, key: id }
  file:
    needs: src
    load:
      file: { path: 'out/${run.date}/snap-${run.id}.jsonl' }
YAML
"$PIPECTL" run --state tpstate.db tp.yaml -p region=us >/dev/null 2>err
is "$?" 0 "templated sink paths: exit 0"
is "$(sq out/snap-1-us.db 'SELECT count(*) FROM t')" 2 "sqlite path: run id and params are rendered"
today=$(date -u +%Y-%m-%d)
is "$(cat "out/$today/snap-1.jsonl" 2>/dev/null | wc -l | tr -d ' ')" 2 \
	"file path: run.date (the run's start, UTC) is rendered"
is "$(find . -name '*${*' | wc -l | tr -d ' ')" 0 "no file has a literal \${ in its name"
grep -q "^db: 2 records in table \"t\" of out/snap-1-us.db" err
ok $? "the summary shows the rendered path"

# A resumed run renders the same paths: the run id is kept, and run.date is
# the day the run started (here moved back to 2001-02-03), not the resume's.
pipe tr tr.jsonl "{ path: 'res/r-\${run.id}-\${run.date}.db', table: t, key: id }"
"$PIPECTL" run -q --state st.db tr.yaml >/dev/null 2>&1
is "$?" 1 "resume case: the first part fails (its input is missing)"
sq st.db "UPDATE runs SET started = 981158400.5 WHERE id = 1"
cp tp.jsonl tr.jsonl
"$PIPECTL" resume -q --state st.db --last >/dev/null 2>err
is "$?" 0 "resume case: the resumed run succeeds"
is "$(sq res/r-1-2001-02-03.db 'SELECT count(*) FROM t' 2>&1)" 2 \
	"the resumed run loads into the path of the run's start date"

# A path built from an env value (a secret) is rendered, but not shown.
pipe tenv tp.jsonl "{ path: 'out/\${env.SINK_SECRET}.db', table: t }"
SINK_SECRET=hush-4711 "$PIPECTL" run --state tenv.state tenv.yaml >/dev/null 2>err
is "$(sq out/hush-4711.db 'SELECT count(*) FROM t')" 2 "an env value in a path is rendered"
grep -q 'hush-4711' err
is "$?" 1 "the summary does not show it"
grep -q 'of out/\*\*\*.db' err
ok $? "it shows *** instead"

# A ${ that is not a valid template is a validate error with its position.
pipe tbad tp.jsonl "{ path: 'out/snap-\${run.id.db', table: t }" '  file:
    needs: src
    load:
      file:
        path: out/x-${}.jsonl'
"$PIPECTL" validate tbad.yaml >/dev/null 2>err
is "$?" 2 "an invalid template in a sink path: validate fails"
is "$(cat err)" 'tbad.yaml:8:33: invalid template in "path": unterminated "${" in template
tbad.yaml:13:21: invalid template in "path": empty "${}" in template' \
	"each error points at its \${"
is "$(ls out | grep -c 'x-')" 0 "no file is created from it"

done_testing
