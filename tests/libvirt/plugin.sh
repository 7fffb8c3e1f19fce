#!/usr/bin/env bash
# End-to-end on one host: real libvirtd + QEMU (KVM, or TCG without
# /dev/kvm) with the highlander plugin and a real highlanderd on a real
# lockspace file. Disks that QEMU's own image locks cannot tie together:
# one image reached through several loop devices (<disk type='block'>), and
# one file reached through a symlink and a bind mount. Every step asserts
# what an administrator relies on, and the refusals virsh prints are
# compared in full (only pids and times may vary) and echoed here.
# Run by tests/e2e.rs (cargo test); needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HL_BIN=${HL_BIN:?directory with highlanderd, highlander, libhighlander.so}
export HL_STATE=${HL_STATE:?scratch directory}
. "$here/lib.sh"

say() { sed 's/^/   | /' <<<"$1"; }
lease_holder() { hl_cli "${2:-hosta}" who "$1" --json; }
# holds DISK PATTERN [HOST]: `who` output matches. (Captured first: a pipe
# into `grep -q` can close before the writer is done.)
holds() { local out; out=$(lease_holder "$1" "${3:-hosta}") && grep -q "$2" <<<"$out"; }
uuid_of() { sed -n 's:.*<uuid>\(.*\)</uuid>.*:\1:p' "$HL_STATE/$1.xml"; }
# holders IDENTITY: "guest:pid" of every holder of that disk's lease on this
# host, as `highlander status` reports them (empty: no lease).
holders() {
    local st
    st=$(hl_cli hosta status --json) || fail "highlander status failed"
    jq -r --arg id "$1" '[.leases[] | select(.identity == $id) | .holders[] | "\(.name):\(.pid)"] | join(" ")' <<<"$st"
}
# guest_leases NAME: how many leases `highlander status` lists for the guest
# (empty when the daemon does not know the guest).
guest_leases() { hl_cli hosta status --json | jq -r --arg n "$1" '.guests[] | select(.name == $n) | .leases | length'; }
# running: names of the running guests, sorted, on one line.
running() { hl_virsh hosta list --name | sed '/^$/d' | sort | paste -sd' '; }
not_listed() { local l; l=$(running); [[ " $l " != *" $1 "* ]]; }
status_line() { hl_cli hosta status | grep -F "$1" || true; }
# wait_released IDENTITY SECONDS: polls `highlander status` until nobody holds
# the disk; prints how long that took.
wait_released() {
    local t0 deadline
    t0=$(hl_now_ms) deadline=$(($(hl_now_ms) + $2 * 1000))
    while [ -n "$(holders "$1")" ]; do
        [ "$(hl_now_ms)" -lt "$deadline" ] || return 1
        sleep 0.01
    done
    echo "$(($(hl_now_ms) - t0)) ms"
}
# expect_said WHAT OUTPUT TEMPLATE: OUTPUT (what virsh printed) must be exactly
# TEMPLATE, in which {pid} stands for a number and {time} for a "YYYY-MM-DD
# hh:mm:ss UTC" time: the only parts that differ between runs.
expect_said() {
    say "$2"
    python3 - "$2" "$3" <<'PY' || fail "$1: virsh said
$2
expected
$3"
import re, sys
text, template = sys.argv[1], sys.argv[2]
var = {"{pid}": r"[0-9]+", "{time}": r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} UTC"}
rx = "".join(var.get(p, re.escape(p)) for p in re.split(r"(\{pid\}|\{time\})", template))
sys.exit(0 if re.fullmatch(rx, text) else 1)
PY
}
# busy_line GUEST DISK_PATH IDENTITY HOLDER [GUEST_PID]: the "resource busy"
# line virsh prints when GUEST is refused a disk HOLDER holds exclusively.
busy_line() {
    local guest=$1 path=$2 identity=$3 holder=$4 pid=${5:-}
    [ -n "$pid" ] || pid='{pid}'
    echo "error: resource busy: Failed to acquire lock: cannot lock $path for guest \"$guest\" (uuid $(uuid_of "$guest"), pid $pid): disk $identity is held exclusively by guest \"$holder\" (uuid $(uuid_of "$holder")) on host 1 \"hosta\" since {time} (host is live)"
}

