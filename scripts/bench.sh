#!/usr/bin/env bash
# Benchmarks tapir on a real TAP device against baselines measured in the same run on the
# same machine, and prints a table (figure, tapir, baseline, ratio).
#
#   sudo scripts/bench.sh [--quick] [--tcp-matrix | --bulk | --idle N | --busy | --latency |
#                          --compare REV]
#
# Every client runs inside network namespaces this script makes (unique names, removed on
# exit, also on failure); no traffic goes anywhere else:
#   tb<PID>-tap    TAP device tap0: tapir on one side, the kernel's clients (wrk, h2load,
#                  curl, python) on the other (10.7.0.1 -> 10.7.0.2)
#   tb<PID>-srv/-cli  nginx in -srv, the same clients in -cli, joined by a veth pair with the
#                  same addresses (10.7.0.1 -> 10.7.0.2): the baseline server
#   tb<PID>-smol   TAP device tap0 for smoltcp's own examples/benchmark.rs (raw TCP through
#                  the same stack, the ceiling of bulk throughput)
# Figures: HTTP/1.1 keep-alive req/s and latency (wrk, 64 connections and 1), h2 over TLS
# req/s (h2load), new TLS connections/s (h2load, Connection: close), bulk download MB/s at
# MTU 1500 and 65000 (curl), bulk upload MB/s (curl POST to a sink that reads and discards
# the body: tapir's /sink, nginx `return 204`), req/s against concurrent connections, RSS
# with idle connections (per connection: the first N on a fresh process and the next N
# while the first stay open, each measured $IDLE_SETTLE s (default 15) after the last one
# opened: the buffers of the opening burst go back once the connections are quiet, and
# tapir's allocator, jemalloc, returns freed pages within its 10 s decay), and a
# small `tapir get` against curl (wall time of a new process, neighbour resolution included).
# TCP path matrix (also alone with --tcp-matrix): tb<PID>-lp-c / -lp-s from
# scripts/linkpath.sh, joined only by `tapir link` (delay RTT/2 each way, loss p each way);
# for each RTT x loss: down = tapir serve -> curl, up = nginx -> tapir get (MB/s of the
# body, from its first byte to its last, against curl's measured the same way), baseline =
# nginx -> curl over the same link (the kernel's default congestion control, and CUBIC
# once); each figure is the median of 3 transfers (--quick: 1), the sides alternating;
# tapir runs with default flags. Plus a 100 KiB response
# on a new connection at 20 and 100 ms, and a long download at 100 ms without loss.
# Results: target/bench/report.json, target/bench/scaling.svg, logs in target/bench/logs/.
# --quick: 2 s runs, up to 1,000 connections, 128 MiB downloads (about 3 minutes); matrix
# RTT {20, 100} ms x loss {0, 1%}, 16 MiB per cell, 32 MiB long download.
# Environment: TAPIR_FLAGS="..." adds flags to every tapir serve/get this script starts
# (e.g. TAPIR_FLAGS="--tcp-cc bbr"); TAPIR_MATRIX_CC="cubic bbr" measures the matrix
# cells once per congestion control (tapir --tcp-cc NAME; "default": none given), in the
# same run, each against the same kernel figures. TAPIR_MATRIX_RTTS, TAPIR_MATRIX_LOSSES
# and TAPIR_MATRIX_LONG_MIB choose the cells and the long download's size;
# TAPIR_MATRIX_TRIES the transfers per cell and side (default 3, --quick 1).
# --bulk: only the 128 MiB downloads at MTU 1500 and 65000, best of 3, for tapir with
#   offloads (TSO and checksum offload through the virtio-net header), tapir --no-offload
#   and nginx, alternating (about 1 minute; a table, no report.json).
# --idle N: only memory per idle connection and busy scaling: N idle keep-alive HTTP/1.1
#   connections (one request each, from several client addresses) and N/10 over TLS held
#   against tapir and against nginx, RSS per connection (lower is better); then req/s at
#   100 and at 10,000 busy connections (wrk) for both (a table, no report.json).
# --busy: only the last part of --idle: req/s at 100 and 10,000 busy connections.
# --latency: only HTTP/1.1 keep-alive at low concurrency, wrk -c1 and -c10 (req/s, p50 and
#   p99 latency), tapir and nginx alternating, 3 rounds (about 1 minute; a table).
# --compare REV: this tree's tapir against the tapir of git revision REV (built once into
#   target/bench/compare/, from a temporary worktree) on the same local TAP, alternating
#   the two binaries, 3 rounds: wrk -c1/-c10/-c64/-c100 req/s, h2 over TLS req/s, new TLS
#   connections/s; mean per figure and the ratio this / REV (about 3 minutes plus the build;
#   a table, no report.json). The "no regression" check of a change.
# Each table says which figures are lower-is-better; report.json has "better" per figure.
set -euo pipefail

PROG=$(basename "$0")
REPO=$(cd "$(dirname "$0")/.." && pwd)
HELPER="$REPO/scripts/bench_helper.py"
OUT="$REPO/target/bench"
LOGS="$OUT/logs"
QUICK=0
MATRIX_ONLY=0
BULK_ONLY=0
IDLE_ONLY=0
BUSY_ONLY=0
LATENCY_ONLY=0
COMPARE_REV=""

usage() {
    sed -n '2,52p' "$0" | sed 's/^# \{0,1\}//'
}

while (($#)); do
    arg=$1
    shift
    case $arg in
    --quick) QUICK=1 ;;
    --tcp-matrix) MATRIX_ONLY=1 ;;
    --bulk) QUICK=1 BULK_ONLY=1 ;;
    --busy) QUICK=1 BUSY_ONLY=1 ;;
    --latency) QUICK=1 LATENCY_ONLY=1 ;;
    --compare)
        [[ -n ${1:-} ]] || {
            echo "$PROG: --compare needs a git revision (e.g. HEAD~1 or a commit)" >&2
            exit 2
        }
        QUICK=1 LATENCY_ONLY=0 COMPARE_REV=$1
        shift
        ;;
    --idle)
        [[ ${1:-} =~ ^[0-9]+$ && $1 -ge 100 ]] || {
            echo "$PROG: --idle needs a number of connections (at least 100)" >&2
            exit 2
        }
        QUICK=1 IDLE_ONLY=$1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "$PROG: unknown argument '$arg'" >&2
        usage >&2
        exit 2
        ;;
    esac
done

die() {
    echo "$PROG: $*" >&2
    exit 1
}

read -ra TAPIR_EXTRA <<<"${TAPIR_FLAGS:-}"
read -ra M_CCS <<<"${TAPIR_MATRIX_CC:-default}"
for cc in "${M_CCS[@]}"; do
    [[ $cc =~ ^(default|cubic|reno|bbr)$ ]] || die "TAPIR_MATRIX_CC: unknown congestion control '$cc'"
done

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces and TAP devices); try: sudo $0 $*"

if ((QUICK)); then
    DUR=2              # seconds per wrk/h2load run
    BULK=$((128 << 20)) # bytes per download
    SCALE=(10 100 1000)
    IDLE=1000          # idle connections for the RSS figure
    NEWCONN=2000       # new TLS connections
    M_RTTS=(20 100)    # TCP path matrix: round-trip times (ms)
    M_LOSSES=(0 1)     # and loss (%, each direction)
    M_BYTES=$((16 << 20))
    M_LONG=$((32 << 20))
    M_TIMEOUT=60       # seconds per transfer (a slower one counts what arrived)
    M_TRIES=1          # transfers per matrix cell and side (the figure is their median)
else
    DUR=10
    BULK=$((1 << 30))
    SCALE=(10 100 1000 10000)
    IDLE=10000
    NEWCONN=30000
    M_RTTS=(1 20 50 100)
    M_LOSSES=(0 0.1 1 3)
    M_BYTES=$((16 << 20))
    M_LONG=$((256 << 20))
    M_TIMEOUT=180
    M_TRIES=3
fi
# A subset of the matrix: TAPIR_MATRIX_RTTS="50" TAPIR_MATRIX_LOSSES="0.1 3" (space-separated),
# TAPIR_MATRIX_LONG_MIB=256 (the long download at 100 ms), TAPIR_MATRIX_TRIES=5 (transfers
# per cell and side, alternating; the figure is the median).
if [[ -n ${TAPIR_MATRIX_RTTS:-} ]]; then read -r -a M_RTTS <<<"$TAPIR_MATRIX_RTTS"; fi
if [[ -n ${TAPIR_MATRIX_LOSSES:-} ]]; then read -r -a M_LOSSES <<<"$TAPIR_MATRIX_LOSSES"; fi
if [[ -n ${TAPIR_MATRIX_TRIES:-} ]]; then
    [[ $TAPIR_MATRIX_TRIES =~ ^[1-9][0-9]*$ ]] || die "TAPIR_MATRIX_TRIES: a number of transfers (1 or more)"
    M_TRIES=$TAPIR_MATRIX_TRIES
