#!/bin/sh
# tests/schema/schema.sh: checks schemas/pipeline.schema.json (JSON Schema 2020-12).
# The schema assumes the document as pipectl reads it: YAML 1.2 core scalar typing
# (validate.py's loader). The schema must be a valid schema, describe every key and
# be matched by the man page; tests/schema/valid/*.yaml, the man page's examples
# (both also checked with pipectl validate) and every pipelines/*.yaml must
# validate, the pipelines also when read by PyYAML's YAML 1.1 safe_load; every case of the
# invalid corpus (tests/config/invalid/*/) must be rejected, except the cases listed
# in tests/schema/not-expressible.txt, which are skipped -- and reported as failures
# if the schema rejects them after all. Needs /usr/bin/python3 with
# python3-jsonschema (>= 4) and python3-yaml.

. "$TOP_SRCDIR/tests/lib.sh"

PY=/usr/bin/python3
HERE=$TOP_SRCDIR/tests/schema
SCHEMA=$TOP_SRCDIR/schemas/pipeline.schema.json
LIST=$HERE/not-expressible.txt
MAN=$TOP_SRCDIR/man/pipectl.yaml.5
TAB=$(printf '\t')

# The README's first command installs both modules: their absence is a
# broken setup to report, not a reason to skip.
if ! out=$("$PY" -c 'import yaml; from jsonschema import Draft202012Validator' 2>&1); then
	echo "Bail out! needs $PY with python3-jsonschema (>= 4) and python3-yaml: $out"
	exit 1
fi

validate() { "$PY" "$HERE/validate.py" "$@"; }

# label FILE: the name a file goes by in test descriptions.
label() {
	case $1 in
	"$T_TMP"/man-example-*) f=${1##*-}; echo "man/pipectl.yaml.5 example ${f%.yaml}" ;;
	*) echo "${1#"$TOP_SRCDIR"/}" ;;
	esac
}

# note LINE...: TAP comments, one per line of each argument.
note() { printf '%s\n' "$@" | sed 's/^/# /'; }

skip() { # skip DESCRIPTION REASON
	T_N=$((T_N + 1))
	echo "ok $T_N - $1 # SKIP $2"
}

# listed CASE: prints the reason CASE is in the not-expressible list; fails if absent.
listed() {
	awk -v c="$1" '
		$1 == c { sub(/^[^ \t]+[ \t]*/, ""); print; found = 1; exit }
		END { exit !found }' "$LIST"
}

