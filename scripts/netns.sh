#!/usr/bin/env bash
# Network namespaces with a TAP device for running tapir against the kernel's own stack.
#
#   scripts/netns.sh up NAME [TAP] [--mtu N]   make namespace NAME with TAP device TAP (default tap0)
#   scripts/netns.sh down NAME                 delete it again (idempotent)
#   scripts/netns.sh exec NAME CMD...          run CMD inside it
#
# Inside the namespace the kernel side of the TAP is 10.7.0.1/24 and fd00:7::1/64, tapir's
# defaults are 10.7.0.2/24 and fd00:7::2/64. Nothing is routed out of the namespace, so all
# traffic stays between the kernel in the namespace and tapir. Needs root (CAP_SYS_ADMIN and
# CAP_NET_ADMIN) and iproute2.
set -euo pipefail

readonly KERNEL_V4=10.7.0.1/24
readonly KERNEL_V6=fd00:7::1/64
readonly DEFAULT_TAP=tap0
PROG=$(basename "$0")
ORIG_ARGS=("$@")

usage() {
    cat >&2 <<USAGE
usage: $PROG up NAME [TAP] [--mtu N]   create namespace NAME with TAP device TAP (default $DEFAULT_TAP)
       $PROG down NAME                 delete namespace NAME and its TAP device (no error if absent)
       $PROG exec NAME CMD [ARG]...    run CMD inside namespace NAME

In the namespace the kernel side of the TAP has ${KERNEL_V4} and ${KERNEL_V6}; run tapir with
  ip netns exec NAME tapir echo --tap TAP
USAGE
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

bad_usage() {
    echo "$PROG: $*" >&2
    usage
    exit 2
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces and TAP devices need CAP_SYS_ADMIN and CAP_NET_ADMIN); try: sudo $0 ${ORIG_ARGS[*]}"
    command -v ip >/dev/null || die "'ip' not found: install iproute2"
}

# Namespace and interface names: what `ip` accepts, without surprises in paths.
check_ns_name() {
    [[ $1 =~ ^[A-Za-z0-9_.-]{1,64}$ && $1 != . && $1 != .. ]] ||
        bad_usage "bad namespace name '$1' (letters, digits, '_', '.', '-'; at most 64)"
}

check_if_name() {
    [[ $1 =~ ^[A-Za-z0-9_.-]{1,15}$ ]] ||
        bad_usage "bad TAP name '$1' (letters, digits, '_', '.', '-'; at most 15)"
}

ns_exists() {
    ip netns list | awk -v name="$1" '$1 == name { found = 1 } END { exit !found }'
}

cmd_up() {
    local name="" tap="" mtu=""
    while [[ $# -gt 0 ]]; do
        case $1 in
        --mtu)
            [[ $# -ge 2 ]] || bad_usage "--mtu needs a value"
            mtu=$2
            shift 2
            ;;
        --mtu=*)
            mtu=${1#--mtu=}
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*) bad_usage "unknown option '$1'" ;;
        *)
            if [[ -z $name ]]; then
                name=$1
            elif [[ -z $tap ]]; then
                tap=$1
            else
                bad_usage "too many arguments to 'up'"
            fi
            shift
            ;;
        esac
    done
    [[ -n $name ]] || bad_usage "'up' needs a namespace NAME"
    tap=${tap:-$DEFAULT_TAP}
    check_ns_name "$name"
    check_if_name "$tap"
    if [[ -n $mtu ]]; then
        [[ $mtu =~ ^[0-9]{1,5}$ ]] && ((mtu >= 1280 && mtu <= 65535)) ||
            bad_usage "--mtu must be a number from 1280 to 65535 (IPv6 needs 1280), not '$mtu'"
    fi
    need_root
    ns_exists "$name" && die "namespace '$name' already exists (remove it with: $PROG down $name)"

    ip netns add "$name"
    # From here on a failure removes the half-made namespace again.
    trap 'ip netns del "$name" 2>/dev/null || true' ERR
    ip -n "$name" link set lo up
    ip netns exec "$name" ip tuntap add dev "$tap" mode tap
    if [[ -n $mtu ]]; then
        ip -n "$name" link set dev "$tap" mtu "$mtu"
    fi
    ip -n "$name" addr add "$KERNEL_V4" dev "$tap"
    ip -n "$name" addr add "$KERNEL_V6" dev "$tap" nodad
    ip -n "$name" link set dev "$tap" up
    trap - ERR

    cat <<MSG
namespace '$name' is up: TAP '$tap' with kernel side ${KERNEL_V4} and ${KERNEL_V6}${mtu:+, MTU $mtu}
run tapir inside it:
  ip netns exec $name tapir echo --tap $tap${mtu:+ --mtu $mtu}
and a kernel-side client, for example:
  ip netns exec $name ping -c 3 10.7.0.2
remove it with:
  $0 down $name
MSG
}

cmd_down() {
    [[ $# -eq 1 ]] || bad_usage "'down' takes exactly one NAME"
    local name=$1
    check_ns_name "$name"
    need_root
    ns_exists "$name" || return 0
    # Processes still inside would keep the namespace (and its TAP) alive after `ip netns
    # del` removes the name, so end them first: TERM, then KILL after a grace period.
    local pids
    pids=$(ip netns pids "$name" 2>/dev/null || true)
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for _ in $(seq 50); do
            pids=$(ip netns pids "$name" 2>/dev/null || true)
            [[ -z $pids ]] && break
            sleep 0.1
        done
        if [[ -n $pids ]]; then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
        fi
    fi
    ip netns del "$name"
}

cmd_exec() {
    [[ $# -ge 2 ]] || bad_usage "'exec' needs a NAME and a command"
    local name=$1
    shift
    check_ns_name "$name"
    need_root
    ns_exists "$name" || die "no namespace '$name' (create it with: $PROG up $name)"
    exec ip netns exec "$name" "$@"
}

[[ $# -ge 1 ]] || bad_usage "missing command"
command=$1
shift
case $command in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
exec) cmd_exec "$@" ;;
-h | --help | help) usage ;;
*) bad_usage "unknown command '$command'" ;;
esac
