#!/usr/bin/env bash
# Two network namespaces joined only through `tapir link`, for measuring TCP over an impaired
# path (delay, loss...) with the kernel's TCP and tapir side by side.
#
#   scripts/linkpath.sh up NAME     make namespaces NAME-c (client) and NAME-s (server)
#   scripts/linkpath.sh down NAME   delete them again, ending what runs inside (idempotent)
#
# In each namespace a bridge br0 joins the link's TAP device `tapl` with a TAP device for a
# tapir process; all addresses share 10.9.0.0/24:
#
#   NAME-c: br0 10.9.0.1 (curl, the kernel client)    tapg: for `tapir get --ip 10.9.0.3/24`
#   NAME-s: br0 10.9.0.2 (nginx, the kernel server)   taps: for `tapir serve --ip 10.9.0.4/24`
#
# Nothing passes between the namespaces until the link runs, from either namespace:
#   ip netns exec NAME-c tapir link --netns-b NAME-s tapl tapl --delay 10ms --loss 1%
# (restart it to change the impairment). Needs root and iproute2.
set -euo pipefail

die() {
    echo "linkpath.sh: $*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ $# -eq 2 ]] || die "usage: linkpath.sh up|down NAME"
NAME=$2
[[ $NAME =~ ^[A-Za-z0-9_.-]{1,60}$ ]] || die "bad name '$NAME'"

ns_exists() {
    ip netns list | awk -v name="$1" '$1 == name { found = 1 } END { exit !found }'
}

down() {
    local ns pids
    for ns in "$NAME-c" "$NAME-s"; do
        ns_exists "$ns" || continue
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [[ -n $pids ]]; then
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                pids=$(ip netns pids "$ns" 2>/dev/null || true)
                [[ -z $pids ]] && break
                sleep 0.2
            done
            # shellcheck disable=SC2086
            [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
        fi
        ip netns delete "$ns" 2>/dev/null || true
    done
}

side() {
    local ns=$1 addr=$2 app_tap=$3
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link add br0 type bridge forward_delay 0 stp_state 0
    local tap
    for tap in tapl "$app_tap"; do
        ip -n "$ns" tuntap add dev "$tap" mode tap
        ip -n "$ns" link set "$tap" master br0 up
    done
    ip -n "$ns" addr add "$addr/24" dev br0
    ip -n "$ns" link set br0 up
}

case $1 in
up)
    ns_exists "$NAME-c" && die "$NAME-c exists"
    trap 'down' ERR
    side "$NAME-c" 10.9.0.1 tapg
    side "$NAME-s" 10.9.0.2 taps
    ;;
down) down ;;
*) die "usage: linkpath.sh up|down NAME" ;;
esac
