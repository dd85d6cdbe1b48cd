#!/usr/bin/env bash
# The test suite: what the README tells you to run and what CI runs (.ci/run calls this).
#
#   scripts/test.sh [extra cargo test arguments]
#
# As root it first installs the system tools the tests drive (scripts/deps.sh: apt-get);
# then a TAP test whose tool is still missing fails with an install hint. The TAP tests
# need root for network namespaces and TAP devices: without root they print
# "SKIPPED <test>: ..." and do nothing, and this script ends with how many were skipped
# and why (so a run without root is never mistaken for a full pass).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/deps.sh
source "$ROOT/scripts/deps.sh"
DEPS_PROG=test.sh

if [[ $(id -u) -eq 0 ]]; then
    deps_ensure || exit 1
else
    echo "test.sh: not root: the TAP tests will be SKIPPED (run as root for the full suite)" >&2
fi

# Every skipped test appends "<test>: <reason>" here (tests/common/netns.rs).
TAPIR_SKIP_LOG=$(mktemp "${TMPDIR:-/tmp}/tapir-skipped.XXXXXX")
export TAPIR_SKIP_LOG
report_skips() {
    local status=$?
    if [[ -s $TAPIR_SKIP_LOG ]]; then
        echo
        echo "test.sh: $(wc -l <"$TAPIR_SKIP_LOG") tests SKIPPED (not run, not passed):"
        sed 's/^[^:]*: //' "$TAPIR_SKIP_LOG" | sort | uniq -c | sed 's/^ */  /'
    fi
    rm -f "$TAPIR_SKIP_LOG"
    exit "$status"
}
trap report_skips EXIT

cargo test --release "$@"
# The TLS golden capture needs the seeded, insecure crypto provider of the
# `deterministic-crypto` feature, so it is its own test target, built only with it.
cargo test --release --features deterministic-crypto --test golden_tls "$@"
# hyper-util's legacy Client over flows needs the `hyper-util` feature (the Connection
# trait and hyper's executor implemented for tapir's types).
cargo test --release --features hyper-util --test memlink_hyper_client "$@"