fi
if [[ -n ${TAPIR_MATRIX_LONG_MIB:-} ]]; then
    [[ $TAPIR_MATRIX_LONG_MIB =~ ^[0-9]+$ ]] || die "TAPIR_MATRIX_LONG_MIB: a number of MiB"
    M_LONG=$((TAPIR_MATRIX_LONG_MIB << 20))
fi
for v in "${M_RTTS[@]}" "${M_LOSSES[@]}"; do
    [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "TAPIR_MATRIX_RTTS/LOSSES: '$v' is not a number"
done
SMALL=/bytes/100
BIG=/bytes/$BULK
IP_SERVER=10.7.0.2
IP_CLIENT=10.7.0.1

# --- tools ------------------------------------------------------------------------------
# shellcheck source=scripts/deps.sh
source "$REPO/scripts/deps.sh"
DEPS_PROG=$PROG
deps_ensure ip wrk h2load curl openssl python3 nginx || die "tools missing (see above)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PY=$(command -v python3)
CARGO=${CARGO:-cargo}

# --- namespaces and cleanup ----------------------------------------------------------------
TAG="tb$$"
NAMESPACES=()
PIDS=()
WORK=$(mktemp -d "/tmp/tapir-bench.XXXXXX")
chmod 755 "$WORK" # nginx's worker runs as nobody and must read the files in it
# Open files: as many as the hard limit allows (raising it needs CAP_SYS_RESOURCE).
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited || $NOFILE -gt 1048576 ]] && NOFILE=1048576

LINKPATH="" # the matrix's namespaces, while they exist

