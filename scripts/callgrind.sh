#!/usr/bin/env bash
# Instructions per byte of the server's send path (benches/send_path.rs): callgrind counts
# the server node's turns of one HTTP/1.1 download of SMALL and of LARGE MiB in memory; the
# difference over the difference in bytes is the cost of one more byte (handshake, request
# and setup cancel out). Prints the top functions of the large run too.
#
#   scripts/callgrind.sh [SMALL_MIB LARGE_MIB]     (default 4 20)
#
# --requests [SMALL LARGE]: instructions per request instead, for keep-alive GET /bytes/100
# on 10 connections (wrk -c10's pattern; SEND_PATH_CONNECTIONS=N for another number),
# SMALL and LARGE requests per connection (default 200 1000).
#
# --busy [FEW MANY]: cache misses per request of busy keep-alive connections, FEW against
# MANY of them (default 100 10000; the pattern of `cargo bench --bench http -- h1_busy`):
# instructions, D1 misses and last-level misses per request, from callgrind's cache
# simulation with a 32 KiB D1 and a 1 MiB last level (one core's L2 here), counted over
# rounds 3 and 4 (setup and the first rounds cancel out). Repeatable, unlike req/s on a
# shared machine: the same binary gives the same figures to about +-1 instruction and
# +-0.1 last-level misses; a rebuild moves D1 misses by up to 5 %, last-level ones by ~1.
set -euo pipefail
MODE=bytes
if [[ ${1:-} == --requests ]]; then
    MODE=requests
    shift
elif [[ ${1:-} == --busy ]]; then
    MODE=busy
    shift
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
if [[ $MODE == requests ]]; then
    SMALL=${1:-200}
    LARGE=${2:-1000}
elif [[ $MODE == busy ]]; then
    FEW=${1:-100}
    MANY=${2:-10000}
else
    SMALL=${1:-4}
    LARGE=${2:-20}
fi
PROG=$(basename "$0")
# shellcheck source=scripts/deps.sh
source "$REPO/scripts/deps.sh"
DEPS_PROG=$PROG
deps_ensure valgrind || exit 1
cd "$REPO"
BIN=$(cargo bench --bench send_path --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "send_path" and m.get("executable"):
        print(m["executable"])')
[[ -x $BIN ]] || { echo "$PROG: no send_path benchmark binary" >&2; exit 1; }
OUT=$(mktemp -d /tmp/tapir-callgrind.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
run_callgrind() { # OUT [VALGRIND_OPTION...]: the benchmark (its settings in the
    # environment) under callgrind, counting inside server_turn only, into OUT
    local out=$1
    shift
    valgrind --tool=callgrind "$@" --toggle-collect='*server_turn*' \
        --callgrind-out-file="$out" "$BIN" >"$out.run" 2>&1 ||
        { cat "$out.run" >&2; exit 1; }
}
count() { # MIB (or requests per connection): instructions counted in server_turn
    local var=SEND_PATH_MIB
    [[ $MODE == requests ]] && var=SEND_PATH_REQUESTS
    export "$var=$1" # count runs in a subshell: $(count N)
    run_callgrind "$OUT/cg.$1"
    awk '/^summary:|^totals:/ { print $2; exit }' "$OUT/cg.$1"
}
if [[ $MODE == busy ]]; then
    # Events of the server's turns over ROUNDS rounds of CONNS connections, as
    # "Ir D1-misses LL-misses".
    busy_count() { # CONNS ROUNDS
        local out="$OUT/cg.busy.$1.$2"
        SEND_PATH_BUSY=$1 SEND_PATH_REQUESTS=$2 run_callgrind "$out" --cache-sim=yes \
            --D1=32768,8,64 --LL=1048576,16,64
        awk '/^events:/ { for (i = 2; i <= NF; i++) col[$i] = i - 1 }
             /^summary:|^totals:/ {
                 printf "%s %s %s\n", $(col["Ir"] + 1),
                     $(col["D1mr"] + 1) + $(col["D1mw"] + 1),
                     $(col["DLmr"] + 1) + $(col["DLmw"] + 1); exit }' "$out"
    }
    echo "per request, rounds 3-4 (32 KiB D1, 1 MiB last level):"
    printf "%10s %14s %12s %12s\n" connections instructions "D1 misses" "LL misses"
    for conns in $FEW $MANY; do
        read -r i2 d2 l2 < <(busy_count "$conns" 2)
        read -r i4 d4 l4 < <(busy_count "$conns" 4)
        awk -v c="$conns" -v i2="$i2" -v i4="$i4" -v d2="$d2" -v d4="$d4" -v l2="$l2" -v l4="$l4" \
            'BEGIN { n = 2 * c; printf "%10d %14.0f %12.1f %12.1f\n", c, (i4 - i2) / n, (d4 - d2) / n, (l4 - l2) / n }'
    done
    exit 0
fi
small=$(count "$SMALL")
large=$(count "$LARGE")
if [[ $MODE == requests ]]; then
    echo "server instructions: $SMALL requests per connection $small, $LARGE $large"
    awk -v a="$small" -v b="$large" -v s="$SMALL" -v l="$LARGE" \
        -v c="${SEND_PATH_CONNECTIONS:-10}" \
        'BEGIN { printf "instructions per request: %.0f\n", (b - a) / ((l - s) * c) }'
else
    echo "server instructions: $SMALL MiB $small, $LARGE MiB $large"
    awk -v a="$small" -v b="$large" -v s="$SMALL" -v l="$LARGE" \
        'BEGIN { printf "instructions per byte sent: %.3f\n", (b - a) / ((l - s) * 1048576) }'
fi
callgrind_annotate --inclusive=no "$OUT/cg.$LARGE" 2>/dev/null | sed -n '1,40p' | grep -v '^--\|^$' | tail -n +8 | head -25