t_start=$(date +%s)
rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared" "$HL_STATE/bind"
cleanup() { hl_host_down hosta; hl_loops_down; }
trap cleanup EXIT

S=$(realpath "$HL_STATE")
"$HL_BIN/highlander" lockspace init "$S/shared/lockspace" --name e2e --max-hosts 4 --resources 32 --io-timeout 3 >/dev/null
truncate -s 16M "$S"/shared/{disk,extra,own,sh}.raw
dev1=$(hl_loop "$S/shared/disk.raw")
dev2=$(hl_loop "$S/shared/disk.raw")
extra1=$(hl_loop "$S/shared/extra.raw")
extra2=$(hl_loop "$S/shared/extra.raw")
own=$(hl_loop "$S/shared/own.raw")
sh1=$(hl_loop "$S/shared/sh.raw")
sh2=$(hl_loop "$S/shared/sh.raw")
sh3=$(hl_loop "$S/shared/sh.raw")
hl_host_up hosta 1 "$S/shared/lockspace"
R=$(hl_root hosta)
# A file disk on a small ext4 filesystem of its own (it has a UUID, so its
# files are named fs:uuid:<uuid>:ino:<inode>; this machine's root has a nil
# UUID and names files by path), mounted in the host's mount namespace
# (libvirtd, QEMU and highlanderd see it; it dies with the host), reached
# also through a bind mount and a symlink.
truncate -s 64M "$S/shared/fs.img"
mkfs.ext4 -q -F "$S/shared/fs.img"
fsdev=$(hl_loop "$S/shared/fs.img")
mkdir -p "$S/mnt"
hl_in hosta mount "$fsdev" "$S/mnt"
hl_in hosta truncate -s 16M "$S/mnt/file.raw"
hl_in hosta mount --bind "$S/mnt" "$S/bind"
ln -s "$S/mnt/file.raw" "$S/link.raw"
# identity FILE: the identity highlanderd gives the image file itself
# (docs/IDENTITY.md: fs:<filesystem>:ino:<inode>, or file:<canonical path>).
# Every other path to it (loop devices, symlink, bind mount) must get it too.
identity() {
    local id
    id=$(hl_cli hosta who "$1" --json | jq -r .identity)
    [[ $id == "file:$1" || $id == fs:*:ino:$(hl_in hosta stat -c %i "$1") ]] || fail "identity of $1 is '$id': neither its path nor its inode"
    echo "$id"
}
disk_id=$(identity "$S/shared/disk.raw") extra_id=$(identity "$S/shared/extra.raw")
sh_id=$(identity "$S/shared/sh.raw") file_id=$(identity "$S/mnt/file.raw") own_id=$(identity "$S/shared/own.raw")
[[ $file_id == fs:uuid:*:ino:* ]] || fail "a file on ext4 with a UUID is '$file_id', want fs:uuid:<uuid>:ino:<inode>"
echo "   identities: $disk_id (disk.raw), $file_id (file.raw)"

for g in web1:$dev1 web2:$dev2 web3:$extra2 db1:$own db2:$own; do hl_guest_xml "${g%%:*}" "${g#*:}" > "$HL_STATE/${g%%:*}.xml"; done
hl_guest_xml ro1 "$dev2" readonly > "$HL_STATE/ro1.xml"
hl_guest_xml ro2 "$dev2" readonly > "$HL_STATE/ro2.xml"
hl_guest_xml sh1 "$sh1" shareable > "$HL_STATE/sh1.xml"
hl_guest_xml sh2 "$sh2" shareable > "$HL_STATE/sh2.xml"
hl_guest_xml ex1 "$sh3" > "$HL_STATE/ex1.xml"
hl_guest_xml f1 "$S/mnt/file.raw" file > "$HL_STATE/f1.xml"

