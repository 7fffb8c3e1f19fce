#!/usr/bin/env bash
# What a lock manager costs an administrator: `virsh start` + `virsh destroy`
# of one guest, and libvirtd's start-to-ready time, with
#   nop        - no lock manager (libvirt's default),
#   highlander - our plugin + highlanderd,
#   sanlock    - libvirt's sanlock plugin (auto_disk_leases) + a sanlock daemon
#                (left out, and said so, where libvirt-sanlock is not installed).
# Three isolated libvirt "hosts" (tests/libvirt/lib.sh), one per lock manager,
# all up at once; the same guest XML (64 MiB, no OS, BENCH_DISKS raw block
# disks on loop devices) is started and destroyed on each in turn, the order rotating
# every round, so drift hits all three alike. A benchmark, not a test: it
# prints figures and fails only when something does not work.
#
# Needs root, libvirtd and QEMU (scripts/setup.sh). Environment:
#   HL_BIN          highlanderd, highlander, libhighlander.so (default target/release)
#   HL_STATE        scratch directory (default target/bench-libvirt)
#   BENCH_ROUNDS    measured start+destroy per lock manager (default 20, at least 10)
#   BENCH_WARMUP    unmeasured rounds first (default 2)
#   BENCH_IO_TIMEOUT  highlander's lockspace io_timeout in s (default 10, sanlock's default)
#   BENCH_DISKS     disks per guest, 1..8 (default 1): how the lock manager's
#                   time at a start grows with disks
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export HL_BIN=${HL_BIN:-$root/target/release}
export HL_STATE=${HL_STATE:-$root/target/bench-libvirt}
# Absolute: the paths go into libvirt's socket URI and the hosts' namespaces.
HL_BIN=$(realpath -m "$HL_BIN") HL_STATE=$(realpath -m "$HL_STATE")
rounds=${BENCH_ROUNDS:-20} warmup=${BENCH_WARMUP:-2} io_timeout=${BENCH_IO_TIMEOUT:-10} disks=${BENCH_DISKS:-1}
. "$root/tests/libvirt/lib.sh"

