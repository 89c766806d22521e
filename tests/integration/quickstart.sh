#!/bin/sh
# End to end: the quick start pipeline, its SQLite rows checked one by one,
# its JSON-lines output, a second run (upsert: no duplicates), and status.
. "$TOP_SRCDIR/tests/lib.sh"

cp -R "$TOP_SRCDIR/pipelines" "$T_TMP/p"
chmod -R u+w "$T_TMP/p"
rm -rf "$T_TMP/p/out" "$T_TMP/p/.pipectl"
cd "$T_TMP/p" || exit 1

"$PIPECTL" run quickstart.yaml >"$T_TMP/out" 2>"$T_TMP/err"
is "$?" 0 "quickstart run exits 0"
grep -q 'out/quickstart.db' "$T_TMP/err"
ok $? "run prints where the data went"
grep -q "sqlite3 out/quickstart.db 'SELECT \* FROM \"products\" LIMIT 10'" "$T_TMP/err"
ok $? "run prints how to look at it"

db=out/quickstart.db
rows=$(sq -separator '|' "$db" "SELECT sku, name, category, price, stock, source, currency, in_stock FROM products ORDER BY sku")
expected='A-100|Desk lamp|lighting|19.99|12|catalogue|USD|1
A-101|Floor lamp|lighting|89.5|3|catalogue|USD|1
A-102|LED strip 5m|lighting|24|40|catalogue|USD|1
B-200|Oak desk|furniture|349|2|catalogue|USD|1
B-201|Office chair|furniture|219.99|7|catalogue|USD|1
B-202|Bookshelf|furniture|129.95|5|catalogue|USD|1
C-300|USB-C hub|electronics|39.9|25|catalogue|USD|1
C-301|Mechanical keyboard|electronics|119|9|catalogue|USD|1
C-302|27in monitor|electronics|279.99|4|catalogue|USD|1
C-303|Webcam|electronics|64.5|0|catalogue|USD|0
D-400|Notebook A5|stationery|4.99|120|catalogue|USD|1
D-401|Fountain pen|stationery|34.75|18|catalogue|USD|1
D-402|Sticky notes|stationery|2.49|300|catalogue|USD|1
D-403|Desk organiser|stationery|15|22|catalogue|USD|1
E-500|Standing desk|furniture|538.92|6|supplier-eu|USD|1
E-501|Monitor arm|furniture|86.39|15|supplier-eu|USD|1
E-502|Desk mat|stationery|19.99|0|supplier-eu|USD|0
E-503|Cable tray|furniture|31.32|3|supplier-eu|USD|1'
i=0
echo "$expected" | while IFS= read -r line; do
	i=$((i + 1))
	echo "$line"
done >"$T_TMP/want"
echo "$rows" >"$T_TMP/got"
n=1
while IFS= read -r want; do
	got=$(sed -n "${n}p" "$T_TMP/got")
	is "$got" "$want" "products row $n: $(echo "$want" | cut -d'|' -f1)"
	n=$((n + 1))
done <"$T_TMP/want"
is "$(wc -l <"$T_TMP/got" | tr -d ' ')" 18 "products has exactly 18 rows (the duplicate E-501 dropped)"

is "$(sq "$db" "SELECT typeof(price) || ',' || typeof(stock) || ',' || typeof(name) FROM products WHERE sku = 'A-100'")" \
	"real,integer,text" "values keep their JSON types"
is "$(sq "$db" "SELECT price = 19.99 FROM products WHERE sku = 'A-100'")" 1 \
	"19.99 is stored exactly as the double 19.99"

restock=$(sort out/restock.jsonl)
is "$restock" '{"sku":"A-101","name":"Floor lamp","stock":3}
{"sku":"B-200","name":"Oak desk","stock":2}
{"sku":"C-302","name":"27in monitor","stock":4}
{"sku":"C-303","name":"Webcam","stock":0}
{"sku":"E-502","name":"Desk mat","stock":0}
{"sku":"E-503","name":"Cable tray","stock":3}' "restock.jsonl holds the low-stock products"
ok "$(ls out/ | grep -c tmp)" "no temporary file left beside the output"