step "1. start: the guest's lease shows in 'highlander status' while it runs"
hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null
[ "$(hl_domstate web1)" = running ] || fail "web1 is $(hl_domstate web1)"
[ "$(holders "$disk_id")" = "web1:$(hl_qemu_pid hosta web1)" ] || fail "status: $disk_id is held by '$(holders "$disk_id")', want web1:$(hl_qemu_pid hosta web1)"
say "$(status_line "$disk_id")"
holds "$dev2" '"guest": *"web1"' || fail "who $dev2 (the other path) does not name web1: $(lease_holder "$dev2")"

step "2. a second guest on the same disk through another path is refused, naming the holder; the first keeps running"
if out=$(hl_virsh hosta create "$HL_STATE/web2.xml" 2>&1); then fail "web2 started on web1's disk"; fi
expect_said "refusal of web2" "$out" "error: Failed to create domain from $HL_STATE/web2.xml
$(busy_line web2 "$dev2" "$disk_id" web1)"
[ "$(hl_domstate web1)" = running ] || fail "web1 is $(hl_domstate web1) after web2 was refused"
[ "$(holders "$disk_id")" = "web1:$(hl_qemu_pid hosta web1)" ] || fail "after the refusal $disk_id is held by '$(holders "$disk_id")'"
not_listed web2 || fail "web2 is listed after its refusal"

step "6. suspend/resume: no holder while paused, exactly one (web1) after"
hl_virsh hosta suspend web1 >/dev/null
[ -z "$(holders "$disk_id")" ] || fail "paused web1: $disk_id still held by '$(holders "$disk_id")'"
hl_virsh hosta resume web1 >/dev/null
[ "$(hl_domstate web1)" = running ] || fail "web1 did not resume"
[ "$(holders "$disk_id")" = "web1:$(hl_qemu_pid hosta web1)" ] || fail "resumed: $disk_id held by '$(holders "$disk_id")', want exactly web1"

step "6. a guest that takes the disk while web1 is paused keeps web1 from resuming"
hl_virsh hosta suspend web1 >/dev/null
hl_virsh hosta create "$HL_STATE/web2.xml" >/dev/null || fail "web2 refused although web1 (paused) holds no lease"
if out=$(hl_virsh hosta resume web1 2>&1); then fail "web1 resumed while web2 runs on its disk"; fi
expect_said "refusal of web1's resume" "$out" "error: Failed to resume domain 'web1'
$(busy_line web1 "$dev1" "$disk_id" web2 "$(hl_qemu_pid hosta web1)")"
[ "$(hl_domstate web1)" = paused ] || fail "web1 is $(hl_domstate web1) after its refused resume"
[ "$(holders "$disk_id")" = "web2:$(hl_qemu_pid hosta web2)" ] || fail "$disk_id held by '$(holders "$disk_id")', want exactly web2"
hl_virsh hosta destroy web2 >/dev/null
wait_released "$disk_id" 2 >/dev/null || fail "destroyed web2 still holds $disk_id"
# The disk was written by web2 while web1 was paused: web1's saved lock
# state names the lease version it had, so resuming must now be refused.
# (libvirt releases twice on suspend; the second release must hand back
# the first one's state.)
if out=$(hl_virsh hosta resume web1 2>&1); then
    fail "web1 resumed after web2 used its disk while it was paused: its lock state carried no lease version (<lockstate> in $R/run/libvirt/qemu/web1.xml)"
fi
say "$out"
[[ $out == *"changed hands since this guest released it"*"last taken by guest \"web2\""* ]] || fail "stale resume refusal does not say web2 took the disk: $out"
hl_virsh hosta destroy web1 >/dev/null
wait_released "$disk_id" 2 >/dev/null || fail "destroyed web1 still holds $disk_id"
hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null

