#!/bin/sh
# The SQLite sink's column types: each column is typed from the values of the
# first batch that has it (INTEGER, NUMERIC for numbers with reals, TEXT, or
# none for JSON objects and arrays, other mixes and nulls); later values of another type load without losing
# anything (those the column's affinity would change are kept as BLOBs of
# their text); one key column of integers is the INTEGER PRIMARY KEY, any
# other key a PRIMARY KEY with its unique index; tables made by older
# versions (untyped columns) keep working and gain typed columns.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

# pipe NAME INPUT SQLITE-MAPPING: NAME.yaml loads the JSON lines of INPUT,
# in batches of 2, into the given sqlite mapping.
pipe() {
	cat >"$1.yaml" <<YAML
pipeline: $1
settings: {batch_size: 2}
stages:
  src:
    fetch: { file: $2, format: jsonl }
  db:
    needs: src
    load:
      sqlite: $3
YAML
}
cols() { sq "$1" "SELECT group_concat(name || ':' || type || ':' || pk, ' ') FROM pragma_table_info('$2')"; }

# --- Types from the first batch (records 1 and 2), later values (batches 2
# and 3) of other types.
cat >types.jsonl <<'J'
{"id":1,"n":1,"r":1.5,"s":"a","b":true,"o":{"k":1},"a":[1],"m":1,"z":null,"x":24}
{"id":2,"n":2,"r":2.5,"s":"b","b":false,"o":{"k":2},"a":[2],"m":"x","z":null,"x":19.99}
{"id":3,"n":"007","r":9007199254740993,"s":0.30000000000000004,"b":"yes"}
{"id":4,"n":"42","r":"1.5","s":5,"x":"2.0"}
{"id":5,"n":2.5,"r":"abc","s":{"x":[1,"y"]},"later":"t"}
{"id":6,"n":" 42","r":"1e3","s":true,"later":"u"}
J
pipe types types.jsonl '{ path: types.db, table: t, key: id }'
run_pl types.yaml
is "$RC" 0 "typed load: the run succeeds"
is "$(cols types.db t)" \
	"id:INTEGER:1 n:INTEGER:0 r:NUMERIC:0 s:TEXT:0 b:INTEGER:0 o::0 a::0 m::0 z::0 x:NUMERIC:0 later:TEXT:0" \
	"columns typed from the first batch: INTEGER, NUMERIC for numbers with reals, TEXT; none for objects, arrays, other mixes, nulls; a later column from its batch"
is "$(sq types.db 'SELECT id, typeof(n), n, typeof(r), r, typeof(s), s, typeof(b), b, typeof(x), x FROM t WHERE id <= 2 ORDER BY id')" \
"1|integer|1|real|1.5|text|a|integer|1|integer|24
2|integer|2|real|2.5|text|b|integer|0|real|19.99" "values of the column's type (booleans are 1 and 0; a NUMERIC column keeps 24 an integer)"
is "$(sq types.db 'SELECT typeof(o), o, typeof(a), a, typeof(m) || typeof(m), m FROM t WHERE id = 1')" \
	'text|{"k":1}|text|[1]|integerinteger|1' "objects and arrays are JSON text; a mixed column keeps each type"
is "$(sq types.db "SELECT typeof(m), m FROM t WHERE id = 2")" "text|x" "the mixed column's string stays a string"
# Later values of another type: nothing loses a digit or a character.
is "$(sq types.db 'SELECT id, typeof(n), CAST(n AS TEXT) FROM t WHERE id >= 3 ORDER BY id')" \
"3|blob|007
4|integer|42
5|real|2.5
6|blob| 42" 'INTEGER column: "42" becomes 42 as SQLite does, 2.5 stays; "007" and " 42" are kept as BLOBs of their text'
is "$(sq types.db 'SELECT id, typeof(r), CAST(r AS TEXT) FROM t WHERE id >= 3 ORDER BY id')" \
"3|integer|9007199254740993
4|real|1.5
5|text|abc
6|blob|1e3" 'NUMERIC column: integers stay exact, "1.5" becomes 1.5, "abc" stays text, "1e3" is kept as a BLOB'
is "$(sq types.db 'SELECT id, typeof(s), s FROM t WHERE id >= 3 ORDER BY id')" \
"3|text|0.30000000000000004
4|text|5
5|text|{\"x\":[1,\"y\"]}
6|text|1" "TEXT column: a real keeps all its digits, numbers and JSON become text"
is "$(sq types.db "SELECT typeof(x), CAST(x AS TEXT) FROM t WHERE id = 4")" "blob|2.0" \
	'NUMERIC column: "2.0" (which it would make the integer 2) is kept as a BLOB'
is "$(sq types.db "SELECT typeof(b), b FROM t WHERE id = 3")" "text|yes" \
	"a string that is not a number stays text in an INTEGER column"

# A REAL column (of a table made elsewhere): an integer beyond 2^53, which
# it would round, is kept as a BLOB; others become reals as SQLite does.
sq real.db 'CREATE TABLE t (id INTEGER PRIMARY KEY, v REAL)'
printf '{"id":1,"v":9007199254740993}\n{"id":2,"v":5}\n{"id":3,"v":"0.1"}\n{"id":4,"v":"0.30000000000000004"}\n' >real.jsonl
pipe real real.jsonl '{ path: real.db, table: t, key: id }'
run_pl real.yaml
is "$(sq real.db 'SELECT id, typeof(v), CAST(v AS TEXT) FROM t ORDER BY id')" "1|blob|9007199254740993
2|real|5.0
3|real|0.1
4|blob|0.30000000000000004" "REAL column: what it would round is kept as a BLOB of its text"

# --- One key column: INTEGER PRIMARY KEY only when the first batch's keys
# are all integers.
printf '{"id":1,"v":"a"}\n{"id":"b","v":"b"}\n{"id":2,"v":"c"}\n' >mixkey.jsonl
pipe mixkey mixkey.jsonl '{ path: mixkey.db, table: t, key: id }'
run_pl mixkey.yaml
is "$RC" 0 "a key of integers and strings: the run succeeds"
is "$(cols mixkey.db t)" "id::1 v:TEXT:0" "it is an untyped PRIMARY KEY, not the rowid"
is "$(sq mixkey.db "SELECT count(*) FROM pragma_index_list('t') WHERE \"unique\"")" 1 \
	"with its unique index"