cleanup() {
    local status=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    [[ -n $LINKPATH ]] && "$REPO/scripts/linkpath.sh" down "$LINKPATH" >/dev/null 2>&1
    for ns in "${NAMESPACES[@]}"; do
        "$REPO/scripts/netns.sh" down "$ns" >/dev/null 2>&1 || ip netns del "$ns" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tune_ns() { # raise client-side limits inside a namespace of ours
    ip netns exec "$1" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" \
        net.ipv4.tcp_tw_reuse=1 net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096 >/dev/null
}

tap_ns() { # NAME MTU: namespace with tap0 (kernel 10.7.0.1/24), made by scripts/netns.sh
    local ns=$1 mtu=$2
    NAMESPACES+=("$ns")
    "$REPO/scripts/netns.sh" up "$ns" tap0 --mtu "$mtu" >/dev/null
    tune_ns "$ns"
}

veth_ns() { # SRV CLI MTU: two namespaces joined by a veth pair, 10.7.0.2 (srv) <-> 10.7.0.1 (cli)
    local srv=$1 cli=$2 mtu=$3
    NAMESPACES+=("$srv" "$cli")
    ip netns add "$srv"
    ip netns add "$cli"
    ip -n "$srv" link set lo up
    ip -n "$cli" link set lo up
    ip -n "$srv" link add veth0 mtu "$mtu" type veth peer name veth1 mtu "$mtu" netns "$cli"
    ip -n "$srv" addr add "$IP_SERVER/24" dev veth0
    ip -n "$cli" addr add "$IP_CLIENT/24" dev veth1
    ip -n "$srv" link set veth0 up
    ip -n "$cli" link set veth1 up
    tune_ns "$srv"
    tune_ns "$cli"
}

drop_ns() {
    "$REPO/scripts/netns.sh" down "$1" >/dev/null 2>&1 || true
}

wait_http() { # NS URL: until the server answers (10 s)
    for _ in $(seq 100); do
        ip netns exec "$1" curl -s -o /dev/null --max-time 1 "$2" && return 0
        sleep 0.1
    done
    die "no answer from $2 in namespace $1 (see $LOGS)"
}

rss_kib() { # PID... : summed VmRSS in KiB
    local total=0 v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# --- results ------------------------------------------------------------------------------
RESULTS="$OUT/results.jsonl"
mkdir -p "$OUT" "$LOGS"
rm -f "$RESULTS" "$LOGS"/*

json_get() { # JSON KEY
    "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("null" if v is None else v)' "$1" "$2"
}

declare -A T B # tapir and baseline values of each figure, filled as measurements come in
record() { # FIGURE UNIT BASELINE_NAME TAPIR BASELINE COMMAND [EXTRA_JSON]
    "$PY" - "$@" >>"$RESULTS" <<'PYEOF'
import json, sys
figure, unit, base_name, tapir, base, command = sys.argv[1:7]
extra = json.loads(sys.argv[7]) if len(sys.argv) > 7 else {}
num = lambda s: None if s in ("", "null", "None") else float(s)
row = {"kind": "figure", "figure": figure, "unit": unit, "tapir": num(tapir),
       "baseline_name": base_name, "baseline": num(base), "command": command}
row.update(extra)
print(json.dumps(row))
PYEOF
}

# --- build --------------------------------------------------------------------------------
echo "== building tapir (release)"
(cd "$REPO" && "$CARGO" build --release --quiet --bin tapir)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
TAPIR="$TARGET_DIR/release/tapir"
[[ -x $TAPIR ]] || die "no tapir binary at $TAPIR"

SMOL_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/smoltcp-0.14.0 2>/dev/null | head -1 || true)
SMOL_BIN=""
SMOL_WHY=""
if ((MATRIX_ONLY)); then
    : # the matrix alone needs no smoltcp benchmark
elif ((BULK_ONLY || IDLE_ONLY || BUSY_ONLY || LATENCY_ONLY)) || [[ -n $COMPARE_REV ]]; then
    SMOL_WHY="not measured with --bulk, --idle, --busy, --latency or --compare"
elif [[ -z $SMOL_SRC ]]; then
    SMOL_WHY="smoltcp-0.14.0 source not in the cargo registry (run cargo fetch)"
else
    echo "== building smoltcp's examples/benchmark.rs"
    SMOL_DIR="$OUT/smoltcp-benchmark"
    mkdir -p "$SMOL_DIR/src"
    cp "$SMOL_SRC/examples/benchmark.rs" "$SMOL_DIR/src/main.rs"
    cp "$SMOL_SRC/examples/utils.rs" "$SMOL_DIR/src/utils.rs"
    cat >"$SMOL_DIR/Cargo.toml" <<'TOML'
[package]
name = "smoltcp-benchmark"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
smoltcp = { version = "=0.14.0", default-features = false, features = [
    "std", "log", "medium-ethernet", "medium-ip", "medium-ieee802154", "phy-tuntap_interface",
    "proto-ipv4", "socket-raw", "socket-udp", "socket-tcp",
] }
getopts = "0.2"
rand = "0.8"

# The example's own cfg(feature = ...) switches: the TAP device on, env_logger off.
[features]
default = ["phy-tuntap_interface"]
phy-tuntap_interface = []
log = []

[lints.rust]
unexpected_cfgs = "allow"

[profile.release]
debug = "line-tables-only"

[workspace]
TOML
    if (cd "$SMOL_DIR" && "$CARGO" build --release --quiet --target-dir "$SMOL_DIR/target") >"$LOGS/smoltcp-build.log" 2>&1; then
        SMOL_BIN="$SMOL_DIR/target/release/smoltcp-benchmark"
    else
        SMOL_WHY="building it failed (see $LOGS/smoltcp-build.log)"
    fi
fi
[[ -n $SMOL_WHY ]] && echo "   smoltcp benchmark unavailable: $SMOL_WHY"

# --- metadata -----------------------------------------------------------------------------
"$PY" - "$QUICK" "$DUR" "$BULK" "$MATRIX_ONLY" "${M_BYTES}" >"$RESULTS" <<'PYEOF'
import json, os, platform, subprocess, sys, datetime
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
def ver(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception:
        return "?"
print(json.dumps({"kind": "meta", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "quick": sys.argv[1] == "1", "seconds_per_run": int(sys.argv[2]), "bulk_bytes": int(sys.argv[3]),
    "tcp_matrix_only": sys.argv[4] == "1", "tcp_matrix_bytes": int(sys.argv[5]),
    "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
    "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    "tools": {"wrk": ver(["wrk", "-v"]), "h2load": ver(["h2load", "--version"]), "nginx": ver(["nginx", "-v"]),
              "curl": ver(["curl", "--version"])}}))
PYEOF

# --- servers ------------------------------------------------------------------------------
TAPIR_PID=""
start_tapir() { # NS MTU LOGNAME [extra args]
    local ns=$1 mtu=$2 name=$3
    shift 3
    ip netns exec "$ns" bash -c 'ulimit -n "$0"; exec "$@"' "$NOFILE" \
        "$TAPIR" --log warn serve --tap tap0 --mtu "$mtu" "${TAPIR_EXTRA[@]}" "$@" >"$LOGS/$name.log" 2>&1 &
    TAPIR_PID=$!
    PIDS+=("$TAPIR_PID")
    wait_http "$ns" "http://$IP_SERVER/"
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# nginx: one worker (tapir is one thread), the same paths as tapir's built-in site
# (/bytes/100 and /bytes/$BULK hold tapir's exact bytes), TLS 1.3 with a self-signed
# ECDSA P-256 certificate (what tapir makes), h2 by ALPN, no session resumption.
WWW="$WORK/www"
mkdir -p "$WWW/bytes" "$WORK/nginx"
"$PY" "$HELPER" pattern-file "$WWW/bytes/100" 100
((MATRIX_ONLY || IDLE_ONLY || BUSY_ONLY || LATENCY_ONLY)) || [[ -n $COMPARE_REV ]] || "$PY" "$HELPER" pattern-file "$WWW/bytes/$BULK" "$BULK"
echo '<!doctype html><p>nginx</p>' >"$WWW/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$IP_SERVER" -addext "subjectAltName=IP:$IP_SERVER" \
    -keyout "$WORK/nginx/key.pem" -out "$WORK/nginx/cert.pem" >/dev/null 2>&1
NGINX_PIDS=()
start_nginx() { # NS CLIENT_NS LOGNAME
    local ns=$1 cli=$2 name=$3 conf="$WORK/nginx/$3.conf"
    cat >"$conf" <<CONF
worker_processes ${NGINX_WORKERS:-1};
worker_rlimit_nofile $NOFILE;
pid $WORK/nginx/$name.pid;
error_log $LOGS/$name-error.log warn;
events { worker_connections $((NOFILE - 100)); }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 900s;
    keepalive_requests 100000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 80 backlog=4096;
        listen 443 ssl http2 backlog=4096;
        ssl_certificate $WORK/nginx/cert.pem;
        ssl_certificate_key $WORK/nginx/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        root $WWW;
        # The upload sink: reads the request body and throws it away (nginx discards the
        # body of a request it answers without a handler that reads it), any size.
        location = /sink {
            client_max_body_size 0;
            return 204;
        }
    }
}
CONF
    ip netns exec "$ns" bash -c 'ulimit -n "$0"; exec "$@"' "$NOFILE" \
        "$NGINX" -c "$conf" -g 'daemon off;' >"$LOGS/$name.log" 2>&1 &
    NGINX_PIDS=("$!")
    PIDS+=("$!")
    wait_http "$cli" "http://$IP_SERVER/"
    # The workers: the master's children.
    local worker
    for worker in $(pgrep -P "${NGINX_PIDS[0]}" || true); do
        NGINX_PIDS+=("$worker")
    done
}

# --- the measurements ---------------------------------------------------------------------
# Each function runs in the client namespace CLI against 10.7.0.2 and leaves its raw output
# in $LOGS/<server>-<what>.txt.
in_ns() { # NS CMD...: with a high file limit
    local ns=$1
    shift
    ip netns exec "$ns" bash -c 'ulimit -n "$0"; exec "$@"' "$NOFILE" "$@"
}

run_wrk() { # CLI SERVER CONNS: HTTP/1.1 keep-alive on /bytes/100
    local f="$LOGS/$2-wrk-c$3.txt"
    in_ns "$1" wrk -t1 -c"$3" -d"${DUR}s" --timeout 10s --latency "http://$IP_SERVER$SMALL" >"$f" 2>&1 || true
    "$PY" "$HELPER" wrk "$f"
}

run_h2tls() { # CLI SERVER: h2 over TLS, 64 connections x 10 streams
    local f="$LOGS/$2-h2load-tls.txt"
    in_ns "$1" h2load -c64 -m10 -D "$DUR" "https://$IP_SERVER$SMALL" >"$f" 2>&1 || true
    "$PY" "$HELPER" h2load "$f"
}

# New TLS connection per request: h2load in HTTP/1.1 mode (ALPN http/1.1) with
# "Connection: close", so the server closes after each response and h2load reconnects: a
# closed loop of 32 clients where every request pays a full TCP + TLS 1.3 handshake. h2load
# makes a new SSL object per connection and does not resume sessions (and nginx has session
# caches and tickets off), so each handshake is a full one. req/s is then connections/s.
# (A fixed count with -n, not a duration: h2load -D hangs at the end of the duration when its
# clients reconnect.)
run_conns() { # CLI SERVER
    local f="$LOGS/$2-h2load-newconn.txt"
    in_ns "$1" timeout 120 h2load --h1 -c32 -n "$NEWCONN" -H 'Connection: close' \
        "https://$IP_SERVER$SMALL" >"$f" 2>&1 || true
    "$PY" "$HELPER" h2load "$f"
}

# One upload of $BULK bytes (the download's file) to /sink, MB/s: curl's upload speed, a
# figure only when every byte went and the sink answered 204. Both sinks answer 204 at once
# and read and discard the body as it arrives (the connection stays open), so the figure is
# the time curl takes to send the body. No `Expect: 100-continue`
# (curl asks for it above 1 MiB): a server may answer at once without a 100, and curl then
# sends no body at all.
run_upload() { # CLI SERVER TAG
    local f="$LOGS/$2-upload-$3.txt"
    in_ns "$1" curl -sS -o /dev/null --max-time 300 -H 'Expect:' -H 'Content-Type: application/octet-stream' \
        --data-binary "@$WWW/bytes/$BULK" -w '%{speed_upload} %{size_upload} %{http_code}\n' \
        "http://$IP_SERVER/sink" >"$f" 2>&1 || true
    awk -v want="$BULK" 'NF == 3 && $2 == want && $3 == 204 { printf "%.3f\n", $1 / 1e6; found = 1 } END { if (!found) print "null" }' "$f"
}

run_bulk() { # CLI SERVER TAG: one download of $BULK bytes, MB/s
    local f="$LOGS/$2-curl-$3.txt"
    in_ns "$1" curl -sS -o /dev/null --max-time 300 -w '%{speed_download} %{size_download}\n' \
        "http://$IP_SERVER$BIG" >"$f" 2>&1 || true
    awk -v want="$BULK" 'NF == 2 && $2 == want { printf "%.3f\n", $1 / 1e6; found = 1 } END { if (!found) print "null" }' "$f"
}

# Sets IDLE_RESULT (JSON). Not called in $(...): the background python must not hold the
# substitution's pipe, and its PID must reach PIDS for the cleanup.
run_idle() { # CLI SERVER PIDS...: RSS (KiB) before and with $IDLE idle connections
    # ($IDLE_PORT, $IDLE_TLS and $IDLE_SOURCES choose port, TLS and client addresses). The
    # connections are shared by as many client processes as the open-file limit asks.
    local cli=$1 name=$2
    shift 2
    local before after open procs each i ready py
    local readies=() clients=()
    before=$(rss_kib "$@")
    procs=$(((IDLE + NOFILE - 1000) / (NOFILE - 500)))
    each=$(((IDLE + procs - 1) / procs))
    for i in $(seq 1 "$procs"); do
        ready="$WORK/$name-idle-$i.json"
        rm -f "$ready"
        readies+=("$ready")
        ip netns exec "$cli" bash -c 'ulimit -n "$0"; exec "$@"' "$NOFILE" \
            "$PY" "$HELPER" idle "$IP_SERVER" "${IDLE_PORT:-80}" "$((i < procs ? each : IDLE - each * (procs - 1)))" \
            "$ready" "${IDLE_TLS:-0}" "${IDLE_SOURCES:-}" "${IDLE_HOLD:-120}" >"$LOGS/$name-idle-client-$i.txt" 2>&1 &
        py=$!
        PIDS+=("$py")
        clients+=("$py")
    done
    IDLE_CLIENTS=("${clients[@]}")
    for i in $(seq 0 $((procs - 1))); do
        for _ in $(seq $((1200 + IDLE / 50))); do
            [[ -f ${readies[$i]} ]] && break
            kill -0 "${clients[$i]}" 2>/dev/null || break
            sleep 0.1
        done
    done
    sleep "${IDLE_SETTLE:-15}"
    after=$(rss_kib "$@")
    open=$("$PY" -c 'import json, sys
total = {"open": 0, "failed": 0}
for path in sys.argv[1:]:
    try:
        r = json.load(open(path))
    except (OSError, ValueError):
        r = {"open": 0, "failed": None}
    total["open"] += r["open"]
    total["failed"] = None if r["failed"] is None or total["failed"] is None else total["failed"] + r["failed"]
print(json.dumps(total))' "${readies[@]}")
    if ! ((${IDLE_KEEP:-0})); then
        for py in "${clients[@]}"; do stop_pid "$py"; done
    fi
    IDLE_RESULT="{\"before_kib\": $before, \"after_kib\": $after, \"conns\": $open}"
}

# run_idle on a fresh server, then again with the first connections still open:
# IDLE_RESULT is the first (from the fresh process), IDLE_MORE the second ("before" is the
# RSS with the first $IDLE open and quiet). Opening a connection costs more memory than
# holding it (request and TCP buffers, handed back once the connection is quiet); an
# allocator that keeps freed memory (glibc's malloc, nginx's) leaves the burst's high-water
# mark in the first count, and the second count reuses it, so its growth is what each
# further idle connection holds.
idle_twice() { # CLI SERVER PIDS...
    local cli=$1 name=$2 first pid
    shift 2
    IDLE_KEEP=1 run_idle "$cli" "$name" "$@"
    first=("${IDLE_CLIENTS[@]}")
    local result=$IDLE_RESULT
    IDLE_KEEP=0 run_idle "$cli" "$name-more" "$@"
    IDLE_MORE=$IDLE_RESULT
    IDLE_RESULT=$result
    for pid in "${first[@]}"; do stop_pid "$pid"; done
}

# KiB of RSS growth per open connection of a run_idle result.
idle_per_conn() {
    "$PY" -c 'import json, sys
r = json.loads(sys.argv[1]); n = r["conns"]["open"]
print("%.2f" % ((r["after_kib"] - r["before_kib"]) / n) if n else "null")' "$1"
}

declare -A R # raw JSON results: R[server.figure]

# Milliseconds with three decimals (null stays null).
ms() { awk -v v="$1" 'BEGIN { if (v == "null") print v; else printf "%.3f", v }'; }
# A table row: FIGURE TAPIR BASELINE, and their ratio.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b == "null" || b == 0) print "-"; else printf "%.2f", a / b }'; }
row() { printf '%-44s %12s %12s %8s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }

if ((BULK_ONLY)); then
    best() { # MB/s values (or null): the largest
        printf '%s\n' "$@" | awk '$1 != "null" && $1 > m { m = $1 } END { print (m == "" ? "null" : m) }'
    }
    echo "== bulk $((BULK >> 20)) MiB downloads, best of 3, alternating"
    printf '%-6s %14s %22s %12s %10s %12s\n' MTU "tapir MB/s" "tapir --no-offload" "nginx MB/s" "ratio" "ratio plain"
    for mtu in 1500 65000; do
        BT=() BP=() BN=()
        tap_ns "$TAG-tap$mtu" "$mtu"
        veth_ns "$TAG-srv$mtu" "$TAG-cli$mtu" "$mtu"
        start_nginx "$TAG-srv$mtu" "$TAG-cli$mtu" "nginx-bulk$mtu"
        for rep in 1 2 3; do
            start_tapir "$TAG-tap$mtu" "$mtu" "tapir-bulk$mtu-$rep"
            BT+=("$(run_bulk "$TAG-tap$mtu" tapir "mtu$mtu-$rep")")
            stop_pid "$TAPIR_PID"
            start_tapir "$TAG-tap$mtu" "$mtu" "tapir-plain$mtu-$rep" --no-offload
            BP+=("$(run_bulk "$TAG-tap$mtu" tapir-plain "mtu$mtu-$rep")")
            stop_pid "$TAPIR_PID"
            BN+=("$(run_bulk "$TAG-cli$mtu" nginx "mtu$mtu-$rep")")
        done
        stop_pid "${NGINX_PIDS[0]}"
        drop_ns "$TAG-tap$mtu"
        drop_ns "$TAG-srv$mtu"
        drop_ns "$TAG-cli$mtu"
        t=$(best "${BT[@]}") p=$(best "${BP[@]}") n=$(best "${BN[@]}")
        printf '%-6s %14s %22s %12s %10s %12s\n' "$mtu" "$t" "$p" "$n" "$(ratio "$t" "$n")" "$(ratio "$p" "$n")"
        echo "       all runs: tapir ${BT[*]}; --no-offload ${BP[*]}; nginx ${BN[*]}"
    done
    echo "ratio = tapir / nginx; ratio plain = tapir --no-offload / nginx (same run)"
    exit 0
fi

# req/s at 100 and 10,000 busy connections (wrk, 10 s each), tapir in $TAG-tap and nginx
# (one worker, as tapir is one thread) in $TAG-srv/-cli; sets T100 T10K N100 N10K.
busy_scaling() {
    DUR=10
    echo "== busy connections: wrk -c100 and -c10000, ${DUR}s each"
    NGINX_WORKERS=1
    start_tapir "$TAG-tap" 1500 tapir-busy --max-connections 20000 --backlog 4096
    T100=$(run_wrk "$TAG-tap" tapir 100)
    T10K=$(run_wrk "$TAG-tap" tapir 10000)
    stop_pid "$TAPIR_PID"
    start_nginx "$TAG-srv" "$TAG-cli" nginx-busy
    N100=$(run_wrk "$TAG-cli" nginx 100)
    N10K=$(run_wrk "$TAG-cli" nginx 10000)
    stop_pid "${NGINX_PIDS[0]}"
}

busy_rows() { # after busy_scaling
    local t100 t10k n100 n10k
    t100=$(json_get "$T100" rps) t10k=$(json_get "$T10K" rps)
    n100=$(json_get "$N100" rps) n10k=$(json_get "$N10K" rps)
    row "req/s, wrk -c100 (higher)" "$t100" "$n100"
    row "req/s, wrk -c10000 (higher)" "$t10k" "$n10k"
    row "req/s at 10000 / req/s at 100 (higher)" "$(ratio "$t10k" "$t100")" "$(ratio "$n10k" "$n100")"
}

if ((BUSY_ONLY)); then
    [[ $NOFILE -gt 11000 ]] || die "the open-file limit ($NOFILE) is too low for wrk -c10000"
    tap_ns "$TAG-tap" 1500
    veth_ns "$TAG-srv" "$TAG-cli" 1500
    busy_scaling
    echo
    printf '%-44s %12s %12s %8s\n' figure tapir nginx ratio
    busy_rows
    echo "raw results: $LOGS"
    exit 0
fi

if [[ -n $COMPARE_REV ]]; then
    # This tree's tapir against REV's, on the same TAP namespace, one server process at a
    # time, alternating; REV's binary is built once per commit and kept.
    command -v git >/dev/null || die "git is needed for --compare (install: apt-get install git)"
    REV_SHA=$(git -C "$REPO" rev-parse --verify --quiet "$COMPARE_REV^{commit}") ||
        die "--compare: '$COMPARE_REV' is not a commit of this repository"
    CMP="$OUT/compare"
    OLD="$CMP/$REV_SHA/tapir"
    if [[ ! -x $OLD ]]; then
        echo "== building tapir at ${REV_SHA:0:12} (once; kept in $CMP)"
        src="$CMP/src-$REV_SHA"
        rm -rf "$src"
        git -C "$REPO" worktree prune
        git -C "$REPO" worktree add --detach --quiet "$src" "$REV_SHA"
        if (cd "$src" && "$CARGO" build --release --quiet --bin tapir --target-dir "$CMP/target") \
            >"$CMP/build-$REV_SHA.log" 2>&1; then
            mkdir -p "$CMP/$REV_SHA"
            cp "$CMP/target/release/tapir" "$OLD"
        fi
        git -C "$REPO" worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
        git -C "$REPO" worktree prune
        [[ -x $OLD ]] || die "building ${REV_SHA:0:12} failed (see $CMP/build-$REV_SHA.log)"
    fi
    HEAD_DESC=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo "this tree")
    tap_ns "$TAG-tap" 1500
    declare -A CMPV # "which figure" -> values, space-separated
    figures=("wrk -c1 req/s" "wrk -c10 req/s" "wrk -c64 req/s" "wrk -c100 req/s"
        "h2 over TLS (h2load -c64 -m10) req/s" "new TLS connections/s")
    echo "== this tree ($HEAD_DESC) against ${REV_SHA:0:12}, ${DUR}s per run, 3 rounds alternating"
    for round in 1 2 3; do
        for which in old new; do
            bin=$TAPIR
            [[ $which == old ]] && bin=$OLD
            # Each process has its own MAC address: forget the last one's (an older tapir
            # does not announce itself, and the kernel would wait for its stale entry).
            ip -n "$TAG-tap" neigh flush dev tap0 2>/dev/null || true
            TAPIR=$bin start_tapir "$TAG-tap" 1500 "tapir-$which-r$round" --max-connections 30000 --backlog 1024
            vals=()
            for c in 1 10 64 100; do
                vals+=("$(json_get "$(run_wrk "$TAG-tap" "tapir-$which-r$round" "$c")" rps)")
            done
            vals+=("$(json_get "$(run_h2tls "$TAG-tap" "tapir-$which-r$round")" rps)")
            vals+=("$(json_get "$(run_conns "$TAG-tap" "tapir-$which-r$round")" rps)")
            stop_pid "$TAPIR_PID"
            for i in "${!figures[@]}"; do
                CMPV["$which ${figures[$i]}"]+="${vals[$i]} "
            done
            echo "   round $round, $which: ${vals[*]}"
        done
    done
    mean() { printf '%s\n' $1 | awk '$1 != "null" { s += $1; n++ } END { if (n) printf "%.0f", s / n; else print "null" }'; }
    spread() { printf '%s\n' $1 | awk '$1 != "null" { if (n == 0 || $1 < lo) lo = $1; if ($1 > hi) hi = $1; n++ } END { if (n) printf "%.0f-%.0f", lo, hi; else print "-" }'; }
    echo
    printf '%-40s %12s %12s %8s   %s\n' "figure (mean of 3, higher is better)" "this" "${REV_SHA:0:10}" ratio "range this / range rev"
    for f in "${figures[@]}"; do
        a=$(mean "${CMPV["new $f"]}")
        b=$(mean "${CMPV["old $f"]}")
        printf '%-40s %12s %12s %8s   %s / %s\n' "$f" "$a" "$b" "$(ratio "$a" "$b")" \
            "$(spread "${CMPV["new $f"]}")" "$(spread "${CMPV["old $f"]}")"
    done
    echo "ratio = this tree / ${REV_SHA:0:12} (same run, same TAP namespace, default flags plus TAPIR_FLAGS); raw results: $LOGS"
    exit 0
fi

if ((LATENCY_ONLY)); then
    # Low concurrency: the time of one request more than throughput. Alternating servers,
    # each round on the same two long-running processes.
    tap_ns "$TAG-tap" 1500
    veth_ns "$TAG-srv" "$TAG-cli" 1500
    NGINX_WORKERS=1
    start_tapir "$TAG-tap" 1500 tapir-latency
    start_nginx "$TAG-srv" "$TAG-cli" nginx-latency
    echo "== HTTP/1.1 keep-alive at low concurrency, ${DUR}s per run, 3 rounds alternating"
    printf '%-44s %12s %12s %8s\n' figure tapir nginx ratio
    for round in 1 2 3; do
        for c in 1 10; do
            t=$(run_wrk "$TAG-tap" "tapir-r$round" "$c")
            n=$(run_wrk "$TAG-cli" "nginx-r$round" "$c")
            row "round $round: wrk -c$c req/s (higher)" "$(json_get "$t" rps)" "$(json_get "$n" rps)"
            row "round $round: wrk -c$c p50 ms (lower)" "$(ms "$(json_get "$t" p50_ms)")" "$(ms "$(json_get "$n" p50_ms)")"
            row "round $round: wrk -c$c p99 ms (lower)" "$(ms "$(json_get "$t" p99_ms)")" "$(ms "$(json_get "$n" p99_ms)")"
        done
    done
    echo "ratio = tapir / nginx (same run; wrk shares the machine's cores with the server); raw results: $LOGS"
    exit 0
fi

if ((IDLE_ONLY)); then
    # Idle connections: N over HTTP/1.1 and N/10 over TLS, held together by one client
    # process each; RSS growth per connection. Then busy scaling on fresh processes.
    N=$IDLE_ONLY
    NTLS=$((N / 10))
    DUR=10
    # One process holds at most the open-file limit: the client is several processes,
    # nginx several workers (its RSS is summed over all of them).
    [[ $NOFILE -gt 11000 ]] || die "the open-file limit ($NOFILE) is too low for wrk -c10000"
    NGINX_WORKERS=$(((N + NOFILE - 1000) / (NOFILE - 1000)))
    tap_ns "$TAG-tap" 1500
    veth_ns "$TAG-srv" "$TAG-cli" 1500
    SRCS=()
    for i in $(seq 1 $(((N + NTLS) / 50000 + 1))); do # ~64,000 ports per address and port
        ip -n "$TAG-tap" addr add "10.7.0.$((100 + i))/24" dev tap0
        ip -n "$TAG-cli" addr add "10.7.0.$((100 + i))/24" dev veth1
        SRCS+=("10.7.0.$((100 + i))")
    done
    IDLE_SOURCES=$(
        IFS=,
        echo "${SRCS[*]}"
    )
    IDLE_HOLD=1800 IDLE_KEEP=1
    opened() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["conns"]["open"])' "$1"; }
    idle_one() { # SERVER CLI COUNT PORT TLS PIDS...: run_idle, the client stopped after
        local server=$1 cli=$2
        IDLE=$3 IDLE_PORT=$4 IDLE_TLS=$5
        shift 5
        run_idle "$cli" "$server-$IDLE_PORT" "$@"
        for pid in "${IDLE_CLIENTS[@]}"; do stop_pid "$pid"; done
    }
    # Each count on a fresh server process, so that memory freed by one phase is not what
    # the next one grows into.
    echo "== $N idle keep-alive connections (HTTP/1.1) and $NTLS over TLS, client addresses ${SRCS[*]}"
    for what in "80 0 $N" "443 1 $NTLS"; do
        read -r port tls count <<<"$what"
        echo "   tapir, port $port: $count connections"
        start_tapir "$TAG-tap" 1500 "tapir-idle$port" --max-connections $((N + 1000)) --idle-timeout 1800
        idle_one tapir "$TAG-tap" "$count" "$port" "$tls" "$TAPIR_PID"
        stop_pid "$TAPIR_PID"
        if ((tls)); then TT=$IDLE_RESULT; else TP=$IDLE_RESULT; fi
        echo "   nginx, port $port: $count connections"
        start_nginx "$TAG-srv" "$TAG-cli" "nginx-idle$port"
        idle_one nginx "$TAG-cli" "$count" "$port" "$tls" "${NGINX_PIDS[@]}"
        stop_pid "${NGINX_PIDS[0]}"
        if ((tls)); then NT=$IDLE_RESULT; else NP=$IDLE_RESULT; fi
    done
    busy_scaling
    echo
    printf '%-44s %12s %12s %8s\n' figure tapir nginx ratio
    row "open idle HTTP/1.1 connections" "$(opened "$TP")" "$(opened "$NP")"
    row "RSS per idle HTTP/1.1 conn, KiB (lower)" "$(idle_per_conn "$TP")" "$(idle_per_conn "$NP")"
    row "open idle TLS connections" "$(opened "$TT")" "$(opened "$NT")"
    row "RSS per idle TLS conn, KiB (lower)" "$(idle_per_conn "$TT")" "$(idle_per_conn "$NT")"
    busy_rows
    echo "RSS: VmRSS growth of the server process (nginx: master + worker; the kernel's socket"
    echo "memory is not in it) divided by the connections held open; raw results: $LOGS"
    echo "tapir idle: plain $TP; TLS $TT"
    echo "nginx idle: plain $NP; TLS $NT"
    exit 0
fi

measure_server() { # SERVER CLI_NS: figures 1, 2, 3 and 5 against a running server
    local server=$1 cli=$2
    echo "   $server: HTTP/1.1 keep-alive, wrk -c64"
    R[$server.wrk64]=$(run_wrk "$cli" "$server" 64)
    echo "   $server: h2 over TLS, h2load -c64 -m10"
    R[$server.h2tls]=$(run_h2tls "$cli" "$server")
    echo "   $server: scaling, wrk -c ${SCALE[*]}"
    for c in "${SCALE[@]}"; do
        R[$server.scale$c]=$(run_wrk "$cli" "$server" "$c")
    done
    echo "   $server: new TLS connection per request, h2load --h1 -c32 + Connection: close"
    R[$server.conns]=$(run_conns "$cli" "$server")
    echo "   $server: HTTP/1.1 keep-alive, wrk -c1"
    R[$server.wrk1]=$(run_wrk "$cli" "$server" 1)
    echo "   $server: bulk $((BULK >> 20)) MiB, MTU 1500"
    R[$server.bulk1500]=$(run_bulk "$cli" "$server" mtu1500)
    echo "   $server: upload $((BULK >> 20)) MiB (POST /sink), MTU 1500"
    R[$server.up1500]=$(run_upload "$cli" "$server" mtu1500)
}

# --- TCP path matrix ----------------------------------------------------------------------
# scripts/linkpath.sh: client namespace (curl; tapir get on tapg, 10.9.0.3) and server
# namespace (nginx on br0, 10.9.0.2; tapir serve on taps, 10.9.0.4), joined only by
# `tapir link`, restarted for each cell with that cell's delay and loss.
M_KERNEL=10.9.0.2
M_TAPIR=10.9.0.4
M_GET_IP=10.9.0.3/24
LINK_PID=""

start_link() { # RTT_MS LOSS_PCT
    local delay
    delay=$(awk -v r="$1" 'BEGIN { printf "%gus", r * 500 }')
    ip netns exec "$LINKPATH-c" "$TAPIR" --log warn link --netns-b "$LINKPATH-s" tapl tapl \
        --delay "$delay" --loss "$2%" --seed "$((RANDOM + 1))" >>"$LOGS/link.log" 2>&1 &
    LINK_PID=$!
    PIDS+=("$LINK_PID")
    # Up when the kernel side answers a ping through it (ARP is re-learnt on the way).
    for _ in $(seq 50); do
        ip netns exec "$LINKPATH-c" ping -c 1 -W 1 -q "$M_KERNEL" >/dev/null 2>&1 && return 0
    done
    die "no ping through tapir link (see $LOGS/link.log)"
}

# MB/s of one download with curl from the client namespace; a transfer still running after
# $M_TIMEOUT s counts the bytes that arrived ("partial" in the log).
curl_mbps() { # URL TAG
    local f="$LOGS/matrix-curl-$2.txt"
    ip netns exec "$LINKPATH-c" curl -sS -o /dev/null --max-time "$M_TIMEOUT" \
        -w '%{speed_download} %{size_download} %{time_total} %{time_starttransfer}\n' "$1" >"$f" 2>&1 || true
    awk 'NF == 4 && $1 ~ /^[0-9.]+$/ { printf "%.3f\n", $1 / 1e6; found = 1 } END { if (!found) print "null" }' "$f"
}

# MB/s of the body of the download curl_mbps TAG made: from its first byte to its last
# (time_total - time_starttransfer), what get_mbps measures for tapir get.
curl_body_mbps() { # TAG
    awk 'NF == 4 && $1 ~ /^[0-9.]+$/ && $3 > $4 { printf "%.3f\n", $2 / ($3 - $4) / 1e6; found = 1 }
        END { if (!found) print "null" }' "$LOGS/matrix-curl-$1.txt"
}

# MB/s of one download by `tapir get` (default flags) on tapg: the body's bytes over the
# time from the response head to the last byte, as tapir get reports it (curl_body_mbps
# measures the kernel the same way). Not the process's wall time: a tapir started within
# a second of the previous one's exit finds the bridge port of its TAP device not yet
# forwarding (the kernel's link watch handles carrier changes at most once a second), so
# its first ARP request is dropped and it waits a second for the next. When the transfer
# runs out of time (no report), the wall time counts what arrived.
get_mbps() { # URL TAG [FLAG...]
    local f="$LOGS/matrix-get-$2.txt" out="$WORK/get.out" t0 t1 url=$1
    shift 2
    rm -f "$out"
    t0=$(date +%s.%N)
    ip netns exec "$LINKPATH-c" timeout "$M_TIMEOUT" "$TAPIR" --log warn get --tap tapg \
        --ip "$M_GET_IP" "${TAPIR_EXTRA[@]}" "$@" -o "$out" "$url" >"$f" 2>&1 || echo "exit $?" >>"$f"
    t1=$(date +%s.%N)
    awk -v t0="$t0" -v t1="$t1" -v n="$(stat -c %s "$out" 2>/dev/null || echo 0)" '
        / bytes, [0-9.]+ s after the response head$/ { body = $4 }
        END {
            if (n > 0 && body > 0) printf "%.3f\n", n / body / 1e6
            else if (n > 0) printf "%.3f\n", n / (t1 - t0) / 1e6
            else print "null"
        }' "$f"
}

curl_seconds() { # URL TAG: time of one request on a new connection
    local f="$LOGS/matrix-curl-$2.txt"
    ip netns exec "$LINKPATH-c" curl -sS -o /dev/null --max-time "$M_TIMEOUT" \
        -w '%{time_total}\n' "$1" >"$f" 2>&1 || true
    awk 'NF == 1 && $1 ~ /^[0-9.]+$/ { printf "%.1f\n", $1 * 1e3; found = 1 } END { if (!found) print "null" }' "$f"
}

# The median of the figures given (a transfer that failed, "null", counts as 0 MB/s: it
# delivered nothing in the time allowed); "null" when none is given.
median() { # VALUE...
    (($# > 0)) || { echo null; return; }
    printf '%s\n' "$@" | sed 's/^null$/0/' | sort -g | awk '{ v[NR] = $1 }
        END {
            if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]
            else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

# `"tries": {"tapir": [...], "baseline": [...]}` for report.json, from two lists of figures.
tries_json() { # "TAPIR_TRIES" "BASELINE_TRIES"
    local t b
    # shellcheck disable=SC2086 # unquoted: the lists' words, one space apart
    t=$(echo $1 | sed 's/null/0/g; s/ /, /g') b=$(echo $2 | sed 's/null/0/g; s/ /, /g')
    printf '"tries": {"tapir": [%s], "baseline": [%s]}' "$t" "$b"
}

cc_flags() { # CC: tapir's flag for it ("default": none)
    [[ $1 == default ]] || echo "--tcp-cc $1"
}

MATRIX_TAPIR_PID=""
matrix_tapir() { # CC [link]: (re)starts tapir serve in the matrix's server namespace
    [[ -n $MATRIX_TAPIR_PID ]] && stop_pid "$MATRIX_TAPIR_PID"
    # shellcheck disable=SC2046 # cc_flags gives zero or two words
    ip netns exec "$LINKPATH-s" "$TAPIR" --log warn serve --tap taps --ip "$M_TAPIR/24" \
        --no-https "${TAPIR_EXTRA[@]}" $(cc_flags "$1") >>"$LOGS/tapir-matrix.log" 2>&1 &
    MATRIX_TAPIR_PID=$!
    PIDS+=("$MATRIX_TAPIR_PID")
    # Answers once it is up (through a link started for it when none runs).
    [[ ${2:-} == link ]] && start_link 1 0
    wait_http "$LINKPATH-c" "http://$M_TAPIR/"
    [[ ${2:-} == link ]] && stop_pid "$LINK_PID"
    return 0
}

tcp_matrix() {
    local IP_SERVER=$M_KERNEL # start_nginx waits on it
    local rtt loss cell cc kernel kernel_body kernel_cubic saved_cc route extra
    echo "== TCP path matrix through tapir link: RTT ${M_RTTS[*]} ms x loss ${M_LOSSES[*]} %, $((M_BYTES >> 20)) MiB"
    for n in "$M_BYTES" "$M_LONG" 102400; do
        "$PY" "$HELPER" pattern-file "$WWW/bytes/$n" "$n"
    done
    LINKPATH="$TAG-lp"
    "$REPO/scripts/linkpath.sh" up "$LINKPATH"
    start_link 1 0
    start_nginx "$LINKPATH-s" "$LINKPATH-c" nginx-matrix
    matrix_tapir "${M_CCS[0]}"
    stop_pid "$LINK_PID"
    for rtt in "${M_RTTS[@]}"; do
        for loss in "${M_LOSSES[@]}"; do
            cell="rtt${rtt}-loss${loss}"
            start_link "$rtt" "$loss"
            # M_TRIES rounds, each one transfer per side in turn (tapir down and up per
            # congestion control, then the kernel's default), so a disturbance of the
            # machine or the link's random losses fall on every side alike; each figure is
            # the median of its transfers, all of them in report.json.
            local -A down=() up=() down_tries=() up_tries=()
            local kernel_tries="" body_tries="" cubic_tries="" try
            for ((try = 1; try <= M_TRIES; try++)); do
                for cc in "${M_CCS[@]}"; do
                    ((${#M_CCS[@]} == 1)) || matrix_tapir "$cc"
                    down_tries[$cc]+=" $(curl_mbps "http://$M_TAPIR/bytes/$M_BYTES" "tapir-$cc-$cell-$try")"
                    # shellcheck disable=SC2046 # cc_flags gives zero or two words
                    up_tries[$cc]+=" $(get_mbps "http://$M_KERNEL/bytes/$M_BYTES" "$cc-$cell-$try" $(cc_flags "$cc"))"
                done
                kernel_tries+=" $(curl_mbps "http://$M_KERNEL/bytes/$M_BYTES" "nginx-$cell-$try")"
                body_tries+=" $(curl_body_mbps "nginx-$cell-$try")"
                # The same kernel sending with CUBIC (a loss-based algorithm like tapir's
                # --tcp-cc cubic), in the first round only: a reference, and at 1-3% loss
                # one transfer takes minutes. The machine's default may be BBR, and a
                # namespace may not change its default to an algorithm outside
                # tcp_allowed_congestion_control, so the server's route to the client names
                # it (RTAX_CC_ALGO) for that one connection.
                saved_cc=$(ip netns exec "$LINKPATH-s" sysctl -n net.ipv4.tcp_congestion_control)
                ((try == 1)) || continue
                read -ra route <<<"$(ip -n "$LINKPATH-s" route show | grep -m1 'proto kernel')"
                ip -n "$LINKPATH-s" route replace "${route[@]}" congctl cubic
                cubic_tries+=" $(curl_mbps "http://$M_KERNEL/bytes/$M_BYTES" "nginx-cubic-$cell-$try")"
                ip -n "$LINKPATH-s" route replace "${route[@]}"
            done
            for cc in "${M_CCS[@]}"; do
                # shellcheck disable=SC2086 # word splitting of the lists is the point
                down[$cc]=$(median ${down_tries[$cc]})
                up[$cc]=$(median ${up_tries[$cc]})
            done
            # shellcheck disable=SC2086 # word splitting of the lists is the point
            kernel=$(median $kernel_tries) kernel_body=$(median $body_tries) kernel_cubic=$(median $cubic_tries)
            stop_pid "$LINK_PID"
            for cc in "${M_CCS[@]}"; do
                local name="" ccjson=""
                if [[ $cc != default ]]; then
                    name=" tapir $cc," ccjson=", \"tapir_cc\": \"$cc\""
                fi
                echo "   RTT $rtt ms, loss $loss%:$name down tapir ${down[$cc]}, up tapir ${up[$cc]} (body), kernel $kernel MB/s ($saved_cc; body $kernel_body), kernel with cubic $kernel_cubic MB/s"
                ((M_TRIES == 1)) || echo "     tries: down${down_tries[$cc]}; up${up_tries[$cc]}; kernel$kernel_tries (body$body_tries); cubic$cubic_tries"
                extra="{\"series\": \"tcp_matrix\", \"rtt_ms\": $rtt, \"loss_pct\": $loss, \"bytes\": $M_BYTES$ccjson, \"tries\": $M_TRIES"
                record "TCP matrix RTT $rtt ms loss $loss%,$name down (tapir serve -> curl)" "MB/s" \
                    "kernel (nginx -> curl)" "${down[$cc]}" "$kernel" \
                    "curl -o /dev/null http://$M_TAPIR/bytes/$M_BYTES through tapir link" \
                    "$extra, \"direction\": \"down\", $(tries_json "${down_tries[$cc]}" "$kernel_tries")}"
                record "TCP matrix RTT $rtt ms loss $loss%,$name down, against kernel CUBIC" "MB/s" \
                    "kernel CUBIC (nginx -> curl)" "${down[$cc]}" "$kernel_cubic" \
                    "curl -o /dev/null http://$M_TAPIR/bytes/$M_BYTES through tapir link" \
                    "$extra, \"direction\": \"down\", \"kernel_cc\": \"cubic\", $(tries_json "${down_tries[$cc]}" "$cubic_tries")}"
                record "TCP matrix RTT $rtt ms loss $loss%,$name up (nginx -> tapir get)" "MB/s" \
                    "kernel (nginx -> curl), body time" "${up[$cc]}" "$kernel_body" \
                    "tapir get -o FILE http://$M_KERNEL/bytes/$M_BYTES through tapir link" \
                    "$extra, \"direction\": \"up\", $(tries_json "${up_tries[$cc]}" "$body_tries")}"
            done
        done
    done
    # The 100 KiB and long-download figures: tapir with the first congestion control.
    ((${#M_CCS[@]} == 1)) || matrix_tapir "${M_CCS[0]}" link
    for rtt in 20 100; do
        start_link "$rtt" 0
        # Warm the neighbour entries so both servers pay only TCP's round trips.
        ip netns exec "$LINKPATH-c" ping -c 1 -W 1 -q "$M_TAPIR" >/dev/null 2>&1 || true
        local t k
        t=$(curl_seconds "http://$M_TAPIR/bytes/102400" "tapir-100k-rtt$rtt")
        k=$(curl_seconds "http://$M_KERNEL/bytes/102400" "nginx-100k-rtt$rtt")
        echo "   100 KiB on a new connection, RTT $rtt ms: tapir $t ms, kernel $k ms"
        record "TCP 100 KiB response, new connection, RTT $rtt ms" "ms" "kernel (nginx -> curl)" \
            "$t" "$k" "curl -o /dev/null http://SERVER/bytes/102400 through tapir link" \
            "{\"series\": \"tcp_matrix\", \"rtt_ms\": $rtt, \"loss_pct\": 0}"
        if [[ $rtt == 100 ]]; then
            t=$(curl_mbps "http://$M_TAPIR/bytes/$M_LONG" "tapir-long")
            k=$(curl_mbps "http://$M_KERNEL/bytes/$M_LONG" "nginx-long")
            echo "   $((M_LONG >> 20)) MiB download, RTT 100 ms: tapir $t, kernel $k MB/s"
            record "TCP $((M_LONG >> 20)) MiB download, RTT 100 ms, no loss" "MB/s" \
                "kernel (nginx -> curl)" "$t" "$k" \
                "curl -o /dev/null http://SERVER/bytes/$M_LONG through tapir link" \
                "{\"series\": \"tcp_matrix\", \"rtt_ms\": 100, \"loss_pct\": 0, \"bytes\": $M_LONG}"
        fi
        stop_pid "$LINK_PID"
    done
    "$REPO/scripts/linkpath.sh" down "$LINKPATH"
    LINKPATH=""
}

if ((MATRIX_ONLY)); then
    tcp_matrix
    echo
    echo "== results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs)"
    "$PY" "$HELPER" report "$RESULTS" "$OUT"
    echo "ratio = tapir / kernel (higher is better for MB/s, lower for ms)"
    echo "report: $OUT/report.json   raw outputs: $LOGS/"
    exit 0
fi

echo "== tapir on a TAP device, MTU 1500 (namespace $TAG-tap)"
tap_ns "$TAG-tap" 1500
start_tapir "$TAG-tap" 1500 tapir --max-connections 30000 --backlog 1024
measure_server tapir "$TAG-tap"
stop_pid "$TAPIR_PID"
echo "   tapir --no-offload: bulk $((BULK >> 20)) MiB, MTU 1500"
start_tapir "$TAG-tap" 1500 tapir-plain --no-offload
R[plain.bulk1500]=$(run_bulk "$TAG-tap" tapir-plain mtu1500)
stop_pid "$TAPIR_PID"
echo "   tapir: RSS with $IDLE idle keep-alive connections (fresh process), then $IDLE more"
start_tapir "$TAG-tap" 1500 tapir-idle --max-connections 30000 --backlog 1024
idle_twice "$TAG-tap" tapir "$TAPIR_PID"
R[tapir.idle]=$IDLE_RESULT
R[tapir.idle_more]=$IDLE_MORE
stop_pid "$TAPIR_PID"
drop_ns "$TAG-tap"

echo "== nginx over veth, MTU 1500 (namespaces $TAG-srv, $TAG-cli)"
veth_ns "$TAG-srv" "$TAG-cli" 1500
start_nginx "$TAG-srv" "$TAG-cli" nginx
measure_server nginx "$TAG-cli"
stop_pid "${NGINX_PIDS[0]}"
echo "   nginx: RSS with $IDLE idle keep-alive connections (fresh process), then $IDLE more"
start_nginx "$TAG-srv" "$TAG-cli" nginx-idle
idle_twice "$TAG-cli" nginx "${NGINX_PIDS[@]}"
R[nginx.idle]=$IDLE_RESULT
R[nginx.idle_more]=$IDLE_MORE
stop_pid "${NGINX_PIDS[0]}"
drop_ns "$TAG-srv"
drop_ns "$TAG-cli"

echo "== bulk at MTU 65000"
tap_ns "$TAG-tap65" 65000
start_tapir "$TAG-tap65" 65000 tapir-65000
R[tapir.bulk65000]=$(run_bulk "$TAG-tap65" tapir mtu65000)
stop_pid "$TAPIR_PID"
drop_ns "$TAG-tap65"
veth_ns "$TAG-srv65" "$TAG-cli65" 65000
start_nginx "$TAG-srv65" "$TAG-cli65" nginx-65000
R[nginx.bulk65000]=$(run_bulk "$TAG-cli65" nginx mtu65000)
stop_pid "${NGINX_PIDS[0]}"
drop_ns "$TAG-srv65"
drop_ns "$TAG-cli65"

# `tapir get` of a 3-byte file from a kernel-side server, wall time including start-up and
# the neighbour (ARP) resolution of a fresh process, against curl in the same setting over
# a veth pair (python3 -m http.server on the far side in both; median of 20 runs).
echo "== small GET: tapir get over tap0 vs curl over veth"
printf abc >"$WWW/three"
GET_RUNS=20
median_ms() { # CMD...: median wall time of $GET_RUNS runs, in ms
    local t0 t1 times=()
    for _ in $(seq "$GET_RUNS"); do
        t0=$EPOCHREALTIME
        "$@" >/dev/null 2>&1 || { echo null; return; }
        t1=$EPOCHREALTIME
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) * 1000 }')")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }'
}
serve_www() { # NS ADDR: python3 -m http.server on ADDR:80 serving $WWW
    ip netns exec "$1" "$PY" -m http.server --bind "$2" --directory "$WWW" 80 >"$LOGS/http-server-$1.log" 2>&1 &
    PIDS+=("$!")
    GET_SERVER=$!
    wait_http "$1" "http://$2/three"
}
tap_ns "$TAG-get" 1500
serve_www "$TAG-get" "$IP_CLIENT"
R[tapir.get]=$(median_ms ip netns exec "$TAG-get" "$TAPIR" get --tap tap0 --log warn "http://$IP_CLIENT/three")
stop_pid "$GET_SERVER"
drop_ns "$TAG-get"
veth_ns "$TAG-gsrv" "$TAG-gcli" 1500
serve_www "$TAG-gcli" "$IP_CLIENT"
R[curl.get]=$(median_ms ip netns exec "$TAG-gsrv" curl -sS -o /dev/null --max-time 5 "http://$IP_CLIENT/three")
stop_pid "$GET_SERVER"
drop_ns "$TAG-gsrv"
drop_ns "$TAG-gcli"

# smoltcp's benchmark: `benchmark --tap tap0 reader` serves 1e9 bytes on 192.168.69.1:1234
# and reads them with a kernel socket from a thread of the same process; the kernel side of
# tap0 needs 192.168.69.100/24 (smoltcp's README setup). Same netns.sh TAP setup as tapir.
for mtu in 1500 65000; do
    R[smoltcp.bulk$mtu]='null'
    [[ -n $SMOL_BIN ]] || continue
    echo "== smoltcp examples/benchmark.rs reader, MTU $mtu"
    ns="$TAG-smol$mtu"
    tap_ns "$ns" "$mtu"
    ip -n "$ns" addr add 192.168.69.100/24 dev tap0
    f="$LOGS/smoltcp-benchmark-mtu$mtu.txt"
    # Its client thread connects at once and is refused when the SYN beats the first
    # listen() of the poll loop; try again (up to 3 times) in that case.
    for _ in 1 2 3; do
        ip netns exec "$ns" timeout 120 "$SMOL_BIN" --tap tap0 reader >"$f" 2>&1 || true
        R[smoltcp.bulk$mtu]=$(json_get "$("$PY" "$HELPER" smoltcp "$f")" mbps)
        [[ ${R[smoltcp.bulk$mtu]} != null ]] && break
        sleep 0.5
    done
    [[ ${R[smoltcp.bulk$mtu]} != null ]] || SMOL_WHY="it ran but reported no throughput (see $f)"
    drop_ns "$ns"
done

# --- the table ----------------------------------------------------------------------------
g() { json_get "${R[$1]}" "$2"; }
record "HTTP/1.1 keep-alive, wrk -c64, req/s" "req/s" "nginx" "$(g tapir.wrk64 rps)" "$(g nginx.wrk64 rps)" \
    "wrk -t1 -c64 -d${DUR}s --latency http://$IP_SERVER$SMALL"
record "HTTP/1.1 keep-alive, wrk -c64, latency p50" "ms" "nginx" "$(g tapir.wrk64 p50_ms)" "$(g nginx.wrk64 p50_ms)" \
    "same run"
record "HTTP/1.1 keep-alive, wrk -c64, latency p99" "ms" "nginx" "$(g tapir.wrk64 p99_ms)" "$(g nginx.wrk64 p99_ms)" \
    "same run"
record "HTTP/1.1 keep-alive, wrk -c1, req/s" "req/s" "nginx" "$(g tapir.wrk1 rps)" "$(g nginx.wrk1 rps)" \
    "wrk -t1 -c1 -d${DUR}s --latency http://$IP_SERVER$SMALL"
record "HTTP/1.1 keep-alive, wrk -c1, latency p50" "ms" "nginx" "$(g tapir.wrk1 p50_ms)" "$(g nginx.wrk1 p50_ms)" \
    "same run"
record "h2 over TLS, h2load -c64 -m10, req/s" "req/s" "nginx" "$(g tapir.h2tls rps)" "$(g nginx.h2tls rps)" \
    "h2load -c64 -m10 -D $DUR https://$IP_SERVER$SMALL"
record "new TLS connection per request, conn/s" "conn/s" "nginx" "$(g tapir.conns rps)" "$(g nginx.conns rps)" \
    "h2load --h1 -c32 -n $NEWCONN -H 'Connection: close' https://$IP_SERVER$SMALL" \
    "{\"tapir_succeeded\": $(g tapir.conns succeeded), \"baseline_succeeded\": $(g nginx.conns succeeded)}"
T_B1500=${R[tapir.bulk1500]}
record "bulk $((BULK >> 20)) MiB download, MTU 1500" "MB/s" "nginx" "$T_B1500" "${R[nginx.bulk1500]}" \
    "curl -o /dev/null http://$IP_SERVER$BIG"
record "bulk $((BULK >> 20)) MiB download, MTU 1500, tapir --no-offload" "MB/s" "nginx" "${R[plain.bulk1500]}" "${R[nginx.bulk1500]}" \
    "curl -o /dev/null http://$IP_SERVER$BIG (tapir --no-offload: plain frames, no TSO or checksum offload)"
record "bulk $((BULK >> 20)) MiB upload (POST /sink), MTU 1500" "MB/s" "nginx" "${R[tapir.up1500]}" "${R[nginx.up1500]}" \
    "curl --data-binary @FILE -H 'Expect:' http://$IP_SERVER/sink (tapir: /sink drops the body, 204; nginx: location = /sink { client_max_body_size 0; return 204; })"
record "bulk, MTU 1500, vs raw TCP through smoltcp" "MB/s" "smoltcp benchmark" "$T_B1500" "${R[smoltcp.bulk1500]}" \
    "smoltcp examples/benchmark.rs --tap tap0 reader (1e9 bytes)"
record "bulk $((BULK >> 20)) MiB download, MTU 65000" "MB/s" "nginx" "${R[tapir.bulk65000]}" "${R[nginx.bulk65000]}" \
    "curl -o /dev/null http://$IP_SERVER$BIG (tapir --mtu 65000, ip link set mtu 65000)"
record "bulk, MTU 65000, vs raw TCP through smoltcp" "MB/s" "smoltcp benchmark" "${R[tapir.bulk65000]}" "${R[smoltcp.bulk65000]}" \
    "smoltcp examples/benchmark.rs --tap tap0 reader (1e9 bytes)"
for c in "${SCALE[@]}"; do
    record "scaling: wrk -c$c, req/s" "req/s" "nginx" "$(g tapir.scale$c rps)" "$(g nginx.scale$c rps)" \
        "wrk -t1 -c$c -d${DUR}s http://$IP_SERVER$SMALL" "{\"series\": \"scaling\", \"connections\": $c}"
done
record "small GET (3 bytes), new process, wall time (median of $GET_RUNS)" "ms" "curl" "${R[tapir.get]}" "${R[curl.get]}" \
    "tapir get --tap tap0 http://$IP_CLIENT/three vs curl over veth; python3 -m http.server"
ti=${R[tapir.idle]}
ni=${R[nginx.idle]}
record "RSS with $IDLE idle keep-alive conns" "MiB" "nginx (master+worker)" \
    "$(awk -v k="$(json_get "$ti" after_kib)" 'BEGIN { printf "%.1f", k / 1024 }')" \
    "$(awk -v k="$(json_get "$ni" after_kib)" 'BEGIN { printf "%.1f", k / 1024 }')" \
    "python3 scripts/bench_helper.py idle (one request per connection, then idle); VmRSS" \
    "{\"tapir_idle\": $ti, \"baseline_idle\": $ni}"
record "RSS growth per idle conn, first $IDLE (fresh process, with the opening burst)" "KiB/conn" \
    "nginx (master+worker)" "$(idle_per_conn "$ti")" "$(idle_per_conn "$ni")" \
    "(RSS with - RSS before) / connections; the buffers are back in the pool (tcp_memory in /stats) but the heap keeps the burst's pages"
record "RSS growth per idle conn, next $IDLE (the first still open and quiet)" "KiB/conn" \
    "nginx (master+worker)" "$(idle_per_conn "${R[tapir.idle_more]}")" "$(idle_per_conn "${R[nginx.idle_more]}")" \
    "(RSS with 2x - RSS with 1x) / connections: what each further idle connection holds" \
    "{\"tapir_idle\": ${R[tapir.idle_more]}, \"baseline_idle\": ${R[nginx.idle_more]}}"

tcp_matrix

echo
echo "== results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
"$PY" "$HELPER" report "$RESULTS" "$OUT"
[[ -n $SMOL_WHY ]] && echo "smoltcp benchmark baseline: unavailable: $SMOL_WHY"
echo "ratio = tapir / baseline (higher is better for req/s, conn/s, MB/s; lower for ms, MiB, KiB/conn)"
echo "report: $OUT/report.json   plot: $OUT/scaling.svg   raw outputs: $LOGS/"