step "3. hotplug: attach-disk takes a lease; attaching a disk another guest holds is refused; detach-disk releases it"
# SCSI disks: unplugging one needs no guest OS (a virtio-blk unplug waits for one).
hl_virsh hosta attach-disk web1 "$extra1" sdb --sourcetype block --targetbus scsi >/dev/null
[ "$(holders "$extra_id")" = "web1:$(hl_qemu_pid hosta web1)" ] || fail "attached disk: $extra_id held by '$(holders "$extra_id")', want web1"
if out=$(hl_virsh hosta create "$HL_STATE/web3.xml" 2>&1); then fail "web3 started on a disk hot-plugged into web1"; fi
expect_said "refusal of web3" "$out" "error: Failed to create domain from $HL_STATE/web3.xml
$(busy_line web3 "$extra2" "$extra_id" web1)"
hl_virsh hosta create "$HL_STATE/db1.xml" >/dev/null
if out=$(hl_virsh hosta attach-disk db1 "$extra2" sdb --sourcetype block --targetbus scsi 2>&1); then fail "db1 attached the disk web1 holds"; fi
expect_said "refusal of db1's attach-disk" "$out" "error: Failed to attach disk
$(busy_line db1 "$extra2" "$extra_id" web1 "$(hl_qemu_pid hosta db1)")"
[ -z "$(hl_virsh hosta domblklist db1 | awk '$1 == "sdb"')" ] || fail "db1 has an sdb after the refusal"
hl_virsh hosta detach-disk web1 sdb >/dev/null
[ -z "$(holders "$extra_id")" ] || fail "detach-disk: $extra_id still held by '$(holders "$extra_id")'"
holds "$extra1" '"held": *false' || fail "detach-disk: who says $extra1 is still held: $(lease_holder "$extra1")"
[ "$(holders "$disk_id")" = "web1:$(hl_qemu_pid hosta web1)" ] || fail "detach-disk of sdb also dropped web1's vda lease"
hl_virsh hosta attach-disk db1 "$extra2" sdb --sourcetype block --targetbus scsi >/dev/null || fail "db1 cannot attach the disk web1 detached"
[ "$(holders "$extra_id")" = "db1:$(hl_qemu_pid hosta db1)" ] || fail "$extra_id held by '$(holders "$extra_id")', want db1"
hl_virsh hosta detach-disk db1 sdb >/dev/null

step "6. save/restore: no holder while saved, exactly one (the restored web1) after"
old_pid=$(hl_qemu_pid hosta web1)
hl_virsh hosta save web1 "$HL_STATE/web1.save" >/dev/null
wait_released "$disk_id" 2 >/dev/null || fail "saved web1 still holds $disk_id: '$(holders "$disk_id")'"
hl_virsh hosta restore "$HL_STATE/web1.save" >/dev/null
[ "$(hl_domstate web1)" = running ] || fail "web1 did not restore"
[ "$(hl_qemu_pid hosta web1)" != "$old_pid" ] || fail "restored web1 has its old pid"
[ "$(holders "$disk_id")" = "web1:$(hl_qemu_pid hosta web1)" ] || fail "restored: $disk_id held by '$(holders "$disk_id")', want exactly web1:$(hl_qemu_pid hosta web1)"

step "4. killing QEMU releases its leases at once"
qemu_pid=$(hl_qemu_pid hosta web1)
[ "$(cat "/proc/$qemu_pid/comm")" = qemu-system-x86 ] || fail "pid $qemu_pid is not web1's QEMU"
kill -KILL "$qemu_pid"
took=$(wait_released "$disk_id" 2) || fail "2 s after QEMU's SIGKILL $disk_id is still held by '$(holders "$disk_id")'"
echo "   lease gone from 'highlander status' $took after SIGKILL of QEMU (pid $qemu_pid)"
hl_wait 50 not_listed web1 || fail "libvirt still lists web1 after its QEMU died"
hl_virsh hosta create "$HL_STATE/web2.xml" >/dev/null || fail "web2 refused after web1's QEMU was killed"

