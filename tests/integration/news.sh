#!/bin/sh
# pipelines/news-aggregator.yaml end to end against the recorded news APIs of
# tests/mockapi (--news): rows checked one by one against a small reference
# implementation in Python that reads the recorded files; a rate-limited
# source retried after its Retry-After; a bad key failing the run with the
# key redacted; keys never reaching stderr or the state database.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1

PIPELINE="$TOP_SRCDIR/pipelines/news-aggregator.yaml"
NEWS="$TOP_SRCDIR/tests/mockapi/news"
# The shipped pipeline must stay valid: if it does not, that is the failure
# to report (every later check would only repeat it).
out=$("$PIPECTL" validate "$PIPELINE" 2>&1)
rc=$?
ok $rc "pipectl validate accepts pipelines/news-aggregator.yaml"
if [ $rc -ne 0 ]; then
	diag "$out"
	done_testing
fi
start_mockapi --news "$NEWS"

# Keys: the mock picks its answer from the word before the first "-"; the
# rest makes each key distinctive, so grepping for it means something.
NK=nk-5d1e9a77c3
GK=gk-81c2f0aa64
YK=yk-3b7e0c19f2
SLOW=slow-4f0a9c2e71
FLAKY=flaky-b6d20e5a13
BAD=bad-c9e37f1d08
ALL_KEYS="$NK $GK $YK $SLOW $FLAKY $BAD"
TAB=$(printf '\t')

# The reference: the same record shape, URL rule and "first copy wins" rule,
# written independently of the pipeline's jq.
cat >ref.py <<'PY'
import json, re, sys
from datetime import datetime, timezone

def canon(url):                       # no query, fragment or trailing slash
    return re.sub(r"[?#].*", "", url).rstrip("/")

def utc(ts):
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

def load(name):
    return json.load(open(f"{sys.argv[1]}/{name}", encoding="utf-8"))

newsapi = [(a["url"], a["title"], a["source"]["name"], a["publishedAt"], a["description"])
           for a in load("newsapi/top-headlines.json")["articles"] if a["title"] != "[Removed]"]
guardian = [(r["webUrl"], r["webTitle"], "The Guardian", r["webPublicationDate"],
             r["fields"]["trailText"]) for r in load("guardian/search.json")["response"]["results"]]
nyt = [(r["url"], r["title"], "The New York Times", r["published_date"], r["abstract"])
       for r in load("nyt/home.json")["results"]]

def rows(sources):                    # (url, title, source, published_at, summary) lines
    return [(canon(u), t, s, utc(p), m) for src in sources for (u, t, s, p, m) in src]

mode = sys.argv[2]
if mode == "counts":                  # records per source
    print(len(newsapi), len(guardian), len(nyt))
    sys.exit(0)
if mode == "candidates":              # every source's copy of every story
    out = rows([newsapi, guardian, nyt])
else:                                 # the first copy per URL, sources in this order
    order = [newsapi, guardian, nyt] if mode == "newsapi-first" else [guardian, nyt, newsapi]
    seen, out = set(), []
    for r in rows(order):
        if r[0] not in seen:
            seen.add(r[0])
            out.append(r)
for r in sorted(out):
    print("\t".join(r))
PY
/usr/bin/python3 ref.py "$NEWS" newsapi-first >expect-newsapi-first || exit 1
/usr/bin/python3 ref.py "$NEWS" others-first >expect-others-first || exit 1
/usr/bin/python3 ref.py "$NEWS" candidates >candidates || exit 1
N_URLS=$(cut -f1 candidates | sort -u | wc -l | tr -d ' ')
set -- $(/usr/bin/python3 ref.py "$NEWS" counts)
N_NEWSAPI=$1 N_GUARDIAN=$2 N_NYT=$3
diag "recorded: $(wc -l <candidates) articles, $N_URLS distinct URLs"

# run_news DIR NEWSAPI_KEY GUARDIAN_KEY NYT_KEY: a copy of the pipeline in
# DIR, run against the mock; sets RC, output in DIR/out and DIR/err.
run_news() {
	mkdir -p "$1"
	cp "$PIPELINE" "$1/"
	(cd "$1" && NEWSAPI_KEY=$2 GUARDIAN_KEY=$3 NYT_KEY=$4 "$PIPECTL" run news-aggregator.yaml \
		-p newsapi_base="$MOCK_URL/newsapi" -p guardian_base="$MOCK_URL/guardian" \
		-p nyt_base="$MOCK_URL/nyt" >out 2>err)
	RC=$?
}

# db_rows DIR: the table, one tab-separated row per line, by URL.
db_rows() {
	sq -separator "$TAB" "$1/news.db" \
		'SELECT url, title, source, published_at, summary FROM headlines ORDER BY url'
}

# check_rows DIR EXPECTED-FILE WHAT: one test per expected row, then the count.
check_rows() {
	while IFS= read -r line; do
		url=${line%%"$TAB"*}
		is "$(sq -separator "$TAB" "$1/news.db" \
			"SELECT url, title, source, published_at, summary FROM headlines WHERE url = '$url'")" \
			"$line" "$3: row $url"
	done <"$2"
	is "$(sq "$1/news.db" 'SELECT count(*) FROM headlines')" "$(wc -l <"$2" | tr -d ' ')" \
		"$3: no other rows"
}

