#!/bin/sh
# tests/layers/layers.sh [SRCDIR]: checks the #include graph of src/ (or of
# SRCDIR) with layers.py: every quoted include names a file by its path from
# src/; no file includes a header of a higher layer (base < expr < store <
# net < core < stages < cli); no cycle among modules (a .c and its .h; see
# layers.py for how a file finds its module). Then proves on small trees in
# a temporary directory that the checker finds an upward arrow, a cycle (and
# names its path), a relative include and a stale allowlist entry.
#
# ALLOW: the violations the tree has today, each removed by the change its
# comment names. An entry that no longer allows anything fails the test:
# delete it in the change that removes the arrow. "a.h -> b.h" lets one
# file include a header of a higher layer; "dir/a -> dir/b" leaves a module
# arrow out of the cycle check.
ALLOW='
'

# This script runs no binary; defaults let it run outside make check too.
: "${TOP_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${PIPECTL:=unused}"
. "$TOP_SRCDIR/tests/lib.sh"

PY=/usr/bin/python3
CHECK=$TOP_SRCDIR/tests/layers/layers.py
SRC=${1:-$TOP_SRCDIR/src}
TAB=$(printf '\t')

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 5))' 2>/dev/null; then
	echo "Bail out! needs $PY (3.5 or later)"
	exit 1
fi

# check TREE ALLOWTEXT: runs the checker; sets OUT (a file of its lines)
# and RC (its exit status).
check() {
	printf '%s\n' "$2" > "$T_TMP/allow"
	OUT=$T_TMP/out.$T_N
	"$PY" "$CHECK" "$1" "$T_TMP/allow" > "$OUT" 2>&1
	RC=$?
}

# ------------------------------------------------------------------ the tree

check "$SRC" "$ALLOW"
if ! grep -q "^PASS$TAB\|^FAIL$TAB" "$OUT"; then
	echo "Bail out! $CHECK did not run: $(head -c 400 "$OUT")"
	exit 1
fi
while IFS="$TAB" read -r kind text; do
	case $kind in
	PASS) ok 0 "$text" ;;
	FAIL) ok 1 "$text" ;;
	DIAG) diag "$text" ;;
	*) ok 1 "unexpected checker output: $kind $text" ;;
	esac
done < "$OUT"
case $RC in 0|1) ;; *) ok 1 "checker exit status $RC" ;; esac

# ------------------------------------------------------------------ self-test

# tree NAME FILE:INCLUDE... : makes $T_TMP/NAME with each FILE holding one
# '#include "INCLUDE"' line per pair (an empty INCLUDE makes the file
# only); sets TREE.
tree() {
	TREE=$T_TMP/$1
	shift
	rm -rf "$TREE"
	for pair in "$@"; do
		f=${pair%%:*}
		inc=${pair#*:}
		mkdir -p "$TREE/$(dirname "$f")"
		[ -z "$inc" ] || printf '#include "%s"\n' "$inc" >> "$TREE/$f"
		[ -n "$inc" ] || : >> "$TREE/$f"
	done
}

# has PATTERN: whether the last check's output has a line matching PATTERN.
has() { grep -q -- "$1" "$OUT"; }

# A clean tree passes: including down and within a layer, a header owned by
# its folder's one .c, and a module split over suffixed files.
tree clean base/a.c:base/a.h base/a.h: core/b.c:core/b.h core/b.h:base/a.h \
	store/st.c:store/st_int.h store/st_int.h:store/st.h store/st.h:base/a.h \
	store/st_runs.c:store/st_int.h
check "$TREE" ""
ok $RC "self-test: a clean tree passes"
has "^FAIL" && { diag "$(cat "$OUT")"; }

# An arrow up is reported with its file and line.
tree up base/a.c:base/a.h base/a.h:core/b.h core/b.h:
check "$TREE" ""
[ $RC = 1 ] && has '^FAIL.base/a.h includes its own layer or lower only' &&
	has '^DIAG.base/a.h:1: #include "core/b.h": core is above base'
ok $? "self-test: base/a.h including core/b.h fails, naming base/a.h:1"

# A cycle of three modules is reported with its path.
tree cycle core/x.c:core/y.h core/y.c:core/z.h core/z.h:core/x.h core/x.h: core/y.h: core/z.c:core/z.h
check "$TREE" ""
[ $RC = 1 ] && has '^FAIL.the module graph has no cycle' &&
	has '^DIAG.cycle: core/x -> core/y -> core/z -> core/x$' &&
	has '^DIAG.  core/z -> core/x: core/z.h:1 includes core/x.h$'
ok $? "self-test: core/x -> core/y -> core/z -> core/x is reported as a cycle with its path"

# The cycle of today's tree in miniature: spec.h has no spec.c; config.c
# includes it first, so it is config's header, and dag.h including it
# closes config -> dag -> config.
tree spec core/spec.h: core/config.c:core/spec.h core/dag.h:core/spec.h core/dag.c:core/dag.h
printf '#include "core/dag.h"\n' >> "$TREE/core/config.c"
check "$TREE" ""
[ $RC = 1 ] && has '^DIAG.cycle: core/config -> core/dag -> core/config$'
ok $? "self-test: a header without its own .c belongs to the .c that includes it first"

# An allowlisted module arrow takes the cycle out; once the arrow is gone
# the entry fails.
check "$T_TMP/cycle" "core/z -> core/x  # test"
ok $RC "self-test: an allowlisted module arrow breaks the cycle"
check "$T_TMP/clean" "core/b -> base/a  # test"
[ $RC = 1 ] && has '^FAIL.allowlisted module arrow core/b -> base/a is still on a cycle' &&
	has 'no longer depends on base/a in a cycle: remove the entry'
ok $? "self-test: an allowlisted module arrow that is on no cycle fails"

# Same for a file arrow up.
check "$T_TMP/up" "base/a.h -> core/b.h  # test"
ok $RC "self-test: an allowlisted arrow up passes"
check "$T_TMP/clean" "base/a.h -> core/b.h  # test"
[ $RC = 1 ] && has '^FAIL.allowlisted arrow base/a.h -> core/b.h is still there' &&
	has 'base/a.h no longer includes core/b.h above its layer: remove the entry'
ok $? "self-test: an allowlisted arrow up that is gone fails"

# An entry without its reason is refused.
check "$T_TMP/up" "base/a.h -> core/b.h"
[ $RC = 1 ] && has '^FAIL.the allowlist reads'
ok $? "self-test: an allowlist entry without a comment fails"

# An include by a name relative to the file, or of no file, is reported.
tree rel core/b.c:b.h core/b.h: core/c.c:core/nosuch.h
check "$TREE" ""
[ $RC = 1 ] && has 'core/b.c:1: #include "b.h": name it by its path from src/: "core/b.h"' &&
	has 'core/c.c:1: #include "core/nosuch.h": no such file under src/'
ok $? "self-test: relative and dangling includes are reported"

# A folder that is no layer is reported.
tree nolayer extra/e.c:base/a.h base/a.h:
check "$TREE" ""
[ $RC = 1 ] && has 'extra/e.c: not in a layer folder'
ok $? "self-test: a file outside the layer folders is reported"

done_testing