step "1. destroy: the lease is gone from 'highlander status'"
hl_virsh hosta destroy web2 >/dev/null
took=$(wait_released "$disk_id" 2) || fail "2 s after destroy $disk_id is still held by '$(holders "$disk_id")'"
echo "   gone $took after 'virsh destroy' returned"
[ -z "$(guest_leases web2)" ] || fail "status still lists guest web2 after destroy"

step "5. restarting libvirtd keeps the running guest's leases; a conflicting start is still refused"
hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null
web1_pid=$(hl_qemu_pid hosta web1)
t0=$(hl_now_ms)
hl_libvirtd_restart hosta || fail "libvirtd did not come back"
echo "   libvirtd stopped and answering again in $(($(hl_now_ms) - t0)) ms"
[ "$(hl_domstate web1)" = running ] || fail "web1 is $(hl_domstate web1) after the libvirtd restart"
[ "$(hl_qemu_pid hosta web1)" = "$web1_pid" ] || fail "web1 was restarted (pid $web1_pid -> $(hl_qemu_pid hosta web1))"
[ "$(holders "$disk_id")" = "web1:$web1_pid" ] || fail "after the libvirtd restart $disk_id is held by '$(holders "$disk_id")'"
if out=$(hl_virsh hosta create "$HL_STATE/web2.xml" 2>&1); then fail "web2 started on web1's disk after the libvirtd restart"; fi
expect_said "refusal of web2 after the libvirtd restart" "$out" "error: Failed to create domain from $HL_STATE/web2.xml
$(busy_line web2 "$dev2" "$disk_id" web1)"
hl_virsh hosta suspend web1 >/dev/null && hl_virsh hosta resume web1 >/dev/null || fail "suspend/resume of web1 fails after the libvirtd restart"
[ "$(holders "$disk_id")" = "web1:$web1_pid" ] || fail "after suspend/resume across the restart $disk_id is held by '$(holders "$disk_id")'"

step "restarting highlanderd keeps the running guest and its lease"
hl_kill "$(cat "$R/highlanderd.pid")" highlanderd
hl_daemon_start hosta
[ "$(hl_domstate web1)" = running ] || fail "web1 died with the daemon restart"
[ "$(holders "$disk_id")" = "web1:$web1_pid" ] || fail "lease lost across the daemon restart: '$(holders "$disk_id")'"
if out=$(hl_virsh hosta create "$HL_STATE/web2.xml" 2>&1); then fail "web2 started while web1 holds the disk after a daemon restart"; fi
expect_said "refusal of web2 after the highlanderd restart" "$out" "error: Failed to create domain from $HL_STATE/web2.xml
$(busy_line web2 "$dev2" "$disk_id" web1)"

step "7. a read-only disk is never leased, even while another guest holds it exclusively"
hl_virsh hosta create "$HL_STATE/ro1.xml" >/dev/null || fail "read-only ro1 refused"
hl_virsh hosta create "$HL_STATE/ro2.xml" >/dev/null || fail "read-only ro2 refused"
for g in ro1 ro2; do
    [ "$(hl_domstate $g)" = running ] || fail "$g is $(hl_domstate $g)"
    [ "$(guest_leases $g)" = 0 ] || fail "read-only guest $g has $(guest_leases $g) lease(s)"
done
[ "$(holders "$disk_id")" = "web1:$web1_pid" ] || fail "read-only guests changed the holders of $disk_id: '$(holders "$disk_id")'"
hl_virsh hosta destroy ro1 >/dev/null; hl_virsh hosta destroy ro2 >/dev/null

