#!/usr/bin/env bash
# Benchmarks, side by side with sanlock on the same storage (and libvirt's
# sanlock plugin for the libvirt-level ones):
# - hl-bench-engine: join time, acquire and release latency, I/Os per
#   operation, renewal I/O, bytes per lease;
# - hl-bench-daemon --sanlock: round trip through each daemon, boot storm of
#   500 guests x 2 disks, daemon RSS holding the leases, bytes on disk;
#   quiet and again with --load (a busy process per core); then the storm
#   against guests (100, 500, 2000) and disks per guest (1, 8).
# Installs sanlock on Debian when missing (needs root). Extra arguments go to
# hl-bench-engine, e.g. --iterations 500, --sanlock-io-timeout 2, --no-sanlock;
# DAEMON_ARGS to hl-bench-daemon, e.g. DAEMON_ARGS="--guests 100".
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
# hl-bench-daemon runs the highlanderd built next to it.
cargo build --release --workspace --bins
target/release/hl-bench-engine --dir "${BENCH_DIR:-target/bench}" "$@"
echo
# A lockspace on three devices next to one (issue 13): latency, a slow or
# hung member, fencing time, renewal I/O per member (bench/members.rs).
target/release/hl-bench-members --dir "${BENCH_DIR:-target/bench}"
echo
# Quiet, then with a busy process on every core (the tails a boot storm
# on a busy host meets).
for load in "" --load; do
    # shellcheck disable=SC2086 # DAEMON_ARGS is a list of arguments
    target/release/hl-bench-daemon --dir "${BENCH_DIR:-target/bench}" --sanlock $load ${DAEMON_ARGS:-}
    echo
done
# How the boot storm grows with guests and disks per guest. sanlock beside
# ours up to 500 guests and 4000 leases: its leases take 1 MiB each on
# disk, and with 2000 guests registered at once its storm never completed
# here (30 minutes; its client table holds fewer).
echo "boot storm against guests x disks per guest (highlander | sanlock):"
for guests in 100 500 2000; do
    for disks in 1 8; do
        with_sanlock=""
        if [ "$guests" -le 500 ] && [ $((guests * disks)) -le 4000 ]; then with_sanlock=--sanlock; fi
        target/release/hl-bench-daemon --dir "${BENCH_DIR:-target/bench}" --guests "$guests" --disks "$disks" $with_sanlock \
            | grep -E '^boot storm: (per guest .*p99|[0-9]+ guests)'
    done
done
echo
# virsh start+destroy and libvirtd start-up with highlander, nop and libvirt's
# sanlock plugin (bench/libvirt.sh; BENCH_ROUNDS etc. there). Needs the plugin.
if [ ! -e /usr/lib/x86_64-linux-gnu/libvirt/lock-driver/sanlock.so ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libvirt-sanlock
fi
cargo build --release -p highlander-plugin
# Absolute: the hosts resolve it inside their own mount namespaces.
# With 1 and 8 disks per guest: the time inside the lock manager per start.
for disks in 1 8; do
    BENCH_DISKS=$disks HL_BIN=$PWD/target/release HL_STATE="${BENCH_DIR:-target/bench}/libvirt" bash bench/libvirt.sh
    echo
done
# Failover and live migration across two hosts (bench/twohost.sh; ~6 min).
HL_BIN=$PWD/target/release HL_STATE="${BENCH_DIR:-target/bench}/twohost" bash bench/twohost.sh
