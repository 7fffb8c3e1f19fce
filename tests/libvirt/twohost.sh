#!/usr/bin/env bash
# Two hosts, one lockspace: real libvirtd + QEMU on each of two isolated
# "hosts" (lib.sh), highlanderd with host ids 1 and 2 on one shared
# lockspace file, every disk image seen by each host through its own loop
# device (as two hosts see one LUN). virsh commands are the unchanged ones
# an administrator types. Run by tests/e2e.rs; needs root.
#
# Timing (io_timeout T = 2 s here; docs/SAFETY.md): a host renews every
# T/2, fences its guests at 3.5T, its leases are void at 4.5T, and a peer
# may take them over 5.5T after it last saw the host renew.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HL_BIN=${HL_BIN:?directory with highlanderd, highlander, libhighlander.so}
export HL_STATE=${HL_STATE:?scratch directory}
. "$here/lib.sh"

T=2
HOST_DEAD_MS=$((T * 5500))
RENEW_MS=$((T * 500))
LS=$HL_STATE/shared/lockspace

# gone PID: the process has exited (a zombie not yet reaped counts).
gone() { [ ! -e "/proc/$1/cmdline" ] || [ -z "$(tr -d '\0' < "/proc/$1/cmdline" 2>/dev/null)" ]; }
not_running() { [ "$(hl_domstate "$2" "$1")" != running ]; }
# guest NAME DEVICE [ACTION]: domain XML for one guest on one block device.
guest() { hl_guest_xml "$1" "$2" | sed "s|<on_lockfailure>poweroff<|<on_lockfailure>${3:-poweroff}<|" > "$HL_STATE/$1.xml"; }

rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared"
cleanup() { hl_host_down hosta; hl_host_down hostb; hl_loops_down; }
trap cleanup EXIT

"$HL_BIN/highlander" lockspace init "$LS" --name e2e --max-hosts 4 --resources 32 --io-timeout $T >/dev/null
disk web
HL_FAULTS=1 hl_host_up hosta 1 "$LS"
hl_host_up hostb 2 "$LS"

step "cross-host refusal: a guest on hostb cannot open the disk web1 uses on hosta"
guest web1 "$web_a"
guest intruder "$web_b"
hl_virsh hosta create "$HL_STATE/web1.xml" >/dev/null
if out=$(hl_virsh hostb create "$HL_STATE/intruder.xml" 2>&1); then fail "hostb started intruder on the disk web1 holds on hosta"; fi
echo "   virsh said: $out"
[[ $out == *"error: resource busy: Failed to acquire lock: cannot lock $web_b for guest \"intruder\""*"is held exclusively by guest \"web1\""*"on host 1 \"hosta\" since "*"(host is live)" ]] || fail "cross-host refusal does not name web1 on hosta (id 1): $out"
[ "$(hl_domstate web1)" = running ] || fail "web1 stopped after the refused start on hostb"

step "live migration hosta -> hostb -> hosta: the lease moves at the switchover, never two holders"
web_id=$(who "$web_a" hosta identity)
for route in "hosta hostb" "hostb hosta"; do
    set -- $route
    src=$1 dst=$2
    before=$(who "$web_a" "$src" lver)
    # Sample the lockspace on storage (no daemon) for the whole migration.
    samples=$HL_STATE/samples-$src
    : > "$HL_STATE/sampling"
    ( while [ -e "$HL_STATE/sampling" ]; do "$HL_BIN/highlander" who --lockspace "$LS" --identity "$web_id" --json | tr -d ' \n'; echo; done ) > "$samples" &
    sampler=$!
    t0=$(hl_now_ms)
    hl_migrate web1 "$src" "$dst" || fail "virsh migrate --live web1 $src -> $dst failed"
    t1=$(hl_now_ms)
    rm "$HL_STATE/sampling"; wait $sampler
    [ "$(hl_domstate web1 "$dst")" = running ] || fail "web1 is not running on $dst after migration"
    [ -z "$(hl_virsh "$src" list --name)" ] || fail "web1 still listed on $src after migration"
    [ "$(who "$web_a" "$dst" owner_name)" = "$dst" ] || fail "lease did not move to $dst"
    # What storage showed, in order: $src's hold, at most a gap (released),
    # then $dst's hold at a higher version; never $src again after $dst.
    python3 - "$samples" "$src" "$dst" "$before" <<'PY' || fail "lease records during migration $src -> $dst are wrong (samples in $samples)"