die() { echo "bench/libvirt.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (namespaces, loop devices, libvirtd)"
[ "$rounds" -ge 10 ] || die "BENCH_ROUNDS=$rounds: at least 10 for a median"
[ "$disks" -ge 1 ] && [ "$disks" -le 8 ] || die "BENCH_DISKS=$disks: 1..8"
for f in highlanderd highlander libhighlander.so; do
    [ -e "$HL_BIN/$f" ] || die "$HL_BIN/$f missing: cargo build --release --workspace"
done
command -v libvirtd >/dev/null || die "libvirtd is not installed: bash scripts/setup.sh"

managers=(nop highlander)
if command -v sanlock >/dev/null && [ -e "$HL_SANLOCK_PLUGIN" ]; then
    managers+=(sanlock)
else
    echo "bench/libvirt.sh: sanlock or libvirt's sanlock plugin ($HL_SANLOCK_PLUGIN) is missing" \
        "(apt-get install sanlock libvirt-sanlock); measuring nop and highlander only" >&2
fi
host_of() { echo "bench-$1"; }

rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared"
cleanup() {
    local m
    for m in "${managers[@]}"; do hl_host_down "$(host_of "$m")"; done
    hl_loops_down
}
trap cleanup EXIT

"$HL_BIN/highlander" lockspace init "$HL_STATE/shared/lockspace" --name bench --max-hosts 4 --resources 32 --io-timeout "$io_timeout" >/dev/null
devs=()
for ((k = 0; k < disks; k++)); do
    truncate -s 16M "$HL_STATE/shared/disk$k.raw"
    devs+=("$(hl_loop "$HL_STATE/shared/disk$k.raw")")
done
# The first disk from hl_guest_xml, the others copied from it as vdb, vdc, ...
hl_guest_xml bench "${devs[0]}" | python3 -c '
import re, sys
xml, devs = sys.stdin.read(), sys.argv[1:]
first = re.search(r"    <disk .*?</disk>\n", xml, re.S)[0]
extra = "".join(first.replace(devs[0], d).replace("vda", "vd" + "bcdefgh"[i]) for i, d in enumerate(devs[1:]))
sys.stdout.write(xml.replace(first, first + extra))' "${devs[@]}" > "$HL_STATE/bench.xml"
[ "$(grep -c "<disk " "$HL_STATE/bench.xml")" -eq "$disks" ] || die "the guest XML should have $disks disks"

echo "libvirt $(libvirtd --version | awk '{print $NF}'), $(qemu-system-x86_64 --version | head -1), $(nproc) CPUs;" \
    "guest: 64 MiB, no OS, $disks raw block disk(s); highlander io_timeout ${io_timeout} s"
# Hosts come up one after another, so each start-up is timed alone.
id=0
for m in "${managers[@]}"; do
    id=$((id + 1))
    echo "bringing up a host with lock manager $m ..." >&2
    hl_host_up "$(host_of "$m")" "$id" "$HL_STATE/shared/lockspace" "$m" || die "host with lock manager $m did not come up"
    hl_virsh "$(host_of "$m")" define "$HL_STATE/bench.xml" >/dev/null
done

# One start+destroy with lock manager M; appends "ROUND M START_US DESTROY_US" to FILE.
cycle() {
    local m=$1 file=$2 round=$3 h t0 t1 t2
    h=$(host_of "$m")
    t0=$(date +%s%N)
    hl_virsh "$h" start bench >/dev/null || die "virsh start failed with lock manager $m"
    t1=$(date +%s%N)
    hl_virsh "$h" destroy bench >/dev/null || die "virsh destroy failed with lock manager $m"
    t2=$(date +%s%N)
    echo "$round $m $(((t1 - t0) / 1000)) $(((t2 - t1) / 1000))" >> "$file"
}
n=${#managers[@]}
for ((r = 0; r < warmup + rounds; r++)); do
    for ((i = 0; i < n; i++)); do
        m=${managers[$(((i + r) % n))]}
        if [ "$r" -lt "$warmup" ]; then cycle "$m" /dev/null "$r"; else cycle "$m" "$HL_STATE/samples" "$r"; fi
    done
done

# libvirtd restarted while its lock daemon keeps running (no guest running).
for m in "${managers[@]}"; do
    hl_libvirtd_stop "$(host_of "$m")"
    t0=$(hl_now_ms)
    hl_libvirtd_start "$(host_of "$m")" 120 || die "libvirtd restart failed with lock manager $m"
    echo "$m libvirtd-restart $(($(hl_now_ms) - t0))" >> "$HL_STATE/ready"
done
for m in "${managers[@]}"; do
    sed "s/^/$m /" "$(hl_root "$(host_of "$m")")/ready-ms" >> "$HL_STATE/ready"
done

python3 - "$HL_STATE/samples" "$HL_STATE/ready" "$rounds" "$warmup" "$HL_STATE" "${managers[@]}" <<'PY'
import datetime, math, random, re, sys
samples_file, ready_file, rounds, warmup, state, managers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:]
start, destroy, total = {}, {}, {}   # manager -> {round: ms}
for line in open(samples_file):
    r, m, s, d = line.split()
    s, d = int(s) / 1000, int(d) / 1000
    start.setdefault(m, {})[r] = s; destroy.setdefault(m, {})[r] = d; total.setdefault(m, {})[r] = s + d

def median(v):
    v = sorted(v); n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

def p90(v):
    v = sorted(v)
    return v[max(0, math.ceil(0.9 * len(v)) - 1)]

def over_nop(series, m):
    """Median of the per-round differences to nop (each round runs every
    manager back to back, so drift cancels), with a bootstrap 95% interval."""
    d = [series[m][r] - series["nop"][r] for r in series[m]]
    rng = random.Random(1)
    boot = sorted(median(rng.choices(d, k=len(d))) for _ in range(2000))
    return median(d), boot[50], boot[1949]

print()
print(f"virsh start + virsh destroy, {rounds} rounds each (ms). Overhead over nop: median of the")
print("per-round differences, [95% bootstrap interval]; an interval spanning 0 = not measurable here.")
print(f"{'lock manager':<13} {'start med':>9} {'destroy med':>11} {'total med':>9} {'total p90':>9}   {'start over nop':<24} {'start+destroy over nop':<24}")
over = {}
for m in managers:
    vals = lambda x: list(x[m].values())
    if m == "nop":
        extra = ("-", "-")
    else:
        over[m] = (over_nop(start, m), over_nop(total, m))
        extra = tuple(f"{o[0]:+6.1f} [{o[1]:+.1f}, {o[2]:+.1f}]" for o in over[m])
    print(f"{m:<13} {median(vals(start)):>9.1f} {median(vals(destroy)):>11.1f} {median(vals(total)):>9.1f} {p90(vals(total)):>9.1f}   {extra[0]:<24} {extra[1]:<24}")
if "sanlock" in over:
    def ratio(ours, theirs):
        if theirs <= 0:
            return "n/a (sanlock's overhead is not above 0)"
        return f"{ours / theirs:.2f}" + (" (highlander's overhead is not above 0)" if ours <= 0 else "")
    print(f"highlander's overhead / sanlock's: start {ratio(over['highlander'][0][0], over['sanlock'][0][0])},"
          f" start+destroy {ratio(over['highlander'][1][0], over['sanlock'][1][0])}  (target: under 0.5)")

def lock_spans(log):
    """Milliseconds from virDomainLockProcessResume (libvirt starting the
    vCPUs: the leases are acquired) to the matching virLockManagerFree, per
    thread, from libvirtd's debug log (log_filters 1:locking; ms resolution)."""
    opened, spans = {}, []
    for line in open(log, errors="replace"):
        m = re.match(r"(\S+ \S+)\+0000: (\d+): debug : (\w+):\d+ : ", line)
        if not m:
            continue
        ts = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1000
        if m[3] == "virDomainLockProcessResume":
            opened[m[2]] = ts
        elif m[3] == "virLockManagerFree" and m[2] in opened:
            spans.append(ts - opened.pop(m[2]))
    return spans[warmup:warmup + rounds]

print()
print("inside libvirtd, acquiring the leases when the vCPUs start (virDomainLockProcessResume, ms, from")
print("libvirtd's debug log at 1 ms resolution; the forked child's registration is not logged by libvirt)")
print(f"{'lock manager':<13} {'median':>7} {'p90':>7} {'mean':>7}")
spans = {}
for m in managers:
    v = lock_spans(f"{state}/host-bench-{m}/log/libvirtd.log")
    spans[m] = v
    print(f"{m:<13} {median(v):>7.1f} {p90(v):>7.1f} {sum(v) / len(v):>7.1f}" if v else f"{m:<13} (no samples)")
if "sanlock" in spans and spans["sanlock"] and spans["highlander"]:
    h, s_ = median(spans["highlander"]) - median(spans["nop"]), median(spans["sanlock"]) - median(spans["nop"])
    print(f"highlander / sanlock (median over nop): {h / s_:.2f}" if s_ > 0 else "sanlock: nothing measurable")

ready = {}
for line in open(ready_file):
    m, what, ms = line.split()
    ready[(m, what)] = int(ms) / 1000
print()
print("start-to-ready (s): lock daemon started until it answers (highlanderd joins its lockspace here),")
print("then libvirtd started until virsh answers (sanlock's plugin joins its lockspace here), on a new host;")
print("\"libvirtd again\": libvirtd stopped and started once more, its lock daemon still running")
print(f"{'lock manager':<13} {'lock daemon':>12} {'libvirtd':>10} {'together':>10} {'libvirtd again':>17}")
for m in managers:
    daemon = ready.get((m, "highlanderd"), ready.get((m, "sanlock"), 0.0))
    lv = ready[(m, "libvirtd")]
    print(f"{m:<13} {daemon:>12.2f} {lv:>10.2f} {daemon + lv:>10.2f} {ready[(m, 'libvirtd-restart')]:>17.2f}")
PY
