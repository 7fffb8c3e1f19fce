#!/usr/bin/env bash
# Two-host figures an administrator plans with, through unchanged virsh:
#   failover   - SIGKILL host 1's libvirtd, lock daemon and guest; time until
#                `virsh create` of the same disk succeeds on host 2;
#                highlander at io_timeout 10 s (default) and 2 s (the test's),
#                sanlock (libvirt's plugin, auto_disk_leases, io_timeout 10 s)
#                where installed;
#   migration  - `virsh migrate --live` there and back, highlander vs no
#                lock manager (nop), median of BENCH_MIGRATIONS each way.
# Both hosts reach the disk by the same device path, as cluster hosts do
# (sanlock's automatic leases are named after the path).
# A benchmark, not a test: it prints figures and fails only when something
# does not work. Takes about 6 minutes with sanlock, 2 without.
#
# Needs root, libvirtd and QEMU (scripts/setup.sh). Environment:
#   HL_BIN            highlanderd, highlander, libhighlander.so (default target/release)
#   HL_STATE          scratch directory (default target/bench-twohost)
#   BENCH_MIGRATIONS  migrations each way per lock manager (default 5)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export HL_BIN=${HL_BIN:-$root/target/release}
export HL_STATE=${HL_STATE:-$root/target/bench-twohost}
export HL_SANLOCK_LEASE_DIR=$HL_STATE/shared/sanlock
migrations=${BENCH_MIGRATIONS:-5}
. "$root/tests/libvirt/lib.sh"

die() { echo "bench/twohost.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (namespaces, loop devices, libvirtd)"
for f in highlanderd highlander libhighlander.so; do
    [ -e "$HL_BIN/$f" ] || die "$HL_BIN/$f missing: cargo build --release --workspace"
done
have_sanlock=0
if command -v sanlock >/dev/null && [ -e "$HL_SANLOCK_PLUGIN" ]; then have_sanlock=1; else
    echo "bench/twohost.sh: sanlock or libvirt's sanlock plugin is missing; sanlock's figures are left out" >&2
fi

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
cleanup() { hl_host_down hosta; hl_host_down hostb; hl_loops_down; }
trap cleanup EXIT

# pair MANAGER IO_TIMEOUT: fresh hosts hosta (id 1) and hostb (id 2), a fresh
# lockspace, one disk; sets $dev.
pair() {
    cleanup
    rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared/sanlock"
    "$HL_BIN/highlander" lockspace init "$HL_STATE/shared/lockspace" --name bench --max-hosts 4 --resources 32 --io-timeout "$2" >/dev/null
    truncate -s 16M "$HL_STATE/shared/disk.raw"
    dev=$(hl_loop "$HL_STATE/shared/disk.raw")
    hl_guest_xml vm "$dev" > "$HL_STATE/vm.xml"
    hl_host_up hosta 1 "$HL_STATE/shared/lockspace" "$1" >/dev/null
    hl_host_up hostb 2 "$HL_STATE/shared/lockspace" "$1" >/dev/null
}

# failover MANAGER IO_TIMEOUT: prints the milliseconds from SIGKILL to a successful start on hostb.
failover() {
    local R daemon taken killed
    pair "$1" "$2"
    hl_virsh hosta create "$HL_STATE/vm.xml" >/dev/null
    hl_virsh hostb create "$HL_STATE/vm.xml" >/dev/null 2>&1 && die "$1: hostb started vm while hosta runs it"
    R=$(hl_root hosta)
    daemon=$R/highlanderd.pid; [ "$1" = sanlock ] && daemon=$R/sanlock.pid
    kill -KILL "$(cat "$R/run/libvirtd.pid")" "$(cat "$daemon")" "$(hl_qemu_pid hosta vm)"
    killed=$(hl_now_ms)
    # Paced retries (each attempt starts a QEMU): resolution 0.2 s.
    until hl_virsh hostb create "$HL_STATE/vm.xml" >/dev/null 2>&1; do
        [ $(($(hl_now_ms) - killed)) -lt 600000 ] || die "$1: hostb never took over"
        # A host that is down never takes over: fail now, not in 10 minutes.
        hl_virsh hostb hostname >/dev/null 2>&1 || die "$1: hostb's libvirtd stopped answering"
        [ "$1" = sanlock ] || hl_cli hostb status >/dev/null 2>&1 || die "$1: hostb's highlanderd stopped answering"
        sleep 0.2
    done
    taken=$(hl_now_ms)
    echo $((taken - killed))
}

# migrate_ms FROM TO: one live migration over unix sockets; prints its milliseconds.
migrate_ms() {
    local t0
    t0=$(hl_now_ms)
    hl_migrate vm "$1" "$2" >/dev/null
    echo $(($(hl_now_ms) - t0))
}

migration() {
    local i
    pair "$1" 10
    hl_virsh hosta create "$HL_STATE/vm.xml" >/dev/null
    for ((i = 0; i < migrations; i++)); do migrate_ms hosta hostb; migrate_ms hostb hosta; done | median
}

echo "libvirt $(libvirtd --version | awk '{print $NF}'), $(qemu-system-x86_64 --version | head -1), $(nproc) CPUs"
printf '%-44s %12s\n' "figure" "ms"
hl10=$(failover highlander 10); printf '%-44s %12s\n' "failover, highlander, io_timeout 10 s" "$hl10"
hl2=$(failover highlander 2); printf '%-44s %12s\n' "failover, highlander, io_timeout 2 s" "$hl2"
if [ $have_sanlock = 1 ]; then
    sl10=$(failover sanlock 10); printf '%-44s %12s\n' "failover, sanlock, io_timeout 10 s" "$sl10"
    awk -v a="$hl10" -v b="$sl10" 'BEGIN { printf "%-44s %11.1fx\n", "failover at io_timeout 10 s, sanlock/highlander", b / a }'
fi
nop=$(migration nop); printf '%-44s %12s\n' "live migration median, no lock manager" "$nop"
hlm=$(migration highlander); printf '%-44s %12s\n' "live migration median, highlander" "$hlm"
printf '%-44s %12s\n' "migration cost of highlander" "$((hlm - nop))"
