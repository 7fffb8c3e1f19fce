# lib.sh: isolated libvirt "hosts" for highlander's end-to-end tests and
# quickstart (sourced). A host = a private mount + UTS namespace (anchor.sh)
# with its own /etc/libvirt, /run, /var/lib/libvirt, /var/log/libvirt, its
# own virtlogd, highlanderd and libvirtd (lock_manager = "highlander").
# The machine's own libvirt is never touched. Processes are only ever
# stopped by the pids recorded here.
#
# Needs: HL_STATE (state directory), HL_BIN (directory with highlanderd,
# highlander and libhighlander.so).

HL_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

hl_root() { echo "$HL_STATE/host-$1"; }
hl_uri() { echo "qemu:///system?socket=$(hl_root "$1")/run/libvirt/libvirt-sock"; }
hl_virsh() { local h=$1; shift; virsh -q -c "$(hl_uri "$h")" "$@"; }
hl_in() { local h=$1; shift; nsenter -t "$(cat "$(hl_root "$h")/anchor.pid")" -m -u -- "$@"; }
hl_cli() { local h=$1; shift; hl_in "$h" "$HL_BIN/highlander" "$@"; }

# Waits up to $1 tenths of a second for the command to succeed.
hl_wait() {
    local tries=$1; shift
    local i
    for ((i = 0; i < tries; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

# hl_host_up NAME HOST_ID LOCKSPACE_FILE [LOCK_MANAGER]
# LOCK_MANAGER: highlander (default: highlanderd on LOCKSPACE_FILE), nop (no
# lock_manager line, no lock daemon; LOCKSPACE_FILE unused) or sanlock
# (libvirt's sanlock plugin, auto_disk_leases, with a sanlock daemon of the
# host's own; LOCKSPACE_FILE unused). Start-to-ready times of the lock daemon
# and of libvirtd go to $R/ready-ms ("WHAT MILLISECONDS" lines).
hl_host_up() {
    local h=$1 id=$2 lockspace=$3 manager=${4:-highlander} R t0
    R=$(hl_root "$h")
    case $manager in highlander | nop | sanlock) ;; *) echo "hl_host_up: unknown lock manager '$manager' (highlander, nop or sanlock)" >&2; return 1 ;; esac
    mkdir -p "$R"/{etc,run/libvirt,run/highlander,lib/qemu,log/qemu,cache/qemu,plugins}
    ln -sf "$HL_BIN/libhighlander.so" "$R/plugins/highlander.so"
    ln -sf "$HL_SANLOCK_PLUGIN" "$R/plugins/sanlock.so"
    # HL_HOOK=1: highlander's qemu hook, which declares network disks
    # (libvirt reads hooks/qemu.d/ from the host's /etc/libvirt at its start).
    if [ "${HL_HOOK:-0}" = 1 ]; then
        mkdir -p "$R/etc/hooks/qemu.d"
        ln -sf "$HL_BIN/highlander-hook" "$R/etc/hooks/qemu.d/highlander"
    fi
    : > "$R/ready-ms"
    cat > "$R/etc/libvirtd.conf" <<CONF
host_uuid = "$(printf '%08x-0000-4000-8000-%012x' "$id" "$id")"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_filters = "1:locking"
log_outputs = "1:file:/var/log/libvirt/libvirtd.log"
CONF
    cat > "$R/etc/qemu.conf" <<CONF
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
remember_owner = 0
stdio_handler = "logd"
CONF
    [ "$manager" = nop ] || echo "lock_manager = \"$manager\"" >> "$R/etc/qemu.conf"
    # disk_lease_dir: inside the host's private /var/lib/libvirt unless
    # HL_SANLOCK_LEASE_DIR names one the hosts share (two-host benchmarks).
    mkdir -p "$R/lib/sanlock"
    cat > "$R/etc/qemu-sanlock.conf" <<CONF
auto_disk_leases = 1
disk_lease_dir = "${HL_SANLOCK_LEASE_DIR:-/var/lib/libvirt/sanlock}"
host_id = $id
require_lease_for_disks = 1
CONF
    cat > "$R/etc/qemu-highlander.conf" <<CONF
# highlander plugin: where this host's highlanderd listens
socket = "/run/highlander/highlanderd.sock"
CONF
    cat > "$R/etc/virtlogd.conf" <<CONF
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
CONF
    cat > "$R/etc/highlanderd.conf" <<CONF
host_id = $id
host_name = $h
lockspace = $lockspace
CONF
    # HL_NETNS_<host>: a network namespace the host lives in (its own
    # network); a '-' in the host's name is '_' in the variable's.
    local netns_var=HL_NETNS_${h//-/_} in_netns=()
    [ -z "${!netns_var:-}" ] || in_netns=(ip netns exec "${!netns_var}")
    "${in_netns[@]}" setsid unshare --mount --uts --propagation private -- "$HL_LIB_DIR/anchor.sh" "$R" "$h" </dev/null >"$R/anchor.log" 2>&1 &
    hl_wait 50 test -s "$R/anchor.pid" || { echo "host $h: namespace anchor failed: $(cat "$R/anchor.log")" >&2; return 1; }

    # HL_BEFORE_DAEMON: a command run with the host's name once its
    # namespace exists (e.g. to mount shared storage only that host sees).
    [ -z "${HL_BEFORE_DAEMON:-}" ] || "$HL_BEFORE_DAEMON" "$h" || return 1
    hl_in "$h" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root virtlogd -d -f /etc/libvirt/virtlogd.conf -p /run/virtlogd.pid
    t0=$(hl_now_ms)
    case $manager in
        highlander) hl_daemon_start "$h" || return 1; echo "highlanderd $(($(hl_now_ms) - t0))" >> "$R/ready-ms" ;;
        sanlock) hl_sanlock_start "$h" || return 1; echo "sanlock $(($(hl_now_ms) - t0))" >> "$R/ready-ms" ;;
    esac
    # sanlock's plugin joins its lockspace inside libvirtd's start-up (2 x
    # io_timeout + 1 s, 21 s at its default io_timeout of 10 s).
    t0=$(hl_now_ms)
    hl_libvirtd_start "$h" "$([ "$manager" = sanlock ] && echo 120 || echo 30)" || return 1
    echo "libvirtd $(($(hl_now_ms) - t0))" >> "$R/ready-ms"
}