step "7. a shareable disk serves two guests, not a third that wants it exclusively"
hl_virsh hosta create "$HL_STATE/sh1.xml" >/dev/null || fail "sh1 refused"
hl_virsh hosta create "$HL_STATE/sh2.xml" >/dev/null || fail "sh2 refused the disk sh1 shares"
[ "$(holders "$sh_id")" = "sh1:$(hl_qemu_pid hosta sh1) sh2:$(hl_qemu_pid hosta sh2)" ] || fail "$sh_id held by '$(holders "$sh_id")', want sh1 and sh2"
holds "$sh3" '"shared": *\[' || fail "who does not report a shared lease: $(lease_holder "$sh3")"
say "$(status_line "$sh_id")"
if out=$(hl_virsh hosta create "$HL_STATE/ex1.xml" 2>&1); then fail "ex1 started exclusively on a disk sh1 and sh2 share"; fi
expect_said "refusal of ex1" "$out" "error: Failed to create domain from $HL_STATE/ex1.xml
error: resource busy: Failed to acquire lock: cannot lock $sh3 for guest \"ex1\" (uuid $(uuid_of ex1), pid {pid}): disk $sh_id is held shared by guest \"sh1\" (uuid $(uuid_of sh1)) on host 1 \"hosta\", guest \"sh2\" (uuid $(uuid_of sh2)) on host 1 \"hosta\""
[ "$(hl_domstate sh1)" = running ] && [ "$(hl_domstate sh2)" = running ] || fail "a sharer stopped after ex1's refusal"
hl_virsh hosta destroy sh1 >/dev/null; hl_virsh hosta destroy sh2 >/dev/null

step "a file-backed disk reached through a symlink or a bind mount is the same disk"
hl_virsh hosta create "$HL_STATE/f1.xml" >/dev/null
[ "$(holders "$file_id")" = "f1:$(hl_qemu_pid hosta f1)" ] || fail "$file_id held by '$(holders "$file_id")', want f1"
# attach-disk asks the lock manager before QEMU opens the file, so this is
# highlander's refusal (a second guest started on the file would meet QEMU's
# own image lock first).
file_refusal() {
    echo "error: Failed to attach disk
$(busy_line db1 "$1" "$file_id" f1 "$(hl_qemu_pid hosta db1)")"
}
holds "$S/link.raw" '"guest": *"f1"' || fail "who through the symlink: $(lease_holder "$S/link.raw")"
if out=$(hl_virsh hosta attach-disk db1 "$S/link.raw" sdc --targetbus scsi 2>&1); then fail "db1 attached f1's disk through a symlink"; fi
expect_said "refusal through the symlink" "$out" "$(file_refusal "$S/link.raw")"
holds "$S/bind/file.raw" '"guest": *"f1"' || fail "who through the bind mount: $(lease_holder "$S/bind/file.raw")"
if out=$(hl_virsh hosta attach-disk db1 "$S/bind/file.raw" sdd --targetbus scsi 2>&1); then fail "db1 attached f1's disk through a bind mount"; fi
expect_said "refusal through the bind mount" "$out" "$(file_refusal "$S/bind/file.raw")"
[ "$(holders "$file_id")" = "f1:$(hl_qemu_pid hosta f1)" ] || fail "after the refusals $file_id is held by '$(holders "$file_id")'"
hl_virsh hosta destroy f1 >/dev/null
hl_virsh hosta destroy db1 >/dev/null