"$PIPECTL" status --json -f quickstart.yaml >"$T_TMP/status.json"
is "$?" 0 "status --json exits 0"
st() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); s={x['stage']:x for x in d['stages']}; print($1)" "$T_TMP/status.json"; }
is "$(st "d['run']['status']")" succeeded "run recorded as succeeded"
is "$(st "s['catalogue']['records_in'], s['catalogue']['records_out'], s['catalogue']['requests']")" "3 14 3" "catalogue: 3 documents, 14 records, 3 requests"
is "$(st "s['supplier']['records_in'], s['supplier']['records_out']")" "5 5" "supplier: 5 lines in, 5 records out"
is "$(st "s['products']['records_in'], s['products']['records_out']")" "19 18" "products: 19 in, 18 out after dedupe"
is "$(st "s['products_db']['records_in'], s['products_db']['records_out']")" "18 18" "products_db: 18 rows written"
is "$(st "s['restock_file']['records_out']")" 6 "restock_file: 6 records written"
is "$(st "[x['stage'] for x in d['stages']][-1] in ('products_db','restock_file')")" True "stages listed in flow order"

"$PIPECTL" status -f quickstart.yaml >"$T_TMP/status.txt"
grep -Eq '^products_db +load.sqlite +succeeded +18 +18' "$T_TMP/status.txt"
ok $? "status table shows products_db counts"

# A second run upserts: same rows, no duplicates, and a second run id.
"$PIPECTL" run -q quickstart.yaml >/dev/null 2>&1
is "$?" 0 "second run exits 0"
is "$(sq "$db" 'SELECT count(*) FROM products')" 18 "second run upserts: still 18 rows"
"$PIPECTL" runs -f quickstart.yaml >"$T_TMP/runs.txt"
is "$(grep -c 'quickstart' "$T_TMP/runs.txt")" 2 "runs lists both runs"

# A parameter changes the data: -p currency=EUR converts every price (the
# catalogue's USD at eur_to_usd, the supplier's EUR as they are).
"$PIPECTL" run -q quickstart.yaml -p currency=EUR >/dev/null 2>&1
is "$(sq "$db" "SELECT DISTINCT currency FROM products")" EUR "-p overrides a parameter"
is "$(sq "$db" "SELECT group_concat(sku || '=' || price, ' ') FROM (SELECT sku, price FROM products
	WHERE sku IN ('A-100', 'B-200', 'D-403', 'E-500', 'E-501', 'E-503') ORDER BY sku)")" \
	"A-100=18.51 B-200=323.15 D-403=13.89 E-500=499 E-501=79.99 E-503=29" \
	"-p currency=EUR: USD prices converted at eur_to_usd 1.08, EUR prices kept"
"$PIPECTL" run -q quickstart.yaml -p currency=EUR -p eur_to_usd=2 >/dev/null 2>&1
is "$(sq "$db" "SELECT price FROM products WHERE sku = 'B-200'")" 174.5 \
	"-p eur_to_usd=2: the rate is used (349 USD = 174.5 EUR)"
"$PIPECTL" run -q quickstart.yaml -p currency=GBP >/dev/null 2>"$T_TMP/err"
is "$?" 1 "-p currency=GBP: the run fails"
grep -q 'currency must be USD or EUR, not GBP' "$T_TMP/err"
ok $? "-p currency=GBP: the error says which currencies work"
"$PIPECTL" run -q quickstart.yaml -p nope=1 >/dev/null 2>"$T_TMP/err"
is "$?" 2 "unknown parameter: exit 2"
grep -q 'unknown parameter "nope"' "$T_TMP/err"
ok $? "unknown parameter is named"
"$PIPECTL" run -q quickstart.yaml -p eur_to_usd=abc >/dev/null 2>"$T_TMP/err"
is "$?" 2 "parameter of the wrong type: exit 2"

done_testing
