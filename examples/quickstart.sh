#!/usr/bin/env bash
# highlander quickstart: build, start an isolated libvirtd with the
# highlander lock manager and a highlanderd on a local lockspace file, start
# a guest, watch a second guest on the same disk (reached through another
# device path) be refused, show `highlander status`, and clean up.
#
# Runs as root on Debian 12; installs what it needs (scripts/setup.sh).
# Touches nothing of the machine's own libvirt: the host runs in its own
# mount and UTS namespaces, with its state under target/quickstart, and
# every process and loop device it creates is stopped or detached by the
# id it recorded.
#   bash examples/quickstart.sh          run, then tear everything down
#   bash examples/quickstart.sh --keep   leave the host running to play with
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
case "${1:-}" in
    --keep) keep=1 ;;
    "") ;;
    *) echo "usage: bash examples/quickstart.sh [--keep]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "quickstart: run as root (it starts libvirtd and attaches loop devices)" >&2; exit 1; }
started=$SECONDS
step() { printf '\n== [%3ds] %s\n' $((SECONDS - started)) "$*"; }

step "installing missing packages (libvirt, QEMU, libclang; nothing if present)"
bash scripts/setup.sh

step "building highlanderd, highlander and highlander.so (release; a few minutes the first time)"
cargo build --release --quiet

export HL_BIN=$PWD/target/release HL_STATE=$PWD/target/quickstart
. tests/libvirt/lib.sh
# A previous run stopped half-way: take its host and loop devices down first.
hl_host_down hosta 2>/dev/null || true
hl_loops_down
rm -rf "$HL_STATE"
mkdir -p "$HL_STATE/shared"
cleanup() {
    local rc=$?
    step "cleaning up: guests, libvirtd, virtlogd, highlanderd, namespace, loop devices, $HL_STATE"
    hl_host_down hosta
    hl_loops_down
    rm -rf "$HL_STATE"
    [ $rc = 0 ] && echo "quickstart: done in $((SECONDS - started)) s" || echo "quickstart: FAILED (exit $rc)" >&2
}
[ $keep = 1 ] || trap cleanup EXIT

step "a lockspace on (pretend-)shared storage: $HL_STATE/shared/lockspace"
"$HL_BIN/highlander" lockspace init "$HL_STATE/shared/lockspace" --name quickstart --max-hosts 8 --resources 64

step "one disk image, reached through two device paths (two loop devices)"
truncate -s 64M "$HL_STATE/shared/disk.raw"
dev1=$(hl_loop "$HL_STATE/shared/disk.raw")
dev2=$(hl_loop "$HL_STATE/shared/disk.raw")
echo "   $dev1 and $dev2 both show $HL_STATE/shared/disk.raw"

step "host 'hosta': highlanderd (host id 1) + libvirtd with lock_manager = \"highlander\""
hl_host_up hosta 1 "$HL_STATE/shared/lockspace"
echo "   highlanderd and libvirtd are up (libvirt's lock driver: highlander.so)"

step "starting guest 'web1' on $dev1"
hl_guest_xml web1 "$dev1" > "$HL_STATE/web1.xml"
hl_virsh hosta create "$HL_STATE/web1.xml"
hl_virsh hosta list

step "starting guest 'web2' on $dev2, the same disk: highlander must refuse"
hl_guest_xml web2 "$dev2" > "$HL_STATE/web2.xml"
if out=$(hl_virsh hosta create "$HL_STATE/web2.xml" 2>&1); then
    echo "quickstart: FAILED: web2 started on a disk web1 is using" >&2
    exit 1
fi
echo "   virsh create web2.xml was refused:"
printf '%s\n' "$out" | sed 's/^/   | /'

step "highlander who $dev2 (any path to the disk will do)"
hl_cli hosta who "$dev2"

step "highlander status"
hl_cli hosta status

if [ $keep = 1 ]; then
    echo
    echo "The host keeps running. Try:"
    echo "  virsh -c '$(hl_uri hosta)' list"
    echo "  nsenter -t $(cat "$(hl_root hosta)/anchor.pid") -m -u $HL_BIN/highlander status --json"
    echo "  $HL_BIN/highlander dump $HL_STATE/shared/lockspace"
    echo "Tear down: HL_BIN=$HL_BIN HL_STATE=$HL_STATE bash -c '. tests/libvirt/lib.sh; hl_host_down hosta; hl_loops_down'"
fi