step "9. a malformed qemu-highlander.conf: libvirtd logs the file, line and key, and refuses to start"
cp "$R/etc/qemu-highlander.conf" "$HL_STATE/qemu-highlander.conf.good"
cat >> "$R/etc/qemu-highlander.conf" <<'CONF'
auto_disk_leases = yes
CONF
bad_line=$(grep -n '^auto_disk_leases' "$R/etc/qemu-highlander.conf" | cut -d: -f1)
log_from=$(($(wc -l < "$R/log/libvirtd.log") + 1))
if hl_libvirtd_restart hosta 2>/dev/null; then fail "libvirtd started with a malformed qemu-highlander.conf"; fi
log=$(tail -n +"$log_from" "$R/log/libvirtd.log")
conf_err=$(grep -F "/etc/libvirt/qemu-highlander.conf:$bad_line:" <<<"$log" | grep -F ' error : drvInit' || true)
[ -n "$conf_err" ] || fail "libvirtd's log has no drvInit error naming /etc/libvirt/qemu-highlander.conf:$bad_line: $(tail -5 <<<"$log")"
conf_err=$(head -1 <<<"$conf_err")
say "$conf_err"
[[ $conf_err == *'`auto_disk_leases`'* ]] || fail "the error does not name the key auto_disk_leases: $conf_err"
for line in "Initialization of QEMU state driver failed: unsupported configuration: /etc/libvirt/qemu-highlander.conf:$bad_line:" "Driver state initialization failed"; do
    grep -qF "$line" <<<"$log" || fail "libvirtd's log lacks '$line'"
    say "$(grep -F -m1 "$line" <<<"$log")"
done
# libvirtd exits: no QEMU driver means no daemon. The running guest is not
# touched and keeps its lease.
! hl_virsh hosta hostname >/dev/null 2>&1 || fail "libvirtd answers although its QEMU driver failed"
[ -d "/proc/$web1_pid" ] || fail "web1's QEMU died with libvirtd"
[ "$(holders "$disk_id")" = "web1:$web1_pid" ] || fail "web1's lease is gone while libvirtd is down: '$(holders "$disk_id")'"
cp "$HL_STATE/qemu-highlander.conf.good" "$R/etc/qemu-highlander.conf"
hl_libvirtd_start hosta || fail "libvirtd did not start with the conf restored"
[ "$(hl_domstate web1)" = running ] || fail "web1 is $(hl_domstate web1) after libvirtd came back"

step "8. highlanderd stopped (require_lease_for_disks = 1): start fails saying the daemon is down; nothing runs unprotected"
echo "require_lease_for_disks = 1" >> "$R/etc/qemu-highlander.conf"
hl_libvirtd_restart hosta || fail "libvirtd refused require_lease_for_disks = 1"
hl_virsh hosta define "$HL_STATE/db2.xml" >/dev/null
hl_kill "$(cat "$R/highlanderd.pid")" highlanderd
down="highlanderd is not running or not reachable at /run/highlander/highlanderd.sock (No such file or directory (os error 2)): the guest was not started (it would have run without its disk leases). Start the daemon with \`systemctl start highlanderd\`, or check \`socket\` in /etc/libvirt/qemu-highlander.conf"
if out=$(hl_virsh hosta start db2 2>&1); then fail "db2 started with highlanderd down"; fi
expect_said "start with the daemon down" "$out" "error: Failed to start domain 'db2'
error: internal error: Process exited prior to exec: libvirt: Lock Driver error : operation failed: $down"
if out=$(hl_virsh hosta create "$HL_STATE/db1.xml" 2>&1); then fail "db1 was created with highlanderd down"; fi
expect_said "create with the daemon down" "$out" "error: Failed to create domain from $HL_STATE/db1.xml
error: internal error: Process exited prior to exec: libvirt: Lock Driver error : operation failed: $down"
list=$(hl_virsh hosta list --all)
say "$list"
[ "$(running)" = "web1" ] || fail "running guests with the daemon down: $(running)"
[ "$(hl_domstate db2)" = "shut off" ] || fail "db2 is $(hl_domstate db2)"
hl_daemon_start hosta
[ "$(holders "$disk_id")" = "web1:$web1_pid" ] || fail "web1's lease lost while the daemon was down: '$(holders "$disk_id")'"
hl_virsh hosta start db2 >/dev/null || fail "db2 does not start once highlanderd is back"
[ "$(holders "$own_id")" = "db2:$(hl_qemu_pid hosta db2)" ] || fail "db2 runs without its lease"

echo "E2E OK ($(($(date +%s) - t_start)) s)"
