#!/usr/bin/env bash
# Two hosts, one lockspace: real libvirtd + QEMU on each of two isolated
# "hosts" (lib.sh), highlanderd with host ids 1 and 2 on one shared
# lockspace file, one disk image seen by each host through its own loop
# device (as two hosts see one LUN). Run by tests/e2e.rs; needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HL_BIN=${HL_BIN:?directory with highlanderd, highlander, libhighlander.so}
export HL_STATE=${HL_STATE:?scratch directory}
. "$here/lib.sh"

fail() { echo "E2E FAILED: $*" >&2; exit 1; }
step() { echo "-- $*"; }
state_of() { hl_virsh "${2:-hosta}" domstate "$1" 2>/dev/null | head -1; }
lease_holder() { hl_cli "${2:-hosta}" who "$1" --json; }
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
truncate -s 16M "$HL_STATE/shared/disk.raw"
dev1=$(hl_loop "$HL_STATE/shared/disk.raw")
dev2=$(hl_loop "$HL_STATE/shared/disk.raw")
hl_host_up hosta 1 "$HL_STATE/shared/lockspace"
hl_guest_xml web2 "$dev1" > "$HL_STATE/web2.xml"
hl_guest_xml web1 "$dev1" > "$HL_STATE/web1.xml"
hl_virsh hosta create "$HL_STATE/web2.xml" >/dev/null

step "a second host joins the same lockspace"
hl_host_up hostb 2 "$HL_STATE/shared/lockspace"
hl_guest_xml web1 "$dev2" > "$HL_STATE/web1-b.xml"
if out=$(hl_virsh hostb create "$HL_STATE/web1-b.xml" 2>&1); then fail "hostb started web1 on the disk web2 holds on hosta"; fi
[[ $out == *web2* && $out == *hosta* ]] || fail "cross-host refusal does not name web2 on hosta: $out"

step "live migration hands the lease over at the switchover"
migrate web2 hosta hostb || fail "migration hosta -> hostb failed"
[ "$(state_of web2 hostb)" = running ] || fail "web2 is not running on hostb after migration"
holds "$dev1" '"owner_name": *"hostb"' hostb || fail "lease did not move to hostb: $(lease_holder "$dev1" hostb)"
if hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null 2>&1; then fail "hosta started web1 while web2 runs on hostb"; fi

step "and back"
migrate web2 hostb hosta || fail "migration hostb -> hosta failed"
[ "$(state_of web2)" = running ] || fail "web2 is not running on hosta after migrating back"
holds "$dev1" '"owner_name": *"hosta"' || fail "lease did not come back to hosta"

echo "E2E OK"
