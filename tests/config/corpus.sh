#!/bin/sh
# tests/config/corpus.sh: the data-driven config cases. Each directory in
# tests/config/invalid/ holds a pipeline.yaml and the exact stderr that
# `pipectl validate pipeline.yaml` must print for it (exit status 2); every
# file in tests/config/valid/ and pipelines/ must validate (exit status 0).

. "$TOP_SRCDIR/tests/lib.sh"

for dir in "$TOP_SRCDIR"/tests/config/invalid/*/; do
	[ -f "$dir/pipeline.yaml" ] || continue
	name=$(basename "$dir")
	err="$T_TMP/$name.stderr"
	(cd "$dir" && "$PIPECTL" validate pipeline.yaml) >/dev/null 2>"$err"
	rc=$?
	if [ $rc -ne 2 ]; then
		ok 1 "invalid/$name: exit status $rc, want 2"
		sed 's/^/#   /' "$err"
		continue
	fi
	if diff -u "$dir/expected" "$err" >"$T_TMP/$name.diff" 2>&1; then
		ok 0 "invalid/$name"
	else
		ok 1 "invalid/$name: stderr differs from expected"
		sed 's/^/#   /' "$T_TMP/$name.diff"
	fi
done

for f in "$TOP_SRCDIR"/tests/config/valid/*.yaml "$TOP_SRCDIR"/pipelines/*.yaml; do
	[ -f "$f" ] || continue
	rel=${f#"$TOP_SRCDIR"/}
	err="$T_TMP/valid.stderr"
	"$PIPECTL" validate "$f" >/dev/null 2>"$err"
	rc=$?
	ok $rc "$rel validates"
	[ $rc -eq 0 ] || sed 's/^/#   /' "$err"
done

done_testing