# libvirt's sanlock lock-driver plugin (Debian package libvirt-sanlock).
HL_SANLOCK_PLUGIN=${HL_SANLOCK_PLUGIN:-/usr/lib/x86_64-linux-gnu/libvirt/lock-driver/sanlock.so}

hl_now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
# hl_qemu_pid HOST NAME: the pid of guest NAME's QEMU on HOST.
hl_qemu_pid() { cat "$(hl_root "$1")/run/libvirt/qemu/$2.pid"; }
# hl_domstate NAME [HOST]: running, paused, shut off... (empty when unknown).
hl_domstate() { hl_virsh "${2:-hosta}" domstate "$1" 2>/dev/null | head -1 || true; }
# hl_migrate NAME FROM TO [virsh migrate options]: live migration over unix
# sockets only (no network needed between the hosts).
hl_migrate() {
    local name=$1 from=$2 to=$3; shift 3
    hl_virsh "$from" migrate --live --p2p "$@" "$name" "qemu+unix:///system?socket=$(hl_root "$to")/run/libvirt/libvirt-sock" \
        --migrateuri "unix://$HL_STATE/shared/migrate-$name.sock"
}

# hl_libvirtd_start NAME [SECONDS]: starts the host's libvirtd and waits up to
# SECONDS (30) until it answers. Fails as soon as libvirtd exits instead
# (e.g. its lock driver's init failed: libvirtd then logs "Driver state
# initialization failed" and exits), so a failure costs no timeout.
hl_libvirtd_start() {
    local h=$1 secs=${2:-30} R launcher deadline
    R=$(hl_root "$h")
    # libvirtd under a child subreaper (this sandbox's PID 1 reaps slowly) and
    # pinned to one CPU (an unpinned one re-probes QEMU's capabilities).
    # Not a process group leader here (no job control), so setsid execs and
    # $! stays the reaper, which lives as long as the libvirtd it started.
    nsenter -t "$(cat "$R/anchor.pid")" -m -u -- setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
        LIBVIRT_LOCK_MANAGER_PLUGIN_DIR="$R/plugins" taskset -c 0 "$HL_LIB_DIR/reaper.py" \
        libvirtd -d -f /etc/libvirt/libvirtd.conf -p /run/libvirtd.pid </dev/null >>"$R/log/libvirtd.stdout" 2>&1 &
    launcher=$!
    deadline=$(($(hl_now_ms) + secs * 1000))
    until hl_virsh "$h" hostname >/dev/null 2>&1; do
        if ! kill -0 "$launcher" 2>/dev/null; then
            echo "host $h: libvirtd exited during start-up; see $R/log/libvirtd.log" >&2; tail -3 "$R/log/libvirtd.log" >&2; return 1
        fi
        if [ "$(hl_now_ms)" -gt "$deadline" ]; then
            echo "host $h: libvirtd did not answer within $secs s; see $R/log/libvirtd.log" >&2; tail -5 "$R/log/libvirtd.log" >&2; return 1
        fi
        sleep 0.02
    done
}