import json, sys
path, src, dst, before = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = [json.loads(l) for l in open(path) if l.strip()]
phase, last_lver = 0, 0
for s in seen:
    holder = s["owner_name"] if s["held"] else None
    if holder not in (src, dst, None):
        sys.exit(f"unexpected holder {holder}: {s}")
    rank = {src: 0, None: 1, dst: 2}[holder]
    if rank < phase:
        sys.exit(f"holder went back to {holder} after a later phase: {s}")
    if s["lver"] < last_lver:
        sys.exit(f"lease version went back: {s}")
    phase, last_lver = max(phase, rank), s["lver"]
if not seen or seen[-1]["owner_name"] != dst or not seen[-1]["held"] or seen[-1]["lver"] <= before:
    sys.exit(f"migration did not end with {dst} holding a newer version than {before}: {seen[-1] if seen else None}")
print(f"   {len(seen)} lockspace samples: {src} held lver {before}, then {dst} lver {seen[-1]['lver']}; never both")
PY
    released=$(log_ms "$src" "lease released: guest \"web1\"") || fail "$src never logged releasing web1's lease"
    acquired=$(grep -F "lease acquired: guest \"web1\"" "$(hl_root "$dst")/log/highlanderd.log" | tail -1 | sed -E 's/^\[([^ ]+) .*/\1/')
    acquired=$(date -d "$acquired" +%s%3N)
    [ "$acquired" -ge "$released" ] || fail "$dst acquired web1's lease ($acquired) before $src released it ($released)"
    echo "   migration took $((t1 - t0)) ms; $src released at +$((released - t0)) ms, $dst acquired at +$((acquired - t0)) ms"
done

step "a stale hand-over is refused: the disk changed hands between the source's release and the destination's resume"
hl_migrate web1 hosta hostb --suspend || fail "virsh migrate --live --suspend failed"
[ "$(hl_domstate web1 hostb)" = paused ] || fail "web1 is not paused on hostb after migrate --suspend"
[ "$(who "$web_a" hosta held)" = False ] || fail "the lease is still held after the source handed it over"
guest thief "$web_a"
hl_virsh hosta create "$HL_STATE/thief.xml" >/dev/null || fail "thief could not take the released disk"
if out=$(hl_virsh hostb resume web1 2>&1); then fail "web1 resumed on hostb while thief holds its disk"; fi
echo "   virsh said: $out"
[[ $out == *"is held exclusively by guest \"thief\""*"on host 1 \"hosta\""* ]] || fail "resume refusal does not name thief on hosta: $out"
hl_virsh hosta destroy thief >/dev/null
if out=$(hl_virsh hostb resume web1 2>&1); then fail "web1 resumed on hostb although thief used its disk after the hand-over"; fi
echo "   virsh said: $out"
[[ $out == *"changed hands since this guest released it (lease version "*"last taken by guest \"thief\""*"on host 1 \"hosta\""*"the guest must not resume; destroy it and start it afresh" ]] || fail "stale resume refusal does not say the disk changed hands: $out"
[ "$(hl_domstate web1 hostb)" = paused ] || fail "web1 is $(hl_domstate web1 hostb) on hostb after the refused resume"
hl_virsh hostb destroy web1 >/dev/null

step "frozen host: hosta's daemon, its fence sentinel and guest stopped past host_dead; hostb takes over; on wake the guest is fenced"
disk frz
guest frozen "$frz_a"
guest frozen-b "$frz_b"
hl_virsh hosta create "$HL_STATE/frozen.xml" >/dev/null
# A frozen host freezes everything on it, the sentinel too (which would
# otherwise kill a daemon that stops beating: tests/fencing.rs).
daemon_a="$(cat "$(hl_root hosta)/highlanderd.pid") $(python3 -c 'import json,sys; print(*{o["sentinel_pid"] for o in json.load(open(sys.argv[1])).values()})' "$(hl_root hosta)/run/highlander/fence-owner.json")"
frozen_qemu=$(hl_qemu_pid hosta frozen)
kill -STOP $daemon_a "$frozen_qemu"
stopped=$(hl_now_ms)
taken=$(retry_start hostb "$HL_STATE/frozen-b.xml" $((stopped + 4 * HOST_DEAD_MS))) || { kill -CONT $daemon_a "$frozen_qemu"; fail "hostb never took over from the frozen host"; }
# The last renewal began at most T/2 before the freeze; peers wait
# host_dead of their own clock (1% drift) from seeing it.
earliest=$(( (HOST_DEAD_MS * 100 / 101) - RENEW_MS ))
[ $((taken - stopped)) -ge $earliest ] || { kill -CONT $daemon_a "$frozen_qemu"; fail "hostb took over $((taken - stopped)) ms after the freeze, before host_dead allows ($earliest ms)"; }
echo "   hostb started frozen-b $((taken - stopped)) ms after hosta froze (host_dead $HOST_DEAD_MS ms)"
kill -CONT $daemon_a "$frozen_qemu"
woke=$(hl_now_ms)
hl_wait 100 gone "$frozen_qemu" || fail "hosta's frozen guest still runs 10 s after waking"
fenced=$(hl_now_ms)
grep -q "fenced: guest \"frozen\"" "$(hl_root hosta)/log/highlanderd.log" || fail "hosta's daemon did not log fencing the frozen guest"
echo "   on wake, hosta's daemon killed its guest within $((fenced - woke)) ms"
[ "$(who "$frz_b" hostb guest)" = frozen-b ] || fail "the lease left frozen-b after hosta woke"
hl_wait 100 not_running hosta frozen || fail "libvirt on hosta still shows the fenced guest running"
hl_virsh hostb destroy frozen-b >/dev/null
hl_wait 300 healthy hosta || fail "hosta's daemon did not rejoin the lockspace after waking"