# check_any DIR WHAT: every row is one source's copy of its story, each URL once.
check_any() {
	db_rows "$1" >"$1/rows"
	bad=$(grep -Fxv -f candidates "$1/rows")
	is "$bad" "" "$2: every row is a source's copy of its story"
	is "$(wc -l <"$1/rows" | tr -d ' ')" "$N_URLS" "$2: one row per canonical URL"
}

# no_keys DIR WHAT: no key in stderr nor in the state database.
no_keys() {
	sqlite3 "$1/.pipectl/state.db" .dump >"$1/state.dump"
	found=""
	grep -q 'CREATE TABLE runs' "$1/state.dump" || found=" (no state database)"
	for k in $ALL_KEYS; do
		grep -qF -- "$k" "$1/err" "$1/state.dump" && found="$found $k"
	done
	is "$found" "" "$2: no key in stderr or in the state database"
}

# ---- all three answer at once: the first copy to arrive wins.
run_news plain "$NK" "$GK" "$YK"
is "$RC" 0 "plain: run exits 0"
check_any plain plain
no_keys plain plain
for k in "$NK" "$GK" "$YK"; do
	grep -qF -- "$k" "$MOCK_LOG"
	ok $? "plain: the mock received the key $k"
done

# ---- Guardian and NYT slow (1.5 s): NewsAPI's copies arrive first and win.
run_news newsapi-first "$NK" "$SLOW" "$SLOW"
is "$RC" 0 "newsapi first: run exits 0"
check_rows newsapi-first expect-newsapi-first "newsapi first"
no_keys newsapi-first "newsapi first"

# ---- NewsAPI slow: the publishers' own copies win.
run_news others-first "$SLOW" "$GK" "$YK"
is "$RC" 0 "others first: run exits 0"
check_rows others-first expect-others-first "others first"
no_keys others-first "others first"
# the two orders really differ, or the rows above prove nothing about dedupe
ok "$(cmp -s expect-newsapi-first expect-others-first; [ $? -ne 0 ]; echo $?)" \
	"the two orders give different rows for shared stories"

# ---- NewsAPI rate-limits the first request (429, Retry-After: 1): retried.
run_news flaky "$FLAKY" "$GK" "$YK"
is "$RC" 0 "flaky: run exits 0 after a retry"
check_any flaky flaky
no_keys flaky flaky
is "$(/usr/bin/python3 - "$MOCK_LOG" "$FLAKY" <<'PY'
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
reqs = [r for r in reqs if r["path"] == "/newsapi/v2/top-headlines" and sys.argv[2] in r["query"]]
codes = ",".join(str(r["status"]) for r in reqs)
gap = reqs[1]["ts"] - reqs[0]["ts"] if len(reqs) == 2 else -1
print(codes, "gap-ok" if 0.9 <= gap else "gap=%.3f" % gap)
PY
)" "429,200 gap-ok" "flaky: two requests to /newsapi, 429 then 200, at least 1 s apart"
# The wait pipectl planned (a loaded machine may run the retry late, never
# early): the Retry-After, exactly.
is "$(sq flaky/.pipectl/state.db "SELECT attempt || ':' || wait_retry_after || ':' || wait_backoff
	FROM attempts WHERE url LIKE '%/newsapi/%' AND attempt > 1" 2>&1)" "2:1.0:0.0" \
	"flaky: the retry waited for the Retry-After: 1 s, planned"

# ---- A bad Guardian key: a 401 that is not retried; the run fails.
# NewsAPI and NYT are slow so that the failure comes first: the merge stage
# needs all three, so it is cancelled and nothing is loaded, while the other
# two fetches still finish.
run_news bad "$SLOW" "$BAD" "$SLOW"
is "$RC" 1 "bad key: run exits 1"
grep -qF "GET $MOCK_URL/guardian/search?" bad/err &&
	grep -F "GET $MOCK_URL/guardian/search?" bad/err | grep -qF "api-key=***: HTTP 401"
ok $? "bad key: the message names the URL, key redacted, and the 401"
no_keys bad "bad key"
is "$(grep -c '"path":"/guardian/search".*'"$BAD" "$MOCK_LOG")" 1 "bad key: a 401 is not retried"
(cd bad && "$PIPECTL" status --json -f news-aggregator.yaml) >bad/st.json
is "$(/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%s=%s/%s" % (x["stage"], x["status"], x["records_out"]) for x in d["stages"]))' bad/st.json)" \
	"newsapi=succeeded/$N_NEWSAPI guardian=failed/0 nyt=succeeded/$N_NYT headlines=cancelled/0 headlines_db=cancelled/0" \
	"bad key: the other fetches finish, the merge and the load are cancelled"
is "$(sq bad/news.db 'SELECT count(*) FROM headlines' 2>/dev/null || echo 0)" 0 \
	"bad key: nothing loaded"

done_testing
