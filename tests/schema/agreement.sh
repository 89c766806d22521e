#!/bin/sh
# tests/schema/agreement.sh: every stage kind's option table (as `pipectl
# kinds --json`, an internal command left out of the usage and the docs,
# writes it), schemas/pipeline.schema.json and
# man/pipectl.yaml.5 agree: each option in each, with the same JSON type and
# default, and nothing in the schema or the man page that no table has (see
# agreement.py for the rules). Then shows that the check fails when an
# option is only in a table, only in the docs, or documented with another
# default.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

PY=/usr/bin/python3
CHECK=$TOP_SRCDIR/tests/schema/agreement.py
SCHEMA=$TOP_SRCDIR/schemas/pipeline.schema.json
MAN=$TOP_SRCDIR/man/pipectl.yaml.5

"$PIPECTL" kinds --json >kinds.json
is "$?" 0 "pipectl kinds --json: exit 0"
is "$("$PY" -c 'import json,sys; print(" ".join(k["kind"] for k in json.load(open(sys.argv[1]))))' kinds.json)" \
	"fetch.http fetch.file transform load.sqlite load.file load.stdout load.http fetch.sqlite" \
	"it lists every kind of the registry"

# The real tables against the real documents: one case per role and document.
"$PY" "$CHECK" kinds.json "$SCHEMA" "$MAN" >agree.out 2>&1
is "$?" 0 "agreement.py runs"
while IFS= read -r line; do
	case $line in
	"ok	"*) ok 0 "${line#ok	}" ;;
	"not ok	"*) ok 1 "${line#not ok	}" ;;
	*) echo "$line" ;;
	esac
done <agree.out
is "$(grep -c '^ok	' agree.out)" 6 "six agreements checked (schema and man page for fetch, transform, load)"

# mutate KIND 'PYTHON' OUT: kinds.json with PYTHON run on the kind's entry k.
mutate() {
	"$PY" - "$1" "$2" kinds.json "$3" <<'PY'
import json, sys
kind, code, src, out = sys.argv[1:5]
kinds = json.load(open(src))
for k in kinds:
    if k["kind"] == kind:
        exec(code)
json.dump(kinds, open(out, "w"))
PY
}
# fails DESC KINDS SCHEMA MAN PATTERN...: the check reports each PATTERN.
fails() {
	desc=$1 kj=$2 sch=$3 man=$4
	shift 4
	"$PY" "$CHECK" "$kj" "$sch" "$man" >mut.out 2>&1
	res=0
	grep -q '^not ok	' mut.out || res=1
	for p in "$@"; do
		grep -qF -- "$p" mut.out || res=1
	done
	ok "$res" "$desc"
	[ "$res" = 0 ] || sed 's/^/# /' mut.out
}
mutate fetch.sqlite 'k["options"].append({"key": "limit", "type": "integer", "required": False, "inherit": False, "doc": "x"})' added.json
fails "an option only in a table (fetch.sqlite limit) fails the check" added.json "$SCHEMA" "$MAN" \
	"fetch.sqlite: option 'limit' is not in the schema" "fetch.sqlite: option 'limit' is not documented"
mutate load.http 'k["options"].append({"key": "gzip", "type": "boolean", "required": False, "inherit": False, "doc": "x"})' added2.json
fails "so does one of another nested kind (load.http gzip)" added2.json "$SCHEMA" "$MAN" \
	"load.http: option 'gzip' is not in the schema" "load.http: option 'gzip' is not documented"
mutate fetch.sqlite 'k["options"] = [o for o in k["options"] if o["key"] != "records"]' removed.json
fails "an option only in the docs fails the check" removed.json "$SCHEMA" "$MAN" \
	"fetch.sqlite: the schema has 'records', no table has" \
	"fetch.sqlite: the man page has 'records', no table has"
mutate fetch.http 'k["options"] = [o for o in k["options"] if o["key"] != "pool"]' removed2.json
fails "so does one of a flat kind (fetch.http pool)" removed2.json "$SCHEMA" "$MAN" \
	"fetch: the schema has 'pool', no table has" "fetch: the man page has 'pool', no table has"
sed 's/^\(\\fBon_conflict\\fR: .*(default \\fB\)replace\\fR;/\1merge\\fR;/' "$MAN" >man5
sed 's/"default": "replace"/"default": "merge"/' "$SCHEMA" >schema5
is "$(cmp -s "$MAN" man5; echo $?):$(cmp -s "$SCHEMA" schema5; echo $?)" "1:1" "(the copies with another default differ)"
fails "another default in the man page or the schema fails the check" kinds.json schema5 man5 \
	"load.sqlite.on_conflict: schema default 'merge', table default 'replace'" \
	"load.sqlite.on_conflict: the man page's entry does not say (default replace)"
mutate load.sqlite 'next(o for o in k["options"] if o["key"] == "table")["type"] = "integer"' typed.json
fails "another type fails the check" typed.json "$SCHEMA" "$MAN" \
	"load.sqlite.table: table type integer wants JSON ['integer']"

done_testing
