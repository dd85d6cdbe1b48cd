#!/usr/bin/env bash
# Regenerates the golden captures under captures/golden/ (deterministic recordings of
# tapir's client talking to tapir's server over the in-memory link), then checks that each
# replays byte-exactly. Run after an intended change to what the server sends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TAPIR_REGENERATE_GOLDEN=1 cargo test --release --test golden -- --test-threads=1
# The TLS one needs the seeded crypto provider (never in a normal build).
TAPIR_REGENERATE_GOLDEN=1 cargo test --release --features deterministic-crypto --test golden_tls
ls -l captures/golden/
