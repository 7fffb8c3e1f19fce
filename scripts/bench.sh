#!/usr/bin/env bash
# Lease-engine benchmark, side by side with sanlock: join time, acquire and
# release latency, I/Os per operation, renewal I/O, bytes per lease.
# Installs sanlock on Debian when missing (needs root). Extra arguments go to
# hl-bench-engine, e.g. --iterations 500, --sanlock-io-timeout 2, --no-sanlock.
# BENCH_DIR (default target/bench) must be on the disk you want to measure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v sanlock >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sanlock
    else
        echo "bench: sanlock is not installed (apt-get install sanlock as root); measuring highlander only" >&2
    fi
fi
cargo build --release --bin hl-bench-engine
exec target/release/hl-bench-engine --dir "${BENCH_DIR:-target/bench}" "$@"
