#!/usr/bin/env bash
# highlander quickstart: build, start an isolated libvirtd with the
# highlander lock manager and a highlanderd on a local lockspace, start a
# guest, watch a second guest on the same disk (reached through another
# device path) be refused, and show `highlander status`.
#
# Runs as root on Debian 12; installs what it needs. Touches nothing of the
# machine's own libvirt: everything lives under target/quickstart.
#   bash examples/quickstart.sh          run, then tear everything down
#   bash examples/quickstart.sh --keep   leave the host running to play with
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0; [ "${1:-}" = "--keep" ] && keep=1

bash scripts/setup.sh
echo "== building"
cargo build --release --workspace --quiet

export HL_BIN=$PWD/target/release HL_STATE=$PWD/target/quickstart
. tests/libvirt/lib.sh
hl_host_down hosta 2>/dev/null || true
hl_loops_down
rm -rf "$HL_STATE"
mkdir -p "$HL_STATE/shared"
cleanup() { hl_host_down hosta; hl_loops_down; }
[ $keep = 1 ] || trap cleanup EXIT

echo "== a lockspace on (pretend-)shared storage"
"$HL_BIN/highlander" lockspace init "$HL_STATE/shared/lockspace" --name quickstart --max-hosts 8 --resources 64

echo "== one disk image, reached through two device paths (two loop devices)"
truncate -s 64M "$HL_STATE/shared/disk.raw"
dev1=$(hl_loop "$HL_STATE/shared/disk.raw")
dev2=$(hl_loop "$HL_STATE/shared/disk.raw")
echo "   $dev1 and $dev2 both show $HL_STATE/shared/disk.raw"

echo "== host 'hosta': highlanderd + libvirtd with lock_manager = \"highlander\""
hl_host_up hosta 1 "$HL_STATE/shared/lockspace"

echo "== starting guest 'web1' on $dev1"
hl_guest_xml web1 "$dev1" > "$HL_STATE/web1.xml"
hl_virsh hosta create "$HL_STATE/web1.xml"

echo "== starting guest 'web2' on $dev2 (the same disk): highlander must refuse"
hl_guest_xml web2 "$dev2" > "$HL_STATE/web2.xml"
if hl_virsh hosta create "$HL_STATE/web2.xml"; then
    echo "quickstart: FAILED: web2 started on a disk web1 is using" >&2
    exit 1
fi

echo "== highlander status"
hl_cli hosta status

if [ $keep = 1 ]; then
    echo
    echo "The host keeps running. Try:"
    echo "  virsh -c '$(hl_uri hosta)' list"
    echo "  nsenter -t $(cat "$(hl_root hosta)/anchor.pid") -m -u $HL_BIN/highlander status --json"
    echo "  $HL_BIN/highlander dump $HL_STATE/shared/lockspace"
    echo "Tear down: HL_BIN=$HL_BIN HL_STATE=$HL_STATE bash -c '. tests/libvirt/lib.sh; hl_host_down hosta; hl_loops_down'"
fi