# hl_libvirtd_stop NAME: stops the host's libvirtd (its recorded pid); the
# guests' QEMU processes keep running.
hl_libvirtd_stop() {
    local R
    R=$(hl_root "$1")
    hl_kill "$(cat "$R/run/libvirtd.pid" 2>/dev/null)" libvirtd
}

# hl_libvirtd_restart NAME [SECONDS]: stop, then start and wait (see above).
hl_libvirtd_restart() {
    hl_libvirtd_stop "$1"
    hl_libvirtd_start "$@"
}

# hl_sanlock_start NAME: a sanlock daemon in the host's namespace (run dir
# /run/sanlock, private to the host), unprivileged (this sandbox lacks
# CAP_SYS_RESOURCE) and without a watchdog (there is no watchdog device).
hl_sanlock_start() {
    local h=$1 R
    R=$(hl_root "$h")
    nsenter -t "$(cat "$R/anchor.pid")" -m -u -- setsid env SANLOCK_PRIVILEGED=0 sanlock daemon -D -w 0 -l 0 \
        </dev/null >>"$R/log/sanlock.log" 2>&1 &
    echo $! > "$R/sanlock.pid"
    hl_wait 100 hl_in "$h" sanlock client status || { echo "host $h: sanlock daemon did not start:" >&2; tail -5 "$R/log/sanlock.log" >&2; return 1; }
}

hl_sanlock_stop() {
    local R
    R=$(hl_root "$1")
    [ -s "$R/sanlock.pid" ] || return 0
    local pid ls
    pid=$(cat "$R/sanlock.pid")
    if [ -d "/proc/$pid" ]; then
        # The daemon ignores shutdown while it is in a lockspace: leave them first.
        for ls in $(hl_in "$1" sanlock client status 2>/dev/null | awk '$1 == "s" {print $2}'); do
            hl_in "$1" sanlock client rem_lockspace -s "$ls" >/dev/null 2>&1 || true
        done
        hl_in "$1" sanlock client shutdown >/dev/null 2>&1 || true
        hl_wait 50 test ! -d "/proc/$pid" || true
    fi
    hl_kill "$pid" sanlock
    rm -f "$R/sanlock.pid"
}

hl_daemon_start() {
    local h=$1 R
    R=$(hl_root "$h")
    # HL_FAULTS=1: the daemon's lockspace I/O fails while $R/fault says `fail`.
    local faults=()
    [ "${HL_FAULTS:-0}" = 1 ] && faults=(HIGHLANDER_TEST_FAULT_FILE="$R/fault")
    nsenter -t "$(cat "$R/anchor.pid")" -m -u -- setsid env RUST_LOG=info "${faults[@]}" "$HL_BIN/highlanderd" --config /etc/libvirt/highlanderd.conf \
        </dev/null >>"$R/log/highlanderd.log" 2>&1 &
    echo $! > "$R/highlanderd.pid"
    disown  # tests kill it by pid; no job-control chatter when they do
    hl_wait 100 hl_cli "$h" status || { echo "host $h: highlanderd did not start:" >&2; tail -5 "$R/log/highlanderd.log" >&2; return 1; }
}

# Stops a pid we started, if it is still the process we think it is.
hl_kill() {
    local pid=$1 comm=$2
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 0
    kill "$pid" 2>/dev/null || true
    hl_wait 50 test ! -d "/proc/$pid" || kill -9 "$pid" 2>/dev/null || true
}

hl_host_down() {
    local h=$1 R d
    R=$(hl_root "$h")
    [ -s "$R/anchor.pid" ] || return 0
    if hl_virsh "$h" hostname >/dev/null 2>&1; then
        for d in $(hl_virsh "$h" list --name 2>/dev/null); do hl_virsh "$h" destroy "$d" >/dev/null 2>&1 || true; done
    fi
    hl_kill "$(cat "$R/run/libvirtd.pid" 2>/dev/null)" libvirtd
    hl_kill "$(cat "$R/run/virtlogd.pid" 2>/dev/null)" virtlogd
    hl_kill "$(cat "$R/highlanderd.pid" 2>/dev/null)" highlanderd
    hl_sentinels_down "$h"
    hl_sanlock_stop "$h"
    hl_kill "$(cat "$R/anchor.pid")" sleep
    rm -f "$R/anchor.pid"
}