# batch OUT FILE...: validates the files, one result line each, into OUT.
batch() {
	out=$1
	shift
	validate "$SCHEMA" "$@" >"$out" 2>"$out.err"
	rc=$?
	if [ $rc -ne 0 ] || [ "$(wc -l <"$out")" -ne $# ]; then
		echo "Bail out! validate.py failed (status $rc): $(head -c 500 "$out.err")"
		exit 1
	fi
}

# ---------------------------------------------------------------- the schema itself
out=$(validate --check-schema "$SCHEMA" 2>&1)
ok $? "schema is a valid JSON Schema draft 2020-12 document"
[ -z "$out" ] || note "$out"

out=$(validate --lint "$SCHEMA" 2>&1)
ok $? "schema: every property has a description, every object is closed"
[ -z "$out" ] || note "$out"

# Each key the schema knows is documented in the man page as a tagged
# paragraph starting with \fBkey\fR.
keys=$(validate --keys "$SCHEMA")
[ -n "$keys" ]
ok $? "schema lists its keys"
missing=
for k in $keys; do
	grep -q "^\\\\fB$k\\\\fR" "$MAN" || missing="$missing $k"
done
[ -z "$missing" ]
ok $? "man/pipectl.yaml.5 documents every key of the schema"
[ -z "$missing" ] || note "not documented:$missing"

# ---------------------------------------------------------------- valid files
# The man page's examples: each .EX block that starts with "pipeline:",
# with the roff escapes it uses undone.
awk -v dir="$T_TMP" '
	/^\.EX/ { inex = 1; n = 0; next }
	/^\.EE/ { inex = 0; if (out) close(out); out = ""; next }
	inex && n++ == 0 && /^pipeline:/ && !/\\f/ { out = sprintf("%s/man-example-%d.yaml", dir, ++k) }
	inex && out { print > out }' "$MAN"
n_examples=0
for f in "$T_TMP"/man-example-*.yaml; do
	[ -f "$f" ] || continue
	sed -i 's/\\-/-/g; s/\\(aq/'"'"'/g; s/\\(dq/"/g; s/\\e/\\/g' "$f"
	n_examples=$((n_examples + 1))
done
[ $n_examples -gt 0 ]
ok $? "man/pipectl.yaml.5 has example pipelines ($n_examples)"

set --
for f in "$HERE"/valid/*.yaml "$T_TMP"/man-example-*.yaml "$TOP_SRCDIR"/pipelines/*.yaml; do
	[ -f "$f" ] && set -- "$@" "$f"
done
n_pipelines=0
for f in "$TOP_SRCDIR"/pipelines/*.yaml; do
	[ -f "$f" ] && n_pipelines=$((n_pipelines + 1))
done
[ $n_pipelines -gt 0 ] || diag "no pipelines/*.yaml yet"

# The fixtures and the examples are valid for pipectl itself, so the schema
# accepting them means something.
for f in "$HERE"/valid/*.yaml "$T_TMP"/man-example-*.yaml; do
	[ -f "$f" ] || continue
	out=$("$PIPECTL" validate "$f" 2>&1)
	rc=$?
	ok $rc "pipectl validate accepts $(label "$f")"
	[ $rc -eq 0 ] || note "$out"
done

batch "$T_TMP/valid.out" "$@"
while IFS=$TAB read -r status file msg; do
	[ "$status" = valid ]
	ok $? "$(label "$file") validates against the schema"
	[ "$status" = valid ] || note "$status: $msg"
done <"$T_TMP/valid.out"

# The shipped pipelines also validate when read by a YAML 1.1 loader (PyYAML's
# safe_load, as many editors do), where an unquoted on, off, yes or no is a
# boolean: they use retry_on, not its older name on.
set --
for f in "$TOP_SRCDIR"/pipelines/*.yaml; do
	[ -f "$f" ] && set -- "$@" "$f"
done
if [ $# -gt 0 ]; then
	validate --yaml11 "$SCHEMA" "$@" >"$T_TMP/yaml11.out" 2>"$T_TMP/yaml11.err"
	rc=$?
	[ $rc -eq 0 ] && [ "$(wc -l <"$T_TMP/yaml11.out")" -eq $# ]
	ok $? "validate.py --yaml11 checked the $# shipped pipelines"
	[ $rc -eq 0 ] || note "$(head -c 500 "$T_TMP/yaml11.err")"
fi
touch "$T_TMP/yaml11.out"
while IFS=$TAB read -r status file msg; do
	[ "$status" = valid ]
	ok $? "$(label "$file") validates against the schema read as YAML 1.1 (yaml.safe_load)"
	[ "$status" = valid ] || note "$status: $msg"
done <"$T_TMP/yaml11.out"

# ---------------------------------------------------------------- invalid corpus
set --
for d in "$TOP_SRCDIR"/tests/config/invalid/*/; do
	[ -f "${d}pipeline.yaml" ] && set -- "$@" "${d}pipeline.yaml"
done
[ $# -gt 0 ] || diag "tests/config/invalid is empty: no corpus case to check"

if [ $# -gt 0 ]; then
	batch "$T_TMP/invalid.out" "$@"
fi
touch "$T_TMP/invalid.out"
while IFS=$TAB read -r status file msg; do
	dir=${file%/pipeline.yaml}
	cname=${dir##*/}
	if reason=$(listed "$cname"); then
		if [ "$status" = invalid ]; then
			ok 1 "corpus $cname: listed in not-expressible.txt, yet the schema rejects it"
			note "$msg" "remove it from tests/schema/not-expressible.txt"
		else
			skip "corpus $cname" "$reason"
		fi
		continue
	fi
	[ "$status" = invalid ]
	ok $? "corpus $cname is rejected by the schema"
	if [ "$status" != invalid ]; then
		note "$status${msg:+: $msg}" "pipectl says: $(head -n 3 "$dir/expected" 2>/dev/null)" \
			"if no schema can reject it, list it in tests/schema/not-expressible.txt"
	fi
done <"$T_TMP/invalid.out"

# The list names only existing corpus cases, each with a reason.
grep -v '^[[:space:]]*\(#\|$\)' "$LIST" | while read -r cname reason; do
	[ -f "$TOP_SRCDIR/tests/config/invalid/$cname/pipeline.yaml" ] && [ -n "$reason" ] ||
		echo "$cname${reason:+ }$reason"
done >"$T_TMP/stale"
[ ! -s "$T_TMP/stale" ]
ok $? "not-expressible.txt names existing corpus cases, each with a reason"
[ ! -s "$T_TMP/stale" ] || note "$(cat "$T_TMP/stale")"

done_testing
