#!/bin/sh
# Scale: a generated pipeline of 10,000 stages runs through the real binary.
# Layers of 50 stages: 40 fetch stages that each need one stage of the layer
# before (chains that cross), 10 sinks that each need 1 to 3 of them (fan-in),
# and a last sink that needs the last layer's fetch stages. Every stage reads
# a local file, so no jq program is compiled. Checked: every stage succeeded,
# every record arrived, and the scheduler's work (its visits of stages, told
# at debug level) grows linearly with the stages, not with their square.
. "$TOP_SRCDIR/tests/lib.sh"

N=10000
cd "$T_TMP" || exit 1
printf '{"n": 1}\n' >one.json

# gen COUNT > FILE: a pipeline of COUNT stages (COUNT - 1 a multiple of 50).
gen() {
	awk -v n="$1" -v dir="$T_TMP" 'BEGIN {
		srand(7);
		print "pipeline: scale";
		print "stages:";
		for (r = 0; r < 40; r++) {
			printf "  f0_%d:\n    fetch: { file: one.json }\n", r;
		}
		made = 40; layer = 0;
		while (made + 51 <= n) {
			layer++;
			for (r = 0; r < 40; r++) {
				printf "  f%d_%d:\n    needs: f%d_%d\n", layer, r, layer - 1, int(rand() * 40);
				printf "    fetch: { url: \"file://%s/one.json\" }\n", dir;
			}
			for (r = 0; r < 10; r++) {
				k = 1 + int(rand() * 3); list = "";
				for (j = 0; j < k; j++)
					list = list (j ? ", " : "") sprintf("f%d_%d", layer, (r * 4 + j * 13) % 40);
				printf "  k%d_%d:\n    needs: [%s]\n", layer, r, list;
				printf "    load: { file: { path: out/%s.jsonl } }\n", "k" layer "_" r;
			}
			made += 50;
		}
		for (r = 0; made < n - 1; r++) {
			printf "  f%d_%d:\n    fetch: { file: one.json }\n", layer + 1, r;
			made++;
		}
		printf "  end:\n    needs: [";
		for (r = 0; r < 40; r++)
			printf "%sf%d_%d", r ? ", " : "", layer, r;
		print "]";
		print "    load: { file: { path: out.jsonl } }";
	}'
}

gen $N >big.yaml
is "$(grep -c '^  [a-z]' big.yaml)" "$N" "the generated file has $N stages"

"$PIPECTL" validate big.yaml >v.out 2>v.err
is "$?" 0 "validate accepts the $N-stage pipeline"
grep -q "ok ($N stages)" v.out
ok $? "validate counts $N stages"

"$PIPECTL" run big.yaml --state st.db -v >run.out 2>run.err
is "$?" 0 "run of $N stages exits 0"
is "$(sq st.db "SELECT count(*) FROM stage_runs")" "$N" "a stage row each"
is "$(sq st.db "SELECT count(*) FROM stage_runs WHERE status = 'succeeded'")" "$N" \
	"every stage succeeded"
is "$(sq st.db "SELECT count(DISTINCT seq) FROM stage_runs")" "$N" "distinct creation order"
is "$(wc -l <out.jsonl | tr -d ' ')" 40 "the last sink has a record of each chain"
is "$(sort -u out.jsonl)" '{"n":1}' "the records arrived as read"
is "$(sq st.db "SELECT sum(records_in) FROM stage_runs WHERE stage LIKE 'k%'")" \
	"$(awk '/^  k/ { k = 1; next } k && /needs:/ { n += gsub(/f[0-9]+_[0-9]+/, "&"); k = 0 }
	        END { print n }' big.yaml)" "the fan-in sinks got a record per need"

# A pass of the scheduler visits only stages woken since the last one: the
# visits stay within a small multiple of the stages (visiting every stage in
# every pass made them grow with the square of the stages).
visits=$(sed -n 's/.*scheduler: [0-9]* stages, \([0-9]*\) visits.*/\1/p' run.err)
diag "scheduler visits: $visits for $N stages"
[ -n "$visits" ] && [ "$visits" -le $((N * 20)) ]
ok $? "scheduler visits ($visits) at most 20 per stage"

done_testing
