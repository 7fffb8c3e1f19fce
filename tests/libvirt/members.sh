#!/usr/bin/env bash
# Two hosts, one lockspace on three devices (three files, each host seeing
# them through its own loop devices, as two hosts see three LUNs): real
# libvirtd + QEMU on each host (lib.sh). One device stops answering for
# both hosts: no guest is fenced and refusals still name the holder. Then
# hosta also loses its path to a second device: with no majority left it
# fences its guests, and hostb, which still reaches two devices, takes the
# disk only after that. Run by tests/e2e.rs; needs root.
#
# Timing (io_timeout T = 2 s): fencing at 3.5T = 7 s without a renewal on
# a majority; a peer takes over 5.5T = 11 s after it last saw one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HL_BIN=${HL_BIN:?directory with highlanderd, highlander, libhighlander.so}
export HL_STATE=${HL_STATE:?scratch directory}
. "$here/lib.sh"

T=2
HOST_DEAD_MS=$((T * 5500))
# How long the hung device stays hung: well past fencing and host_dead.
HANG_S=${HL_MEMBER_HANG_SECS:-40}

guest() { hl_guest_xml "$1" "$2" > "$HL_STATE/$1.xml"; }

rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared"
cleanup() { hl_host_down hosta; hl_host_down hostb; hl_loops_down; }
trap cleanup EXIT

for i in 1 2 3; do truncate -s 1M "$HL_STATE/shared/member$i"; done
members_a=() members_b=()
for i in 1 2 3; do
    members_a+=("$(hl_loop "$HL_STATE/shared/member$i")")
    members_b+=("$(hl_loop "$HL_STATE/shared/member$i")")
done
"$HL_BIN/highlander" lockspace init "${members_a[@]}" --name trio --max-hosts 4 --resources 16 --io-timeout $T >/dev/null
disk web; disk db
HL_FAULTS=1 hl_host_up hosta 1 "${members_a[*]}"
HL_FAULTS=1 hl_host_up hostb 2 "${members_b[*]}"

step "a lockspace on three devices: a guest on hostb cannot open the disk web1 holds on hosta"
guest web1 "$web_a"; guest intruder "$web_b"; guest db-b "$db_b"
hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null
if out=$(hl_virsh hostb create "$HL_STATE/intruder.xml" 2>&1); then fail "hostb started intruder on the disk web1 holds"; fi
[[ $out == *"is held exclusively by guest \"web1\""*"on host 1 \"hosta\""* ]] || fail "refusal does not name web1 on hosta: $out"

step "device 2 stops answering for both hosts for $HANG_S s: nobody is fenced, leases keep working"
echo "hang member 2" > "$(hl_root hosta)/fault"
echo "hang member 2" > "$(hl_root hostb)/fault"
hung=$(hl_now_ms)
# Sampled for the whole hang: both hosts stay healthy (a one-device
# lockspace would fence at 3.5T = $((T * 3500)) ms, sanlock at 8T).
samples=0
while [ $(($(hl_now_ms) - hung)) -lt $((HANG_S * 1000)) ]; do
    for h in hosta hostb; do
        state=$(health $h)
        [ "$state" = healthy ] || fail "$h is $state $(( $(hl_now_ms) - hung )) ms into the hang of one device of three"
    done
    samples=$((samples + 1))
    sleep 0.5
done
echo "   both hosts healthy in $samples samples over $HANG_S s with device 2 hung"
if out=$(hl_virsh hostb create "$HL_STATE/intruder.xml" 2>&1); then fail "hostb started intruder during the hang"; fi
[[ $out == *"is held exclusively by guest \"web1\""* ]] || fail "refusal during the hang does not name web1: $out"
hl_virsh hostb create "$HL_STATE/db-b.xml" >/dev/null || fail "hostb could not start a guest on a free disk with one device hung"
[ "$(who "$db_b" hostb guest)" = db-b ] || fail "db-b does not hold its disk"
[ "$(hl_domstate web1)" = running ] || fail "web1 is $(hl_domstate web1) after the hang"
! grep -q "fenced: guest" "$(hl_root hosta)/log/highlanderd.log" || fail "hosta fenced a guest with only one device of three hung"
! grep -q "fenced: guest" "$(hl_root hostb)/log/highlanderd.log" || fail "hostb fenced a guest with only one device of three hung"
hl_cli hosta status | grep -i "member\|device" || true

step "hosta also loses its path to device 1: no majority left, it fences web1 before hostb takes the disk"
guest web1-b "$web_b"
printf 'hang member 2\nfail member 1\n' > "$(hl_root hosta)/fault"
lost=$(hl_now_ms)
taken=$(retry_start hostb "$HL_STATE/web1-b.xml" $((lost + 4 * HOST_DEAD_MS))) || fail "hostb never took over web's disk"
fenced=$(log_ms hosta "fenced: guest \"web1\"") || fail "hosta never fenced web1"
acquired=$(log_ms hostb "lease acquired: guest \"web1-b\"")
echo "   second device lost at 0: hosta fenced web1 at +$((fenced - lost)) ms; hostb acquired the disk at +$((acquired - lost)) ms (started web1-b at +$((taken - lost)) ms)"
[ "$fenced" -lt "$acquired" ] || fail "hostb acquired web's disk before hosta fenced web1"
state=$(hl_domstate web1)
[ "$state" != running ] || fail "web1 still runs on hosta without a majority"

step "the devices answer again: hosta rejoins"
: > "$(hl_root hosta)/fault"; : > "$(hl_root hostb)/fault"
hl_wait 600 healthy hosta || fail "hosta did not rejoin once a majority answered"
echo "E2E OK"