step "storage loss on hosta: poweroff and pause guests are fenced before hostb may take over"
disk sl1; disk sl2
guest sl-off "$sl1_a" poweroff
guest sl-pause "$sl2_a" pause
guest sl-off-b "$sl1_b"
guest sl-pause-b "$sl2_b"
hl_virsh hosta create "$HL_STATE/sl-off.xml" >/dev/null
hl_virsh hosta create "$HL_STATE/sl-pause.xml" >/dev/null
echo fail > "$(hl_root hosta)/fault"
lost=$(hl_now_ms)
off_b=$(retry_start hostb "$HL_STATE/sl-off-b.xml" $((lost + 4 * HOST_DEAD_MS))) || fail "hostb never took over sl1"
pause_b=$(retry_start hostb "$HL_STATE/sl-pause-b.xml" $((lost + 4 * HOST_DEAD_MS))) || fail "hostb never took over sl2"
off_fenced=$(log_ms hosta "fenced: guest \"sl-off\"") || fail "hosta never fenced sl-off"
pause_fenced=$(log_ms hosta "fenced: guest \"sl-pause\"") || fail "hosta never fenced sl-pause"
off_taken=$(log_ms hostb "lease acquired: guest \"sl-off-b\"")
pause_taken=$(log_ms hostb "lease acquired: guest \"sl-pause-b\"")
echo "   storage lost at 0; hosta fenced sl-off (poweroff) at +$((off_fenced - lost)) ms and sl-pause (pause) at +$((pause_fenced - lost)) ms;"
echo "   hostb acquired sl1 at +$((off_taken - lost)) ms and sl2 at +$((pause_taken - lost)) ms"
[ "$off_fenced" -lt "$off_taken" ] || fail "hostb took sl1 before hosta fenced sl-off"
[ "$pause_fenced" -lt "$pause_taken" ] || fail "hostb took sl2 before hosta fenced sl-pause"
state=$(hl_domstate sl-off)
[ "$state" != running ] && [ "$state" != paused ] || fail "sl-off (on_lockfailure poweroff) is $state on hosta"
[ "$(hl_domstate sl-pause)" = paused ] || fail "sl-pause (on_lockfailure pause) is $(hl_domstate sl-pause) on hosta, not paused"
: > "$(hl_root hosta)/fault"
hl_wait 300 healthy hosta || fail "hosta's daemon did not rejoin the lockspace once storage answered again"
hl_virsh hostb destroy sl-off-b >/dev/null; hl_virsh hostb destroy sl-pause-b >/dev/null
hl_virsh hosta destroy sl-pause >/dev/null

step "host failure: SIGKILL hosta's libvirtd, highlanderd and guest; hostb starts the guest once hosta is dead by the timing rules"
disk hf
guest hf "$hf_a"
guest hf-b "$hf_b"
hl_virsh hosta create "$HL_STATE/hf.xml" >/dev/null
R=$(hl_root hosta)
kill -KILL "$(cat "$R/run/libvirtd.pid")" "$(cat "$R/highlanderd.pid")" "$(hl_qemu_pid hosta hf)"
killed=$(hl_now_ms)
taken=$(retry_start hostb "$HL_STATE/hf-b.xml" $((killed + 4 * HOST_DEAD_MS))) || fail "hostb never took over from the dead host"
[ $((taken - killed)) -ge $earliest ] || fail "hostb took over $((taken - killed)) ms after hosta died, before host_dead allows ($earliest ms)"
echo "   FAILOVER: hostb started hf-b $((taken - killed)) ms after hosta was killed (io_timeout ${T} s, host_dead $HOST_DEAD_MS ms)"
[ "$(who "$hf_b" hostb guest)" = hf-b ] || fail "hf-b does not hold the disk after failover"

echo "E2E OK"
