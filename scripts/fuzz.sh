#!/usr/bin/env bash
# Fuzzes tapir with cargo-fuzz (libFuzzer) on the installed stable toolchain.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 60 s, every target)
#
# Builds the targets of fuzz/ (RUSTC_BOOTSTRAP=1 lets stable rustc take the nightly flags
# cargo-fuzz passes), writes seed corpora from the captures in captures/ into
# fuzz/corpus/<target>/ (kept between runs, not in git), runs each target for
# SECONDS_PER_TARGET at nice 19, and prints per target the executions, executions per
# second, coverage (libFuzzer's cov: and ft:) and whether it crashed. Crashes, timeouts and
# OOMs are written to fuzz/artifacts/<target>/; the script exits non-zero if any target
# failed. Needs cargo-fuzz (`cargo install cargo-fuzz`).
#
# FUZZ_SANITIZER=none (default: address) builds without a sanitizer; FUZZ_JOBS is not used:
# targets run one after the other, one process each, so the machine is not starved.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SECONDS_PER_TARGET=${1:-60}
shift || true
ALL_TARGETS=(frames h1_engine chunked conn_h1 conn_h2c pcap tcp_segments)
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL_TARGETS[@]}")
SANITIZER=${FUZZ_SANITIZER:-address}

# Largest input per target: frame sequences, h2 connections and captures are long.
max_len() {
    case $1 in
        frames | conn_h2c | pcap) echo 65536 ;;
        conn_h1) echo 16384 ;;
        h1_engine) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/fuzz/target}
BIN_DIR=$TARGET_DIR/$TRIPLE/release

echo "== building (sanitizer: $SANITIZER)"
nice -n 19 cargo fuzz build -O --sanitizer "$SANITIZER"
echo "== seeding from captures/"
"$BIN_DIR/seeds" captures fuzz/corpus

LOG_DIR=$(mktemp -d)
trap 'rm -rf "$LOG_DIR"' EXIT
failed=0
declare -A RESULT
for target in "${TARGETS[@]}"; do
    echo "== $target: ${SECONDS_PER_TARGET}s"
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log=$LOG_DIR/$target.log
    status=ok
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: memory is bounded.
    if ! nice -n 19 cargo fuzz run -O --sanitizer "$SANITIZER" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$target")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        status=CRASHED
        failed=1
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -5 || true
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    first=$(grep -m1 -E '^#[0-9]+.*INITED' "$log" || true)
    cov0=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$first")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corpus=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    RESULT[$target]=$(printf '%-10s %12s %8s %9s %7s %7s %7s  %s' "$target" "${execs:-?}" \
        "${rate:-?}" "${cov0:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$status")
    echo "${RESULT[$target]}"
done

echo
echo "== summary: ${SECONDS_PER_TARGET}s per target, sanitizer $SANITIZER"
# cov at start: the corpus's coverage when the target started (the seeds, on a first run).
printf '%-10s %12s %8s %9s %7s %7s %7s  %s\n' target execs exec/s "cov start" cov ft corpus result
for target in "${TARGETS[@]}"; do
    echo "${RESULT[$target]}"
done
if [[ $failed -ne 0 ]]; then
    echo "fuzz.sh: a target failed; reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run -O TARGET fuzz/artifacts/TARGET/FILE" >&2
fi
exit $failed
