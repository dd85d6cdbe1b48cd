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
set -euo pipefail
MODE=bytes
if [[ ${1:-} == --requests ]]; then
    MODE=requests
    shift
fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
if [[ $MODE == requests ]]; then
    SMALL=${1:-200}
    LARGE=${2:-1000}
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
count() { # MIB (or requests per connection): instructions counted in server_turn
    local var=SEND_PATH_MIB
    [[ $MODE == requests ]] && var=SEND_PATH_REQUESTS
    env "$var=$1" valgrind --tool=callgrind --toggle-collect='*server_turn*' \
        --callgrind-out-file="$OUT/cg.$1" "$BIN" >"$OUT/run.$1" 2>&1 ||
        { cat "$OUT/run.$1" >&2; exit 1; }
    awk '/^summary:|^totals:/ { print $2; exit }' "$OUT/cg.$1"
}
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
