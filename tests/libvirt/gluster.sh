#!/usr/bin/env bash
# Two hosts on a GlusterFS replica 3 arbiter 1 volume (started by tests/e2e.rs,
# options `group virt`): each host FUSE-mounts it in its own namespace at its
# own path (not a subdirectory mount: on a sharded volume, as `group virt`
# makes it, those read zeros; tests/gluster.rs shows it). The lockspace and a qcow2 guest
# disk live on the volume. A second guest on the other host is refused naming
# the holder; live migration hands the lease over. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HL_BIN=${HL_BIN:?directory with highlanderd, highlander, libhighlander.so}
export HL_STATE=${HL_STATE:?scratch directory}
VOLUME=${HL_GLUSTER_VOLUME:?the GlusterFS volume to use}
SERVER=${HL_GLUSTER_SERVER:-127.0.0.2}
source "$here/lib.sh"


# Where each host sees the volume's vms/ directory.
vms_a() { echo "$(hl_root hosta)/vmstore/vms"; }
vms_b() { echo "$(hl_root hostb)/mnt/gluster-vol/vms"; }
mount_point() { case $1 in hosta) dirname "$(vms_a)" ;; hostb) dirname "$(vms_b)" ;; esac; }
mount_volume() {
    local m
    m=$(mount_point "$1")
    mkdir -p "$m"
    case $1 in
        hosta) hl_in hosta mount -t glusterfs "$SERVER:/$VOLUME" "$m" ;;
        hostb) hl_in hostb mount -t glusterfs "$SERVER:$VOLUME" "$m" ;;
    esac
}
export HL_BEFORE_DAEMON=mount_volume

rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared"
cleanup() {
    local h d
    for h in hosta hostb; do
        [ -s "$(hl_root "$h")/anchor.pid" ] || continue
        for d in $(hl_virsh "$h" list --name 2>/dev/null); do hl_virsh "$h" destroy "$d" >/dev/null 2>&1 || true; done
    done
    hl_loops_down
    for h in hosta hostb; do
        [ -s "$(hl_root "$h")/anchor.pid" ] || continue
        hl_in "$h" umount -l "$(mount_point "$h")" 2>/dev/null || true
        hl_host_down "$h"
    done
}
trap cleanup EXIT

# hosta is up first (its daemon starts once the lockspace exists): its
# namespace and mount come from hl_host_up, so the lockspace is made from
# a mount of our own.
setup=$HL_STATE/setup-mount
mkdir -p "$setup"
mount -t glusterfs "$SERVER:/$VOLUME" "$setup"
mkdir -p "$setup/vms"
"$HL_BIN/highlander" lockspace init "$setup/vms/lockspace" --name gluster --max-hosts 4 --resources 16 --io-timeout 2 >/dev/null
qemu-img create -q -f qcow2 "$setup/vms/web.qcow2" 64M
umount "$setup"

hl_host_up hosta 1 "$(vms_a)/lockspace"
hl_host_up hostb 2 "$(vms_b)/lockspace"

step "one disk, two mount paths and two spellings of the volume: one identity"
id_a=$(who "$(vms_a)/web.qcow2" hosta identity)
id_b=$(who "$(vms_b)/web.qcow2" hostb identity)
[[ $id_a == gluster:*:gfid:* ]] || fail "hosta names the qcow2 $id_a, not by volume and GFID"
[ "$id_a" = "$id_b" ] || fail "hosta names the qcow2 $id_a but hostb $id_b"
echo "   both hosts: $id_a"

step "cross-host refusal: a guest on hostb cannot open the qcow2 web1 uses on hosta"
hl_guest_xml web1 "$(vms_a)/web.qcow2" file qcow2 > "$HL_STATE/web1.xml"
hl_guest_xml intruder "$(vms_b)/web.qcow2" file qcow2 > "$HL_STATE/intruder.xml"
hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null
# QEMU's own image lock (an OFD lock, which GlusterFS keeps volume-wide)
# refuses it first while both clients are connected; highlander's lease is
# what still holds when a host is cut off and its locks are dropped.
if out=$(hl_virsh hostb create "$HL_STATE/intruder.xml" 2>&1); then fail "hostb started intruder on the qcow2 web1 holds on hosta"; fi
echo "   virsh said: ${out//$'\n'/ }"
[ "$(hl_domstate web1)" = running ] || fail "web1 stopped after the refused start on hostb"

step "cross-host refusal by highlander: a raw image on the volume, through a loop device on each host"
hl_in hosta truncate -s 16M "$(vms_a)/db.raw"
loop_a=$(hl_in hosta losetup --find --show "$(vms_a)/db.raw")
loop_b=$(hl_in hostb losetup --find --show "$(vms_b)/db.raw")
echo "$loop_a" >> "$HL_STATE/loopdevs"; echo "$loop_b" >> "$HL_STATE/loopdevs"
[ "$(who "$loop_a" hosta identity)" = "$(who "$loop_b" hostb identity)" ] || fail "hosta's $loop_a and hostb's $loop_b over one file have different identities"
hl_guest_xml db1 "$loop_a" > "$HL_STATE/db1.xml"
hl_guest_xml db2 "$loop_b" > "$HL_STATE/db2.xml"
hl_virsh hosta create "$HL_STATE/db1.xml" >/dev/null
if out=$(hl_virsh hostb create "$HL_STATE/db2.xml" 2>&1); then fail "hostb started db2 on the image db1 holds on hosta"; fi
echo "   virsh said: ${out//$'\n'/ }"
[[ $out == *"is held exclusively by guest \"db1\""*"on host 1 \"hosta\""* ]] || fail "the refusal does not name db1 on hosta: $out"
hl_virsh hosta destroy db1 >/dev/null

step "live migration hosta -> hostb, each host with its own path to the disk"
before=$(who "$(vms_a)/web.qcow2" hosta lver)
hl_virsh hosta dumpxml --migratable web1 | sed "s|$(vms_a)/web.qcow2|$(vms_b)/web.qcow2|" > "$HL_STATE/web1-on-b.xml"
hl_migrate web1 hosta hostb --xml "$HL_STATE/web1-on-b.xml" || fail "virsh migrate --live web1 hosta -> hostb failed"
[ "$(hl_domstate web1 hostb)" = running ] || fail "web1 is not running on hostb after migration"
[ "$(who "$(vms_b)/web.qcow2" hostb owner_name)" = hostb ] || fail "the lease did not move to hostb"
after=$(who "$(vms_b)/web.qcow2" hostb lver)
[ "$after" -gt "$before" ] || fail "lease version did not advance on hand-over ($before -> $after)"
hl_guest_xml web2 "$(vms_a)/web.qcow2" file qcow2 > "$HL_STATE/web2.xml"
if hl_virsh hosta create "$HL_STATE/web2.xml" >/dev/null 2>&1; then fail "hosta started a second guest on the qcow2 after it migrated away"; fi
echo "   lease version $before on hosta, $after on hostb; a second guest on hosta refused"
echo "E2E PASSED"
