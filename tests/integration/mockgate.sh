#!/bin/sh
# The mock API's gates (tests/mockapi/README.md): a response with ?gate=NAME
# is held until /gate/NAME/open, so other tests can act while a request is
# certainly in flight instead of guessing how long it takes.
. "$TOP_SRCDIR/tests/lib.sh"
cd "$T_TMP" || exit 1
start_mockapi

# get PATH OUT: GETs PATH in the background (BG), body and status to OUT.
get() {
	/usr/bin/python3 - "$MOCK_URL$1" >"$2" 2>&1 <<'PY' &
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=120)
    print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
PY
	BG=$!
}
running() { kill -0 "$1" 2>/dev/null; }

is "$(mock_gate g1)" "open=false waiting=0 passed=0" "a new gate is closed and empty"
get "/json/7?gate=g1" a.out
A=$BG
get "/json/8?gate=g1&delay=5" b.out
B=$BG
wait_until mock_gate_waiting g1 2
ok $? "two responses wait at the gate"
running $A && running $B
ok $? "neither client has its answer while the gate is closed"
is "$(cat a.out b.out)" "" "nothing was sent"
is "$(mock_gate g1 open)" "open=true waiting=0 passed=2" "opening the gate releases both"
wait $A
wait $B
is "$(cat a.out)" '200 {"id":7,"name":"item-7","price":19.99,"qty":3,"tags":["a","b"]}' \
	"the first answer is the route's own"
is "$(cat b.out)" '200 {"id":8,"name":"item-8","price":19.99,"qty":3,"tags":["a","b"]}' \
	"the second one too, after its delay"
get "/json/9?gate=g1" c.out
wait $BG
is "$(cat c.out)" '200 {"id":9,"name":"item-9","price":19.99,"qty":3,"tags":["a","b"]}' \
	"an open gate lets a later request through at once"
is "$(mock_gate g1 close)" "open=false waiting=0 passed=3" "closing it again"
get "/json/10?gate=g1" d.out
D=$BG
wait_until mock_gate_waiting g1 1
ok $? "a closed gate holds again"
get "/json/11?gate=g2" e.out
E=$BG
wait_until mock_gate_waiting g2 1
is "$(mock_gate g2 open)" "open=true waiting=0 passed=1" "gates are independent"
wait $E
running $D
ok $? "opening another gate does not release this one"
mock_gate g1 open >/dev/null
wait $D
is "$(cat d.out)" '200 {"id":10,"name":"item-10","price":19.99,"qty":3,"tags":["a","b"]}' \
	"released when its own gate opens"

get "/gate/g1/frob" f.out
wait $BG
is "$(cat f.out)" '404 {"error":"not found"}' "an unknown gate action is a 404"
get "/gate/" f.out
wait $BG
is "$(cat f.out)" '404 {"error":"not found"}' "a gate needs a name"
is "$(grep -c '"/gate' "$MOCK_LOG")" 0 "gate routes are not logged"
is "$(grep -c '"/json/' "$MOCK_LOG")" 5 "gated requests are logged once each"

done_testing
