#!/usr/bin/env bash
# Network disks end to end: guests whose disk is a gluster:// image that QEMU
# opens through libgfapi (block-gluster.so, package qemu-block-extra) on a
# real GlusterFS volume (started by tests/e2e.rs), two hosts with highlander's
# qemu hook installed, the lockspace on the same volume (each host FUSE-mounts
# it at its own path). libvirt hands no network disk to a lock manager: the
# hook declares it, the daemon leases it at the guest's acquire. Asserts: the
# lease has the FUSE rule's identity; a second guest on the same gluster://
# image is refused naming the holder (same host, other host); a guest on the
# FUSE path of that file is refused too; suspend/resume keeps one holder; a
# failed start leaves nothing held or declared; a libvirtd restart
# (reconnect hook) keeps the guest and its lease; save/restore, managedsave
# and live migration there and back hand it over; destroy frees it. Then an
# NBD export (qemu-nbd on loopback): a second guest on it is refused. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HL_BIN=${HL_BIN:?directory with highlanderd, highlander, libhighlander.so, highlander-hook}
export HL_STATE=${HL_STATE:?scratch directory}
VOLUME=${HL_GLUSTER_VOLUME:?the GlusterFS volume to use}
SERVER=${HL_GLUSTER_SERVER:-127.0.0.2}
export HL_HOOK=1
source "$here/lib.sh"

# status_py HOST PYTHON: evaluates PYTHON with `s` = the host's status.
status_py() { hl_cli "$1" status --json | python3 -c "import json,sys; s=json.load(sys.stdin); print($2)"; }
# holders HOST IDENTITY: the names of the guests holding IDENTITY on HOST.
holders() { status_py "$1" "' '.join(g['name'] for l in s['leases'] if l['identity'] == '$2' for g in l['holders'])"; }
declared() { status_py "$1" "' '.join(sorted(d['name'] for d in s['declared']))"; }

vms_a() { echo "$(hl_root hosta)/vmstore/vms"; }
vms_b() { echo "$(hl_root hostb)/mnt/gluster-vol/vms"; }
mount_point() { case $1 in hosta) dirname "$(vms_a)" ;; hostb) dirname "$(vms_b)" ;; esac; }
mount_volume() {
    mkdir -p "$(mount_point "$1")"
    hl_in "$1" mount -t glusterfs "$SERVER:/$VOLUME" "$(mount_point "$1")"
}
export HL_BEFORE_DAEMON=mount_volume

# net_xml NAME PATH: a guest whose one disk is gluster://SERVER/VOLUME/PATH (raw).
net_xml() {
    hl_guest_xml "$1" "$VOLUME/$2" file | sed -e "s|<disk type='file' device='disk'>|<disk type='network' device='disk'>|" \
        -e "s|<source file='\([^']*\)'/>|<source protocol='gluster' name='\1'><host name='$SERVER' port='24007'/></source>|"
}

# nbd_xml NAME: a guest whose one disk is the NBD export `exp` on loopback.
NBD_PORT=$((20000 + $$ % 10000))
nbd_xml() {
    hl_guest_xml "$1" exp file | sed -e "s|<disk type='file' device='disk'>|<disk type='network' device='disk'>|" \
        -e "s|<source file='exp'/>|<source protocol='nbd' name='exp'><host name='127.0.0.1' port='$NBD_PORT'/></source>|"
}

rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared"
cleanup() {
    local h d
    [ -s "$HL_STATE/qemu-nbd.pid" ] && hl_kill "$(cat "$HL_STATE/qemu-nbd.pid")" qemu-nbd
    for h in hosta hostb; do
        [ -s "$(hl_root "$h")/anchor.pid" ] || continue
        for d in $(hl_virsh "$h" list --name 2>/dev/null); do hl_virsh "$h" destroy "$d" >/dev/null 2>&1 || true; done
    done
    for h in hosta hostb; do
        [ -s "$(hl_root "$h")/anchor.pid" ] || continue
        hl_in "$h" umount -l "$(mount_point "$h")" 2>/dev/null || true
        hl_host_down "$h"
    done
}
trap cleanup EXIT

setup=$HL_STATE/setup-mount
mkdir -p "$setup"
mount -t glusterfs "$SERVER:/$VOLUME" "$setup"
mkdir -p "$setup/vms"
# io_timeout 4 s: this run starts, saves and migrates many guests on the
# volume that holds the lockspace, and a renewal write stuck behind them for
# 2 s voided hosta's lease once ("an earlier write to it has not completed").
"$HL_BIN/highlander" lockspace init "$setup/vms/lockspace" --name gluster --max-hosts 4 --resources 16 --io-timeout 4 >/dev/null
# Raw, written through the mount by root (QEMU runs as root here).
truncate -s 64M "$setup/vms/net.raw"
umount "$setup"

hl_host_up hosta 1 "$(vms_a)/lockspace"
hl_host_up hostb 2 "$(vms_b)/lockspace"

