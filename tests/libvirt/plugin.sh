#!/usr/bin/env bash
# End-to-end: real libvirtd + QEMU (KVM, or TCG without /dev/kvm) with the
# highlander plugin and a real highlanderd on a real lockspace file; one
# disk image reached through two loop devices. Every step asserts what an
# administrator relies on. Run by tests/e2e.rs (cargo test); needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HL_BIN=${HL_BIN:?directory with highlanderd, highlander, libhighlander.so}
export HL_STATE=${HL_STATE:?scratch directory}
. "$here/lib.sh"

fail() { echo "E2E FAILED: $*" >&2; exit 1; }
step() { echo "-- $*"; }
state_of() { hl_virsh "${2:-hosta}" domstate "$1" 2>/dev/null | head -1; }
lease_holder() { hl_cli "${2:-hosta}" who "$1" --json; }
# holds DISK PATTERN [HOST]: `who` output matches. (Captured first: a pipe
# into `grep -q` can close before the writer is done.)
holds() { local out; out=$(lease_holder "$1" "${3:-hosta}") && grep -q "$2" <<<"$out"; }
# Live migration over unix sockets only (no network needed between the hosts).
migrate() {
    hl_virsh "$2" migrate --live --p2p "$1" "qemu+unix:///system?socket=$(hl_root "$3")/run/libvirt/libvirt-sock" \
        --migrateuri "unix://$HL_STATE/shared/migrate-$1.sock"
}

rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared"
cleanup() { hl_host_down hosta; hl_host_down hostb; hl_loops_down; }
trap cleanup EXIT

"$HL_BIN/highlander" lockspace init "$HL_STATE/shared/lockspace" --name e2e --max-hosts 4 --resources 32 --io-timeout 3 >/dev/null
truncate -s 16M "$HL_STATE/shared/disk.raw" "$HL_STATE/shared/extra.raw"
dev1=$(hl_loop "$HL_STATE/shared/disk.raw")
dev2=$(hl_loop "$HL_STATE/shared/disk.raw")
extra1=$(hl_loop "$HL_STATE/shared/extra.raw")
extra2=$(hl_loop "$HL_STATE/shared/extra.raw")
hl_host_up hosta 1 "$HL_STATE/shared/lockspace"
for g in web1:$dev1 web2:$dev2; do hl_guest_xml "${g%%:*}" "${g#*:}" > "$HL_STATE/${g%%:*}.xml"; done

step "start: the first guest gets the disk"
hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null
[ "$(state_of web1)" = running ] || fail "web1 is $(state_of web1)"
holds "$dev1" '"guest": *"web1"' || fail "who $dev1 does not name web1: $(lease_holder "$dev1")"

step "start: a second guest on the same disk through another path is refused, naming the holder"
if out=$(hl_virsh hosta create "$HL_STATE/web2.xml" 2>&1); then fail "web2 started on web1's disk"; fi
echo "   virsh said: $out"
for word in web1 hosta "resource busy"; do
    [[ $out == *"$word"* ]] || fail "refusal does not mention '$word': $out"
done

step "status shows the lease and the guest"
status=$(hl_cli hosta status --json)
grep -q '"web1"' <<<"$status" || fail "status lacks web1: $status"

step "suspend releases, resume re-acquires"
hl_virsh hosta suspend web1 >/dev/null
holds "$dev1" '"held": *false' || fail "paused web1 still holds the disk: $(lease_holder "$dev1")"
hl_virsh hosta resume web1 >/dev/null
[ "$(state_of web1)" = running ] || fail "web1 did not resume"
holds "$dev1" '"guest": *"web1"' || fail "resumed web1 does not hold the disk"

step "hotplug: attach-disk takes a lease; the same disk elsewhere is refused"
hl_virsh hosta attach-disk web1 "$extra1" vdb --sourcetype block >/dev/null
holds "$extra2" '"guest": *"web1"' || fail "attached disk not leased by web1"
hl_guest_xml web3 "$extra2" > "$HL_STATE/web3.xml"
if out=$(hl_virsh hosta create "$HL_STATE/web3.xml" 2>&1); then fail "web3 started on a disk hot-plugged into web1"; fi
[[ $out == *web1* ]] || fail "hotplug refusal does not name web1: $out"

step "save/restore keeps the guest's leases working"
hl_virsh hosta save web1 "$HL_STATE/web1.save" >/dev/null
holds "$dev1" '"held": *false' || fail "saved web1 still holds the disk"
hl_virsh hosta restore "$HL_STATE/web1.save" >/dev/null
[ "$(state_of web1)" = running ] || fail "web1 did not restore"
holds "$dev1" '"guest": *"web1"' || fail "restored web1 does not hold the disk"

step "destroy releases at once: the second guest can now start"
hl_virsh hosta destroy web1 >/dev/null
hl_virsh hosta create "$HL_STATE/web2.xml" >/dev/null || fail "web2 refused after web1 was destroyed"
[ "$(state_of web2)" = running ] || fail "web2 is $(state_of web2)"
holds "$dev1" '"guest": *"web2"' || fail "web2 does not hold the disk"

step "restarting highlanderd keeps the running guest and its lease"
R=$(hl_root hosta)
hl_kill "$(cat "$R/highlanderd.pid")" highlanderd
hl_daemon_start hosta
[ "$(state_of web2)" = running ] || fail "web2 died with the daemon restart"
holds "$dev1" '"guest": *"web2"' || fail "lease lost across the daemon restart"
if hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null 2>&1; then fail "web1 started while web2 holds the disk after a daemon restart"; fi

echo "E2E OK"
