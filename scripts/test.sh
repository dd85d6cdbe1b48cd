#!/usr/bin/env bash
# The test suite: what the README tells you to run and what CI runs (.ci/run calls this).
#
#   scripts/test.sh [extra cargo test arguments]
#
# The TAP tests (tests/tap_foundation.rs) need root for network namespaces and TAP devices;
# without root they print "SKIPPED <test>: ..." and do nothing, so run this as root (or with
# sudo) for the full suite.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: not root: the TAP tests will print SKIPPED and not run" >&2
fi

cargo test --release "$@"
# The TLS golden capture needs the seeded, insecure crypto provider of the
# `deterministic-crypto` feature, so it is its own test target, built only with it.
cargo test --release --features deterministic-crypto --test golden_tls "$@"