step "a gluster:// guest holds the lease the FUSE path of its file names"
net_xml net1 vms/net.raw > "$HL_STATE/net1.xml"
out=$(hl_virsh hosta create "$HL_STATE/net1.xml" 2>&1) || fail "virsh create net1 (gluster://) failed: $out; QEMU's log: $(tail -3 "$(hl_root hosta)/log/qemu/net1.log" 2>/dev/null)"
id=$(hl_cli hosta who "$(vms_a)/net.raw" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['identity'])")
[[ $id == gluster:*:gfid:* ]] || fail "the FUSE path is named $id, not by volume and GFID"
[ "$(holders hosta "$id")" = net1 ] || fail "net1 does not hold $id: $(hl_cli hosta status)"
status_py hosta "[d['disks'][0]['leased'] for d in s['declared'] if d['name'] == 'net1'] == [True]" | grep -q True || fail "status does not show net1's gluster:// disk leased"
echo "   net1 holds $id"

step "a second guest on the same gluster:// image is refused, naming the holder (same host)"
net_xml net2 vms/net.raw > "$HL_STATE/net2.xml"
if out=$(hl_virsh hosta create "$HL_STATE/net2.xml" 2>&1); then fail "hosta started net2 on the image net1 holds"; fi
echo "   virsh said: ${out//$'\n'/ }"
[[ $out == *"held exclusively by guest \"net1\""* ]] || fail "the refusal does not name net1: $out"
[ "$(hl_domstate net1)" = running ] || fail "net1 stopped after the refused start"

step "the same on the other host"
if out=$(hl_virsh hostb create "$HL_STATE/net2.xml" 2>&1); then fail "hostb started net2 on the image net1 holds on hosta"; fi
echo "   virsh said: ${out//$'\n'/ }"
[[ $out == *"held exclusively by guest \"net1\""*"on host 1 \"hosta\""* ]] || fail "the refusal does not name net1 on hosta: $out"

step "a guest on the FUSE path of the same file conflicts with the gluster:// guest"
hl_guest_xml fuse1 "$(vms_b)/net.raw" file > "$HL_STATE/fuse1.xml"
if out=$(hl_virsh hostb create "$HL_STATE/fuse1.xml" 2>&1); then fail "hostb started fuse1 on the FUSE path of the image net1 holds"; fi
echo "   virsh said: ${out//$'\n'/ }"
[[ $out == *"held exclusively by guest \"net1\""* ]] || fail "the refusal does not name net1: $out"

step "failed starts leave nothing held or declared"
[ -z "$(hl_virsh hostb list --name)" ] || fail "hostb runs a guest after the refusals"
[ -z "$(status_py hostb "len(s['leases']) or ''")" ] || fail "hostb holds leases after the refused starts: $(hl_cli hostb status)"
[ -z "$(declared hostb)" ] || fail "hostb keeps declarations after the refused starts: $(declared hostb)"
[ "$(declared hosta)" = net1 ] || fail "hosta's declarations are '$(declared hosta)', not net1"
net_xml lost vms/absent.raw > "$HL_STATE/lost.xml"
if out=$(hl_virsh hosta create "$HL_STATE/lost.xml" 2>&1); then fail "hosta started a guest on a gluster:// image that does not exist"; fi
echo "   virsh said: ${out//$'\n'/ }"
[[ $out == *"network disk vda (gluster)"*"looking up the file"* ]] || fail "the failed start does not name the disk: $out"
[ "$(declared hosta)" = net1 ] || fail "the failed start left a declaration: $(declared hosta)"

step "suspend/resume: released while paused, one holder after"
lver=$(hl_cli hosta who "$(vms_a)/net.raw" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['lver'])")
hl_virsh hosta suspend net1 >/dev/null
[ -z "$(holders hosta "$id")" ] || fail "paused net1 still holds $id"
hl_virsh hosta resume net1 >/dev/null
[ "$(holders hosta "$id")" = net1 ] || fail "resumed net1 does not hold $id alone: $(holders hosta "$id")"
[ "$(hl_domstate net1)" = running ] || fail "net1 is not running after resume"
echo "   lease version $lver before, $(hl_cli hosta who "$(vms_a)/net.raw" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['lver'])") after"

step "libvirtd restart (reconnect hook): the guest and its lease stay"
pid=$(hl_qemu_pid hosta net1)
hl_libvirtd_restart hosta
[ "$(hl_domstate net1)" = running ] || fail "net1 is not running after libvirtd restarted"
[ "$(hl_qemu_pid hosta net1)" = "$pid" ] || fail "net1's QEMU changed across the libvirtd restart"
[ "$(holders hosta "$id")" = net1 ] || fail "net1 lost $id across the libvirtd restart"
[ "$(declared hosta)" = net1 ] || fail "net1's declaration is gone after the reconnect"

