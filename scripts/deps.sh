#!/usr/bin/env bash
# The one list of system tools tapir's tests, demo, benchmarks, soak and CI use, and the
# code that installs what is missing (Debian/Ubuntu, apt-get).
#
#   scripts/deps.sh [PROGRAM...]          install what is missing (as root, or through sudo
#                                         when it works without a password); otherwise say
#                                         what to install and fail
#   scripts/deps.sh --check [PROGRAM...]  only list what is missing (exit 1 if anything is)
#
# Sourced by scripts/test.sh, scripts/demo.sh, scripts/bench.sh, scripts/soak.sh and
# .ci/run, which call `deps_ensure` (or `deps_missing`). The tests name the same packages
# in their install hints (tests/common/netns.rs). CI_SKIP_APT=1: never run apt-get (only
# say what is missing).

# `make` builds jemalloc, the tapir binary's allocator (tikv-jemalloc-sys runs its configure
# and make; a Rust toolchain brings the C compiler).
# PROGRAM PACKAGE: PROGRAM is looked up on PATH and in /usr/sbin and /sbin (nginx and dnsmasq
# live there, which a user's PATH often lacks); `scapy` and `ca-certificates` are checked
# by their own tests below.
TAPIR_DEPS=(
    "make make"
    "ip iproute2"
    "ss iproute2"
    "ping iputils-ping"
    "tshark tshark"
    "socat socat"
    "nc netcat-openbsd"
    "curl curl"
    "nghttp nghttp2-client"
    "h2load nghttp2-client"
    "wrk wrk"
    "ps procps"
    "openssl openssl"
    "nginx nginx-light"
    "python3 python3"
    "scapy python3-scapy"
    "dnsmasq dnsmasq-base"
    "ca-certificates ca-certificates"
)

# Measuring tools of scripts/callgrind.sh and of profiling runs (perf record, strace -c):
# installed when a script names them, not with the test tools above (CI does not need them).
TAPIR_MEASURE_DEPS=(
    "valgrind valgrind"
    "perf linux-perf"
    "strace strace"
)

# Whether PROGRAM (an entry of TAPIR_DEPS) is present.
deps_have() {
    case $1 in
    # The tests use the first of python3 and /usr/bin/python3 that has it.
    scapy) python3 -c 'import scapy.all' >/dev/null 2>&1 ||
        /usr/bin/python3 -c 'import scapy.all' >/dev/null 2>&1 ;;
    ca-certificates) [[ -s /etc/ssl/certs/ca-certificates.crt ]] ;;
    *) command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]] ;;
    esac
}

# Prints the packages whose programs are missing, one per line, each once: of the programs
# named, or of the whole list.
deps_missing() {
    local entry program package seen=" " wanted=" $* " entries=("${TAPIR_DEPS[@]}")
    [[ $# -eq 0 ]] || entries+=("${TAPIR_MEASURE_DEPS[@]}")
    for entry in "${entries[@]}"; do
        read -r program package <<<"$entry"
        [[ $# -eq 0 || $wanted == *" $program "* ]] || continue
        if ! deps_have "$program" && [[ $seen != *" $package "* ]]; then
            seen+="$package "
            echo "$package"
        fi
    done
}

# Installs the missing packages (of the programs named, or of the whole list) with apt-get:
# directly as root, through sudo when it works without a password. Returns 1 (after saying
# what to install) when it cannot.
deps_ensure() {
    local prog=${DEPS_PROG:-deps.sh} missing sudo=()
    mapfile -t missing < <(deps_missing "$@")
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ ${CI_SKIP_APT:-0} == 1 ]]; then
        echo "$prog: missing tools, not installed because CI_SKIP_APT=1: apt-get install ${missing[*]}" >&2
        return 1
    fi
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo)
        else
            echo "$prog: missing tools; as root run: apt-get install ${missing[*]}" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$prog: missing tools and no apt-get; install the equivalents of: ${missing[*]}" >&2
        return 1
    fi
    echo "$prog: installing ${missing[*]} (apt-get)" >&2
    # tshark asks whether non-root users may capture; answer "no" up front.
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        "${sudo[@]}" debconf-set-selections 2>/dev/null || true
    "${sudo[@]}" apt-get update -q >&2 || {
        echo "$prog: apt-get update failed; install by hand: apt-get install ${missing[*]}" >&2
        return 1
    }
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2 || {
        echo "$prog: apt-get install failed: apt-get install ${missing[*]}" >&2
        return 1
    }
    mapfile -t missing < <(deps_missing "$@")
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "$prog: still missing after apt-get: ${missing[*]}" >&2
        return 1
    fi
}

# nginx and dnsmasq are in /usr/sbin; the tests run them by name.
case ":$PATH:" in
*:/usr/sbin:*) ;;
*) export PATH="$PATH:/usr/sbin:/sbin" ;;
esac

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    DEPS_PROG=$(basename "$0")
    case ${1:-} in
    --check)
        shift
        mapfile -t missing < <(deps_missing "$@")
        if [[ ${#missing[@]} -gt 0 ]]; then
            echo "missing: ${missing[*]}"
            exit 1
        fi
        echo "all tools present"
        ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' ;;
    -*)
        echo "$DEPS_PROG: unknown option '$1'" >&2
        exit 2
        ;;
    *) deps_ensure "$@" ;;
    esac
fi
