#!/bin/sh
# tests/layers/kinds.sh: stage kinds own their options. Nothing outside
# src/stages/ names a stage kind (its name, the enums and unions the kinds
# once had in the spec, an options struct of a kind, a kind's exported
# struct), so adding a kind is a file under src/stages/ and a registry line.
# The kinds' names are read from src/stages/ itself, so a new kind is
# covered as soon as it exists.

. "$TOP_SRCDIR/tests/lib.sh"

cd "$TOP_SRCDIR" || exit 1

# Every kind's name, from `.name = "..."` in src/stages/ (a dotted name:
# "transform" is also the stage key the kind is written under).
names=$(grep -ho '\.name = "[a-z_]*\.[a-z_.]*"' src/stages/*.c | sed 's/.*"\(.*\)"/\1/' | sort -u)
n=$(printf '%s\n' "$names" | grep -c .)
[ "$n" -ge 6 ]
ok $? "the kinds' names are found in src/stages/ ($n)"

outside() { # outside ERE: the lines of src/ outside src/stages/ that match
	grep -rnE "$1" src --include='*.c' --include='*.h' | grep -v '^src/stages/'
}

for k in $names; do
	re=$(printf '%s' "$k" | sed 's/\./\\./g')
	hits=$(outside "(^|[^A-Za-z0-9_.])$re([^A-Za-z0-9_]|$)")
	[ -z "$hits" ]
	ok $? "no file outside src/stages/ names the kind $k"
	[ -z "$hits" ] || printf '%s\n' "$hits" | sed 's/^/#   /'
done

check() { # check ERE DESCRIPTION
	hits=$(outside "$1")
	[ -z "$hits" ]
	ok $? "$2"
	[ -z "$hits" ] || printf '%s\n' "$hits" | sed 's/^/#   /'
}

check '\bSTAGE_(FETCH|TRANSFORM|LOAD)\b|\benum stage_type\b' \
	"no stage type enum outside src/stages/"
check '\bLOAD_(SQLITE|FILE|STDOUT|HTTP)\b|\benum load_target\b' \
	"no load target enum outside src/stages/"
check '\bu\.(fetch|transform|load)\b' "no per-kind union in a stage spec"
check '\bstruct (fetch_spec|load_spec|transform_spec|paginate_spec|header)\b' \
	"no kind's options struct outside src/stages/"
# The options structs the kinds define (struct *_opts, *_spec in src/stages/).
for st in $(grep -hoE '^struct [a-z_]+_(opts|spec) \{' src/stages/*.c src/stages/*.h | awk '{print $2}' | sort -u); do
	check "\\bstruct $st\\b" "struct $st (a kind's options) is not named outside src/stages/"
done
check '\bstage_(fetch|load)_[a-z_]+\b|\bstage_transform\b' \
	"no kind's exported struct stage_kind outside src/stages/"
check '#include "stages/' "nothing outside src/stages/ includes a header of src/stages/"

# The registry is the one list: every kind a stage file exports is in it.
for sym in $(grep -ho '^const struct stage_kind [a-z_]*' src/stages/*.c | awk '{print $4}'); do
	grep -Eq "^\s*X\($sym\)" src/stages/registry.c
	ok $? "the registry lists $sym"
done

# The tables as JSON (pipectl kinds --json): one entry per kind, each
# option with its key, type and doc.
"$PIPECTL" kinds --json >"$T_TMP/kinds.json"
ok $? "pipectl kinds --json exits 0"
/usr/bin/python3 - "$T_TMP/kinds.json" "$names" <<'PY'
import json, sys
kinds = json.load(open(sys.argv[1]))
want = set(sys.argv[2].split())
got = {k["kind"] for k in kinds}
assert want <= got, (want - got)
for k in kinds:
    for o in k["options"]:
        assert o["key"] and o["type"] and o["doc"], (k["kind"], o)
PY
ok $? "pipectl kinds --json lists every kind, each option with a key, a type and a doc"

done_testing
