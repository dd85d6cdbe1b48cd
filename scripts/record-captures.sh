#!/usr/bin/env bash
# Records the real captures in captures/real/: clients the project did not write (curl,
# wget, Python http.client, nghttp, h2load, ab) fetching the small static site in
# captures/real/site/ from nginx and from `tapir serve --root`, captured with tcpdump.
#
#   sudo scripts/record-captures.sh            # rewrites captures/real/*.pcap*
#
# Everything happens inside network namespaces made here with unique names (removed again
# on exit, also on error or Ctrl-C); no traffic leaves them:
#   nginx: namespace <tag>-srv (nginx, 10.8.0.2/24, fd00:8::2/64) joined by a veth pair to
#          <tag>-cli (clients and tcpdump, 10.8.0.1/24, fd00:8::1/64);
#   tapir: a namespace from scripts/netns.sh with TAP tap0 (tapir 10.7.0.2, fd00:7::2; the
#          kernel-side clients and tcpdump at 10.7.0.1).
# nginx serves HTTP/1.1 on port 80 and HTTP/2 with prior knowledge on 8080; tapir serves
# both on port 80. Needs root, iproute2, tcpdump, editcap (wireshark-common), nginx, curl,
# wget, python3, nghttp and h2load (nghttp2-client), ab (apache2-utils).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/captures/real
SITE=$OUT/site
TAG=taprec$$
SRV=$TAG-srv
CLI=$TAG-cli
TAPNS=$TAG-tap
WORK=$(mktemp -d /tmp/$TAG.XXXXXX)
PIDS=()

[[ $(id -u) -eq 0 ]] || { echo "record-captures.sh: must run as root (namespaces)" >&2; exit 1; }
for tool in ip tcpdump editcap nginx curl wget python3 nghttp h2load ab; do
    command -v "$tool" >/dev/null || { echo "record-captures.sh: '$tool' is missing" >&2; exit 1; }
done

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    ip netns del "$SRV" 2>/dev/null
    ip netns del "$CLI" 2>/dev/null
    "$ROOT/scripts/netns.sh" down "$TAPNS" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if [[ -z ${TAPIR:-} ]]; then
    (cd "$ROOT" && cargo build --release --quiet)
    TAPIR=${CARGO_TARGET_DIR:-$ROOT/target}/release/tapir
fi

# --- the nginx pair ---------------------------------------------------------------------
ip netns add "$SRV"
ip netns add "$CLI"
ip link add "${TAG}c" type veth peer name "${TAG}s"
ip link set "${TAG}c" netns "$CLI"
ip link set "${TAG}s" netns "$SRV"
ip -n "$CLI" link set lo up
ip -n "$SRV" link set lo up
ip -n "$CLI" addr add 10.8.0.1/24 dev "${TAG}c"
ip -n "$CLI" addr add fd00:8::1/64 dev "${TAG}c" nodad
ip -n "$SRV" addr add 10.8.0.2/24 dev "${TAG}s"
ip -n "$SRV" addr add fd00:8::2/64 dev "${TAG}s" nodad
ip -n "$CLI" link set "${TAG}c" up
ip -n "$SRV" link set "${TAG}s" up

mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
user root;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    types { text/html html; text/css css; application/octet-stream bin; }
    default_type application/octet-stream;
    keepalive_requests 1000;
    client_body_temp_path $WORK/nginx/body;
    server { listen 10.8.0.2:80; listen [fd00:8::2]:80; root $SITE; }
    server { listen 10.8.0.2:8080 http2; root $SITE; }
}
CONF
ip netns exec "$SRV" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)

# --- tapir on a TAP device --------------------------------------------------------------
"$ROOT/scripts/netns.sh" up "$TAPNS" tap0 >/dev/null
ip netns exec "$TAPNS" "$TAPIR" serve --tap tap0 --root "$SITE" --no-https --log warn &
PIDS+=($!)

wait_port() { # NS ADDR PORT
    for _ in $(seq 100); do
        ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "record-captures.sh: $2:$3 never answered" >&2
    exit 1
}
wait_port "$CLI" 10.8.0.2 80
wait_port "$CLI" 10.8.0.2 8080
wait_port "$TAPNS" 10.7.0.2 80

# record NAME NS IFACE CMD... : capture CMD's traffic (run in NS) on IFACE into NAME.pcap
record() {
    local name=$1 ns=$2 iface=$3
    shift 3
    local file=$OUT/$name.pcap
    : >"$WORK/tcpdump.log"
    # --immediate-mode: packets reach the file at once, not when a ring block fills.
    ip netns exec "$ns" tcpdump -Z root -q --immediate-mode -i "$iface" -s 0 -U -w "$file" tcp \
        2>"$WORK/tcpdump.log" &
    local dump=$!
    for _ in $(seq 50); do
        grep -q "listening on" "$WORK/tcpdump.log" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.2
    ip netns exec "$ns" "$@" >/dev/null
    sleep 1
    kill -INT "$dump"
    wait "$dump" || true
    echo "recorded $(basename "$file") ($(stat -c %s "$file") bytes)"
}

cat >"$WORK/client.py" <<'PY'
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
for method, path in [("GET", "/"), ("HEAD", "/style.css"), ("GET", "/data/blob.bin")]:
    conn.request(method, path)
    response = conn.getresponse()
    response.read()
conn.close()
PY

# server label, namespace, interface, HTTP/1.1 address, HTTP/1.1 IPv6 address, h2c port
for target in "nginx $CLI ${TAG}c 10.8.0.2 fd00:8::2 8080" "tapir $TAPNS tap0 10.7.0.2 fd00:7::2 80"; do
    read -r label ns iface ip ip6 h2 <<<"$target"
    record "curl-get-$label" "$ns" "$iface" curl -sS -o /dev/null "http://$ip/"
    record "curl-keepalive-$label" "$ns" "$iface" curl -sS -o /dev/null -o /dev/null -o /dev/null \
        -o /dev/null "http://$ip/index.html" "http://$ip/style.css" "http://$ip/data/blob.bin" \
        "http://$ip/missing.html"
    record "curl-chunked-post-$label" "$ns" "$iface" curl -sS -o /dev/null \
        -H "Transfer-Encoding: chunked" --data-binary "@$SITE/page.html" "http://$ip/page.html"
    record "curl-ipv6-$label" "$ns" "$iface" curl -sS -o /dev/null -g "http://[$ip6]/page.html"
    editcap -F pcapng "$OUT/curl-ipv6-$label.pcap" "$OUT/curl-ipv6-$label.pcapng"
    rm "$OUT/curl-ipv6-$label.pcap"
    record "wget-$label" "$ns" "$iface" wget -q -O /dev/null "http://$ip/page.html"
    # Linux cooked capture (SLL2): tcpdump on "any".
    record "python-$label" "$ns" any python3 "$WORK/client.py" "$ip"
    record "nghttp-$label" "$ns" "$iface" nghttp -n "http://$ip:$h2/index.html" "http://$ip:$h2/style.css"
    record "h2load-$label" "$ns" "$iface" h2load -n 10 -c 2 -m 2 "http://$ip:$h2/index.html"
    record "ab-$label" "$ns" "$iface" ab -q -n 10 -c 2 "http://$ip/index.html"
done
