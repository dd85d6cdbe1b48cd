#!/usr/bin/env bash
# The demo: build tapir, run it on a TAP device in a fresh network namespace, and show the
# kernel reaching it (ping over IPv4 and IPv6, then the service itself). tapir keeps running
# until Ctrl-C; everything is removed on exit.
#
#   sudo scripts/demo.sh           demonstrate, then keep tapir running until Ctrl-C
#   sudo scripts/demo.sh --once    demonstrate and exit (for CI and tests; or DEMO_ONCE=1)
#
# Environment: TAPIR_BIN=path skips `cargo build` and runs that binary (handy under sudo
# when root has no cargo); DEMO_ONCE=1 is the same as --once.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETNS_SH="$ROOT/scripts/netns.sh"
PROG=$(basename "$0")

# --- The service being demonstrated --------------------------------------------------------
# `tapir serve`: the built-in site on HTTP (port 80: HTTP/1.1, and HTTP/2 with prior
# knowledge) and HTTPS (port 443: HTTP/2 or HTTP/1.1 by ALPN) with a self-signed certificate
# that --save-cert writes for curl --cacert (SERVICE gets `--save-cert $CERT` at start).
SERVICE=(serve)
READY="ready: HTTPS on port 443"
SERVICE_TOOLS=(curl)

service_demo() {
    local body v4 v6 version msg="hello tapir, $(date +%T)"
    step "HTTP/1.1 over IPv4: curl http://10.7.0.2/"
    body=$(in_ns curl -sS --max-time 10 http://10.7.0.2/) || fail "curl http://10.7.0.2/ failed"
    echo "$body"
    [[ $body == *"over HTTP/1.1"* ]] || fail "the page does not say HTTP/1.1"

    step "HTTP/2 with prior knowledge over IPv6: curl --http2-prior-knowledge http://[fd00:7::2]/"
    body=$(in_ns curl -sS -g --max-time 10 --http2-prior-knowledge 'http://[fd00:7::2]/') ||
        fail "curl --http2-prior-knowledge http://[fd00:7::2]/ failed"
    echo "$body"
    [[ $body == *"over HTTP/2"* ]] || fail "the page does not say HTTP/2"

    step "HTTPS, ALPN h2: curl --cacert cert.pem https://10.7.0.2/ (certificate from --save-cert)"
    body=$(in_ns curl -sS --max-time 10 --cacert "$CERT" -w 'negotiated: HTTP/%{http_version}' https://10.7.0.2/) ||
        fail "curl --cacert $CERT https://10.7.0.2/ failed"
    echo "$body"
    [[ $body == *"negotiated: HTTP/2" ]] || fail "HTTPS did not negotiate HTTP/2"
    step "HTTPS, ALPN http/1.1: curl --http1.1 --cacert cert.pem https://10.7.0.2/"
    version=$(in_ns curl -sS --max-time 10 --http1.1 --cacert "$CERT" -o /dev/null -w '%{http_version}' https://10.7.0.2/) ||
        fail "curl --http1.1 https://10.7.0.2/ failed"
    echo "negotiated: HTTP/$version"
    [[ $version == 1.1 ]] || fail "HTTPS with --http1.1 negotiated HTTP/$version"

    step "POST to /echo over HTTP/1.1 (IPv4) and HTTP/2 (IPv6)"
    v4=$(in_ns curl -sS --max-time 10 --data-binary "$msg" http://10.7.0.2/echo) ||
        fail "POST http://10.7.0.2/echo failed"
    echo "sent:     $msg"
    echo "got back: $v4"
    [[ $v4 == "$msg" ]] || fail "the HTTP/1.1 echo came back different"
    v6=$(in_ns curl -sS -g --max-time 10 --http2-prior-knowledge --data-binary "$msg" 'http://[fd00:7::2]/echo') ||
        fail "POST http://[fd00:7::2]/echo failed"
    echo "sent:     $msg"
    echo "got back: $v6"
    [[ $v6 == "$msg" ]] || fail "the HTTP/2 echo came back different"
}
# ---------------------------------------------------------------------------------------------

usage() {
    echo "usage: $PROG [--once]" >&2
    echo "  builds tapir, runs it in a new network namespace and shows the kernel talking to it" >&2
}

once=${DEMO_ONCE:-0}
for arg in "$@"; do
    case $arg in
    --once) once=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "$PROG: unknown argument '$arg'" >&2
        usage
        exit 2
        ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
fail() {
    echo "$PROG: FAILED: $*" >&2
    exit 1
}

if [[ $(id -u) -ne 0 ]]; then
    echo "$PROG: must run as root: it creates a network namespace and a TAP device." >&2
    echo "  try: sudo env \"PATH=\$PATH\" $0 $*   (or cargo build --release, then: sudo TAPIR_BIN=target/release/tapir $0 $*)" >&2
    exit 1
fi
# shellcheck source=scripts/deps.sh
source "$ROOT/scripts/deps.sh"
DEPS_PROG=$PROG
deps_ensure ip ping "${SERVICE_TOOLS[@]}" || fail "tools missing (see above)"

NS="tapir-demo-$$"
TAP=tap0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tapir-demo.XXXXXX")
LOG="$WORK/tapir.log"
PCAP="$WORK/demo.pcap"
CERT="$WORK/cert.pem"
TAPIR_PID=""
TAIL_PID=""

in_ns() { ip netns exec "$NS" "$@"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $TAIL_PID ]]; then
        kill "$TAIL_PID" 2>/dev/null || true
    fi
    if [[ -n $TAPIR_PID ]] && kill -0 "$TAPIR_PID" 2>/dev/null; then
        step "stopping tapir"
        kill -TERM "$TAPIR_PID" 2>/dev/null || true
        # tapir gives open connections a 5 s grace period; KILL only after that.
        for _ in $(seq 80); do
            kill -0 "$TAPIR_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$TAPIR_PID" 2>/dev/null || true
        wait "$TAPIR_PID" 2>/dev/null || true
        grep -E 'pcap: wrote|stopped \(' "$LOG" || true
    fi
    "$NETNS_SH" down "$NS" || true
    # Keep the log and capture when something failed (not for Ctrl-C or TERM: 130, 143).
    if [[ $status -ne 0 && $status -ne 130 && $status -ne 143 && -s $LOG ]]; then
        echo "--- tapir log ($LOG) ---" >&2
        tail -n 30 "$LOG" >&2 || true
        echo "(kept $WORK for inspection)" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n ${TAPIR_BIN:-} ]]; then
    BIN=$TAPIR_BIN
    [[ -x $BIN ]] || fail "TAPIR_BIN=$BIN is not an executable"