step "save/restore (restore hook): nothing held while saved, the restored guest holds it"
hl_virsh hosta save net1 "$HL_STATE/net1.save" >/dev/null
hl_wait 50 test -z "$(holders hosta "$id")" || fail "saved net1 still holds $id"
hl_virsh hosta restore "$HL_STATE/net1.save" >/dev/null || fail "virsh restore net1 failed"
[ "$(hl_domstate net1)" = running ] || fail "net1 did not restore"
[ "$(holders hosta "$id")" = net1 ] || fail "restored net1 does not hold $id: '$(holders hosta "$id")'"

step "managedsave, then start from it (prepare hook): one holder again"
hl_virsh hosta define "$HL_STATE/net1.xml" >/dev/null || fail "virsh define net1 failed"
hl_virsh hosta managedsave net1 >/dev/null || fail "virsh managedsave net1 failed"
hl_wait 50 test -z "$(holders hosta "$id")" || fail "managed-saved net1 still holds $id"
hl_virsh hosta start net1 >/dev/null || fail "virsh start net1 from its managed save failed"
[ "$(holders hosta "$id")" = net1 ] || fail "net1 started from its managed save does not hold $id: '$(holders hosta "$id")'"
hl_virsh hosta undefine net1 >/dev/null || fail "virsh undefine net1 failed"

step "live migration hosta -> hostb and back (migrate hook): the lease moves with the guest"
who_field() { hl_cli "$1" who "$2" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$3'])"; }
before=$(who_field hosta "$(vms_a)/net.raw" lver)
hl_migrate net1 hosta hostb || fail "virsh migrate --live net1 hosta -> hostb failed"
[ "$(hl_domstate net1 hostb)" = running ] || fail "net1 is not running on hostb after migration"
[ "$(holders hostb "$id")" = net1 ] || fail "net1 does not hold $id on hostb"
[ "$(who_field hostb "$(vms_b)/net.raw" owner_name)" = hostb ] || fail "the lease did not move to hostb"
after=$(who_field hostb "$(vms_b)/net.raw" lver)
[ "$after" -gt "$before" ] || fail "lease version did not advance on hand-over ($before -> $after)"
hl_wait 50 test -z "$(declared hosta)" || fail "hosta keeps net1's declaration after it migrated away"
if hl_virsh hosta create "$HL_STATE/net2.xml" >/dev/null 2>&1; then fail "hosta started net2 on the image after net1 migrated to hostb"; fi
hl_migrate net1 hostb hosta || fail "virsh migrate --live net1 hostb -> hosta failed"
[ "$(holders hosta "$id")" = net1 ] || fail "net1 does not hold $id back on hosta"
[ "$(who_field hosta "$(vms_a)/net.raw" owner_name)" = hosta ] || fail "the lease did not move back to hosta"
echo "   lease version $before on hosta, $after on hostb, $(who_field hosta "$(vms_a)/net.raw" lver) back on hosta"

step "destroy frees the lease and the declaration; the other host may start then"
hl_virsh hosta destroy net1 >/dev/null
hl_wait 50 test -z "$(holders hosta "$id")" || fail "net1's lease outlived its guest"
hl_wait 50 test -z "$(declared hosta)" || fail "net1's declaration outlived its guest: $(declared hosta)"
out=$(hl_virsh hostb create "$HL_STATE/net2.xml" 2>&1) || fail "hostb could not start net2 once net1 was gone: $out"
[ "$(hl_cli hostb who "$(vms_b)/net.raw" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['guest'])")" = net2 ] || fail "net2 does not hold the image on hostb"
step "nbd: a second guest on one NBD export is refused on the other host, naming the holder"
truncate -s 16M "$HL_STATE/nbd.raw"
qemu-nbd --fork --persistent --shared=4 --format=raw --bind=127.0.0.1 --port="$NBD_PORT" --export-name=exp --pid-file="$HL_STATE/qemu-nbd.pid" "$HL_STATE/nbd.raw" \
    || fail "qemu-nbd did not start on 127.0.0.1:$NBD_PORT"
nbd_xml nbd1 > "$HL_STATE/nbd1.xml"
nbd_xml nbd2 > "$HL_STATE/nbd2.xml"
out=$(hl_virsh hosta create "$HL_STATE/nbd1.xml" 2>&1) || fail "virsh create nbd1 (nbd://127.0.0.1:$NBD_PORT/exp) failed: $out"
[ "$(holders hosta "nbd:127.0.0.1:$NBD_PORT/exp")" = nbd1 ] || fail "nbd1 does not hold nbd:127.0.0.1:$NBD_PORT/exp: $(hl_cli hosta status)"
if out=$(hl_virsh hostb create "$HL_STATE/nbd2.xml" 2>&1); then fail "hostb started nbd2 on the NBD export nbd1 holds on hosta"; fi
echo "   virsh said: ${out//$'\n'/ }"
[[ $out == *"held exclusively by guest \"nbd1\""*"on host 1 \"hosta\""* ]] || fail "the refusal does not name nbd1 on hosta: $out"
echo "E2E PASSED"