# highlanderd's fence sentinels (recorded in its state dir) outlive it by
# design and ignore SIGTERM; with the host's guests gone, SIGKILL them.
hl_sentinels_down() {
    local owners pid
    owners=$(hl_root "$1")/run/highlander/fence-owner.json
    [ -s "$owners" ] || return 0
    for pid in $(python3 -c 'import json,sys; print(*{o["sentinel_pid"] for o in json.load(open(sys.argv[1])).values()})' "$owners"); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = hl-sentinel ] && kill -KILL "$pid"
    done
    return 0
}

# hl_loop FILE: attaches a loop device to FILE (recorded for hl_loops_down).
hl_loop() {
    local dev
    dev=$(losetup --find --show "$1")
    echo "$dev" >> "$HL_STATE/loopdevs"
    echo "$dev"
}

hl_loops_down() {
    [ -f "$HL_STATE/loopdevs" ] || return 0
    local dev back
    while read -r dev; do
        back=$(losetup -n -O BACK-FILE "$dev" 2>/dev/null | sed 's/ *$//')
        case $back in "$HL_STATE"/*) losetup -d "$dev" ;; esac
    done < "$HL_STATE/loopdevs"
    rm -f "$HL_STATE/loopdevs"
}

# hl_guest_xml NAME DEVICE [OPTION...]: a tiny OS-less KVM (or TCG) guest
# with one raw block disk. Options: `file` (DEVICE is a file: <disk
# type='file'>), `readonly` (<readonly/>), `shareable` (<shareable/>).
hl_guest_xml() {
    local name=$1 dev=$2 type=kvm uuid opt disk_type=block source=dev format=raw flags=''
    shift 2
    for opt in "$@"; do
        case $opt in
            file) disk_type=file source=file ;;
            qcow2) format=qcow2 ;;
            readonly) flags+='<readonly/>' ;;
            shareable) flags+='<shareable/>' ;;
            *) echo "hl_guest_xml: unknown option '$opt' (file, qcow2, readonly, shareable)" >&2; return 1 ;;
        esac
    done
    [ -e /dev/kvm ] || type=qemu
    uuid=$(printf '%s' "$name" | md5sum | sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-4\3-8\4-\5/')
    cat <<XML
<domain type='$type'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <on_lockfailure>poweroff</on_lockfailure>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='$disk_type' device='disk'>
      <driver name='qemu' type='$format' cache='none'/>
      <source $source='$dev'/>
      <target dev='vda' bus='virtio'/>$flags
    </disk>
    <controller type='usb' model='none'/>
    <console type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# Helpers of the end-to-end scripts (tests/libvirt/*.sh).
fail() { echo "E2E FAILED: $*" >&2; exit 1; }
step() { echo "-- $*"; }
# who DISK HOST FIELD: one field of the daemon's answer to `highlander who`.
who() { hl_cli "$2" who "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$3'])"; }
# health HOST: the health of the first lockspace of HOST's daemon.
health() { hl_cli "$1" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["lockspaces"][0]["health"])'; }
healthy() { [ "$(health "$1")" = healthy ]; }
# log_ms HOST PATTERN: time (epoch ms) of the first highlanderd log line matching PATTERN.
log_ms() {
    local line
    line=$(grep -m1 -F "$2" "$(hl_root "$1")/log/highlanderd.log") || return 1
    date -d "$(sed -E 's/^\[([^ ]+) .*/\1/' <<<"$line")" +%s%3N
}
# disk NAME: an image file and one loop device per host (sets ${NAME}_a, ${NAME}_b).
disk() {
    truncate -s 16M "$HL_STATE/shared/$1.raw"
    printf -v "${1}_a" %s "$(hl_loop "$HL_STATE/shared/$1.raw")"
    printf -v "${1}_b" %s "$(hl_loop "$HL_STATE/shared/$1.raw")"
}
# retry_start HOST XML DEADLINE_MS: `virsh create` until it succeeds; prints the epoch ms of success.
retry_start() {
    local out
    while :; do
        if out=$(hl_virsh "$1" create "$2" 2>&1); then hl_now_ms; return 0; fi
        [ "$(hl_now_ms)" -lt "$3" ] || { echo "last refusal: $out" >&2; return 1; }
    done
}