else
    command -v cargo >/dev/null || fail "cargo not found; build as your user and run: sudo TAPIR_BIN=target/release/tapir $0"
    step "building tapir (cargo build --release)"
    (cd "$ROOT" && cargo build --release)
    target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    BIN="${target_dir:-$ROOT/target}/release/tapir"
fi

step "creating network namespace $NS with TAP $TAP"
# Its own hints are about running `tapir echo` by hand; this script runs tapir itself.
"$NETNS_SH" up "$NS" "$TAP" >/dev/null
echo "kernel side of $TAP: 10.7.0.1/24 and fd00:7::1/64; tapir: 10.7.0.2 and fd00:7::2"

step "starting tapir ${SERVICE[*]} on $TAP (log: $LOG)"
SERVICE+=(--save-cert "$CERT")
echo "+ ip netns exec $NS $BIN ${SERVICE[*]} --tap $TAP --pcap $PCAP"
# Not through in_ns: `ip netns exec` execs tapir, so $! is tapir's own PID for the signals.
ip netns exec "$NS" "$BIN" "${SERVICE[@]}" --tap "$TAP" --pcap "$PCAP" 2>"$LOG" &
TAPIR_PID=$!
for _ in $(seq 100); do
    grep -qF "$READY" "$LOG" && break
    kill -0 "$TAPIR_PID" 2>/dev/null || fail "tapir exited during start-up"
    sleep 0.1
done
grep -qF "$READY" "$LOG" || fail "tapir did not print '$READY' within 10 s"
cat "$LOG"

step "kernel -> tapir: ping -c 3 10.7.0.2"
in_ns ping -c 3 -W 2 10.7.0.2
step "kernel -> tapir: ping -6 -c 3 fd00:7::2"
in_ns ping -6 -c 3 -W 2 fd00:7::2

service_demo

step "demonstration complete"
if [[ $once == 1 ]]; then
    exit 0
fi
# Started through sudo: the other shell is probably a user's one too.
as_root=${SUDO_USER:+sudo }
cat <<MSG
tapir is still running in namespace $NS. Try, from another shell:
  ${as_root}ip netns exec $NS ping 10.7.0.2
  ${as_root}ip netns exec $NS curl http://10.7.0.2/stats
  ${as_root}ip netns exec $NS curl --cacert $CERT https://10.7.0.2/
  ${as_root}ip netns exec $NS curl --http2-prior-knowledge http://10.7.0.2/bytes/100
Press Ctrl-C to stop it and remove the namespace. tapir's log follows:
MSG
tail -n 0 -f "$LOG" &
TAIL_PID=$!
# Ctrl-C reaches tapir as well (it handles SIGINT itself), so tapir usually ends first and
# `wait` returns before the INT trap runs: a signalled stop is the normal way out.
tapir_status=0
wait "$TAPIR_PID" || tapir_status=$?
TAPIR_PID=""
grep -qF 'received signal' "$LOG" || fail "tapir exited on its own (status $tapir_status)"
[[ $tapir_status -eq 0 ]] || fail "tapir exited with status $tapir_status after the stop signal"
echo "tapir stopped"
