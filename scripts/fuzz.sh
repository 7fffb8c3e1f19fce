#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (cargo-fuzz: libFuzzer + AddressSanitizer)
# and runs each for SECONDS (default 10) from its checked-in seed corpus,
# fuzz/corpus/TARGET, plus what earlier runs found (fuzz/target/corpus/TARGET,
# not checked in). Prints the executions per target; fails if any target
# crashed, failed an assertion or hung, naming the input it saved under
# fuzz/artifacts/TARGET/ (README.md, "Fuzzing", says what to do with it).
#
#   bash scripts/fuzz.sh          # 10 s each (scripts/test.sh runs 8 s each)
#   bash scripts/fuzz.sh 600      # the long run
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-10}"
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: bash scripts/fuzz.sh [SECONDS per target]" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz is missing; run scripts/setup.sh (it runs cargo install cargo-fuzz --locked)" >&2; exit 1; }

# cargo-fuzz passes -Z flags (-Zsanitizer=address, coverage passes) that only
# a nightly rustc accepts; this machine has only the stable toolchain and can
# fetch no other, and RUSTC_BOOTSTRAP=1 makes stable accept them.
export RUSTC_BOOTSTRAP=1
cargo fuzz build

failed=()
summary=()
for target in $(cargo fuzz list); do
    found="target/corpus/$target"
    log="target/fuzz-$target.log"
    mkdir -p "$found"
    # New inputs go to the first directory, so the checked-in corpus stays as it is.
    # -timeout: one input running this many seconds is a hang, and fails the run.
    if cargo fuzz run "$target" "$found" "corpus/$target" -- -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        result="FAILED: input ${artifact:-not saved}, log fuzz/$log"
        failed+=("$target")
        tail -40 "$log" >&2
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log" | tail -1)
    summary+=("$(printf '%-20s %12s  %s' "$target" "${execs:-?}" "$result")")
done

printf '%-20s %12s  %s\n' target executions "result (${secs} s each)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