is "$(sq mixkey.db 'SELECT id, v FROM t ORDER BY v')" "1|a
b|b
2|c" "every record is a row, the string key too"

# --- A key that is not an integer: a TEXT PRIMARY KEY, upserted on.
printf '{"sku":"A1","v":1}\n{"sku":"B2","v":2}\n{"sku":"A1","v":3}\n' >str.jsonl
pipe strkey str.jsonl '{ path: str.db, table: s, key: sku }'
run_pl strkey.yaml
is "$RC" 0 "a string key: the run succeeds"
is "$(cols str.db s)" "sku:TEXT:1 v:INTEGER:0" "it is a TEXT PRIMARY KEY"
is "$(sq str.db "SELECT count(*) FROM pragma_index_list('s') WHERE \"unique\"")" 1 \
	"with its unique index"
is "$(sq str.db 'SELECT sku, v FROM s ORDER BY sku')" "A1|3
B2|2" "rows are upserted on it"
run_pl strkey.yaml
is "$(sq str.db 'SELECT count(*) FROM s')" 2 "a second run adds no row"
# A composite key: a PRIMARY KEY on both, each column typed.
printf '{"a":1,"b":"x","v":1}\n{"a":1,"b":"y","v":2}\n{"a":1,"b":"x","v":3}\n' >comp.jsonl
pipe comp comp.jsonl '{ path: comp.db, table: c, key: [a, b] }'
run_pl comp.yaml
is "$(cols comp.db c)" "a:INTEGER:1 b:TEXT:2 v:INTEGER:0" "a composite key: PRIMARY KEY (a, b), typed"
is "$(sq comp.db 'SELECT a, b, v FROM c ORDER BY b')" "1|x|3
1|y|2" "upserted on both columns"

# --- Tables of older versions: untyped columns keep every value as it is
# bound, new columns are typed; a key-less one keeps its row identity.
sq old.db 'CREATE TABLE t ("id" INTEGER PRIMARY KEY, "a", "b");
INSERT INTO t VALUES (1, "x", 1.5), (5, "keep", 5);
CREATE TABLE k ("a", "b", _pipectl_row);
CREATE UNIQUE INDEX "k__pipectl_row" ON "k" (_pipectl_row);'
printf '{"id":1,"a":"007","b":2,"c":3}\n{"id":2,"a":12,"b":"x","c":4}\n' >old.jsonl
pipe oldkey old.jsonl '{ path: old.db, table: t, key: id }'
pipe oldrow old.jsonl '{ path: old.db, table: k }'
run_pl oldkey.yaml
is "$RC" 0 "an old table with a key: the run succeeds"
is "$(cols old.db t)" "id:INTEGER:1 a::0 b::0 c:INTEGER:0" \
	"its columns stay untyped, the new one is typed"
is "$(sq old.db 'SELECT id, typeof(a), a, typeof(b), b, c FROM t ORDER BY id')" \
"1|text|007|integer|2|3
2|integer|12|text|x|4
5|text|keep|integer|5|" "values are kept as they came, rows upserted"
run_pl oldrow.yaml
is "$RC" 0 "an old key-less table: the run succeeds"
run_pl oldrow.yaml
is "$(sq old.db 'SELECT count(*), count(DISTINCT _pipectl_row) FROM k')" "4|4" \
	"each run adds its rows once (row identity), a new column too"
is "$(cols old.db k)" "a::0 b::0 _pipectl_row::0 id:INTEGER:0 c:INTEGER:0" \
	"the key-less table gains typed columns"

done_testing
