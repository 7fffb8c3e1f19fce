#!/usr/bin/env bash
# A Pacemaker split brain, refused by highlander. Two test hosts (lib.sh),
# each in its own network namespace joined by a veth pair, each a node of a
# two-node corosync + pacemaker cluster (`two_node: 1`, stonith disabled:
# the dangerous configuration) with one VirtualDomain resource whose disk
# both hosts see (each through its own loop device, at the same path).
# Cutting the link leaves both partitions quorate and both start the
# resource: exactly one guest may run, the other start must fail with
# highlander's refusal and show as a failed action in crm_mon. After the
# heal the cluster must converge on one running copy. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HL_BIN=${HL_BIN:?directory with highlanderd, highlander, libhighlander.so}
export HL_STATE=${HL_STATE:?scratch directory}
source "$here/lib.sh"

T=1  # io_timeout (s)
LS=$HL_STATE/shared/lockspace
VM=pm-guest
DISK=/var/lib/libvirt/images/pm-disk

# hl_pm HOST CMD...: runs CMD in the host's namespaces, its network included.
hl_pm() { local h=$1; shift; nsenter -t "$(cat "$(hl_root "$h")/anchor.pid")" -m -u -n -- "$@"; }
addr() { case $1 in hosta) echo 10.251.0.1 ;; hostb) echo 10.251.0.2 ;; esac; }

tag=$$
export HL_NETNS_hosta=hlpm-a-$tag HL_NETNS_hostb=hlpm-b-$tag
VETH_A=hlpa$tag VETH_B=hlpb$tag

cleanup() {
    local h pid
    rm -f "$HL_STATE/sampling"
    for h in hosta hostb; do
        for pid in pacemakerd corosync; do hl_kill "$(cat "$(hl_root "$h")/$pid.pid" 2>/dev/null)" "$pid"; done
    done
    hl_host_down hosta; hl_host_down hostb; hl_loops_down
    ip netns del "$HL_NETNS_hosta" 2>/dev/null || true
    ip netns del "$HL_NETNS_hostb" 2>/dev/null || true
}
rm -rf "$HL_STATE"; mkdir -p "$HL_STATE/shared"
trap cleanup EXIT

ip netns add "$HL_NETNS_hosta"; ip netns add "$HL_NETNS_hostb"
ip link add "$VETH_A" type veth peer name "$VETH_B"
ip link set "$VETH_A" netns "$HL_NETNS_hosta"; ip link set "$VETH_B" netns "$HL_NETNS_hostb"
ip -n "$HL_NETNS_hosta" addr add "$(addr hosta)/24" dev "$VETH_A"
ip -n "$HL_NETNS_hostb" addr add "$(addr hostb)/24" dev "$VETH_B"
for ns in "$HL_NETNS_hosta" "$HL_NETNS_hostb"; do ip -n "$ns" link set lo up; done
ip -n "$HL_NETNS_hosta" link set "$VETH_A" up; ip -n "$HL_NETNS_hostb" link set "$VETH_B" up

"$HL_BIN/highlander" lockspace init "$LS" --name pacemaker --max-hosts 4 --resources 8 --io-timeout $T >/dev/null
truncate -s 16M "$HL_STATE/shared/pm.raw"
loop_a=$(hl_loop "$HL_STATE/shared/pm.raw"); loop_b=$(hl_loop "$HL_STATE/shared/pm.raw")
hl_host_up hosta 1 "$LS"
hl_host_up hostb 2 "$LS"
# One domain XML for both nodes (VirtualDomain's config=); the disk path in
# it leads to each host's own loop device.
mkdir -p "$(hl_root hosta)/lib/images" "$(hl_root hostb)/lib/images"
ln -s "$loop_a" "$(hl_root hosta)/lib/images/pm-disk"; ln -s "$loop_b" "$(hl_root hostb)/lib/images/pm-disk"
hl_guest_xml "$VM" "$DISK" > "$HL_STATE/shared/$VM.xml"

# The CIB both nodes start from: no stonith, the guest preferring hosta.
cib=$HL_STATE/shared/cib.xml
cibadmin --empty > "$cib"
export CIB_file=$cib
crm_attribute --type crm_config --name stonith-enabled --update false
crm_attribute --type crm_config --name dc-deadtime --update 2s
cibadmin --create -o configuration --xml-text "<rsc_defaults><meta_attributes id='rsc-options'><nvpair id='rsc-options-stickiness' name='resource-stickiness' value='100'/></meta_attributes></rsc_defaults>"
cibadmin --create -o resources --xml-text "<primitive id='vm' class='ocf' provider='heartbeat' type='VirtualDomain'>
  <instance_attributes id='vm-ia'>
    <nvpair id='vm-config' name='config' value='$HL_STATE/shared/$VM.xml'/>
    <nvpair id='vm-hypervisor' name='hypervisor' value='qemu:///system'/>
    <nvpair id='vm-force-stop' name='force_stop' value='true'/>
  </instance_attributes>
  <operations>
    <op id='vm-start' name='start' interval='0' timeout='60s'/>
    <op id='vm-stop' name='stop' interval='0' timeout='60s'/>
    <op id='vm-monitor' name='monitor' interval='2s' timeout='30s'/>
  </operations>
</primitive>"
cibadmin --create -o constraints --xml-text "<rsc_location id='vm-prefers-hosta' rsc='vm' node='hosta' score='50'/>"
unset CIB_file

pm_node_up() {
    local h=$1 R P
    R=$(hl_root "$h"); P=$R/pm
    mkdir -p "$P"/{corosync-etc,corosync-lib,pacemaker-log} "$P"/pacemaker-lib/{cib,pengine,blackbox,cores}
    cat > "$P/corosync-etc/corosync.conf" <<CONF
totem {
    version: 2
    cluster_name: hltest
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
nodelist {
    node {
        ring0_addr: $(addr hosta)
        name: hosta
        nodeid: 1
    }
    node {
        ring0_addr: $(addr hostb)
        name: hostb
        nodeid: 2
    }
}
logging {
    to_stderr: yes
    to_logfile: no
    to_syslog: no
}
CONF
    cp "$cib" "$P/pacemaker-lib/cib/cib.xml"
    chown -R hacluster:haclient "$P/pacemaker-lib" "$P/pacemaker-log"
    chmod -R 0750 "$P/pacemaker-lib"
    hl_pm "$h" sh -c "mount --bind '$P/corosync-etc' /etc/corosync && mount --bind '$P/corosync-lib' /var/lib/corosync &&
        mount --bind '$P/pacemaker-lib' /var/lib/pacemaker && mount --bind '$P/pacemaker-log' /var/log/pacemaker &&
        mount -t tmpfs -o mode=1777 tmpfs /dev/shm && mkdir -p -m 1755 /run/resource-agents"
    # Each records its own pid (the shell execs it) for the cleanup.
    hl_pm "$h" sh -c "echo \$\$ > '$R/corosync.pid'; exec corosync -f" </dev/null >"$R/corosync.log" 2>&1 &
    hl_wait 100 hl_pm "$h" corosync-cmapctl totem.cluster_name || { tail -5 "$R/corosync.log" >&2; return 1; }
    hl_pm "$h" sh -c "echo \$\$ > '$R/pacemakerd.pid'; exec pacemakerd -f" </dev/null >"$R/pacemaker.log" 2>&1 &
}
pm_node_up hosta
pm_node_up hostb

# crm_mon's XML, as node $1 sees the cluster, queried with python $2.
mon() {
    hl_pm "$1" crm_mon --output-as=xml 2>/dev/null | python3 -c "
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.stdin).getroot()
res = root.find(\".//resource[@id='vm']\")
running_on = [n.get('name') for n in res.findall('node')] if res is not None and res.get('role') == 'Started' and res.get('failed') == 'false' else []
online = [n.get('name') for n in root.findall('./nodes/node') if n.get('online') == 'true']
failed = [f.get('node') for f in root.findall('./failures/failure') if f.get('op_key', '').startswith('vm_start')]
quorate = root.find('./summary/current_dc').get('with_quorum') == 'true'
$2"
}
running() { [ "$(hl_domstate "$VM" "$1")" = running ]; }

step "cluster up: the guest runs on hosta"
hl_wait 600 mon hosta "sys.exit(0 if running_on == ['hosta'] and len(online) == 2 else 1)" || fail "pacemaker never started $VM on hosta ($(mon hosta 'print(running_on, online)'))"
running hosta || fail "crm_mon says $VM runs on hosta, but virsh does not"
identity=$(hl_cli hosta who "$DISK" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["identity"])')

step "cut the link: both partitions quorate, both start the guest; highlander refuses hostb's"
: > "$HL_STATE/sampling"
( while [ -e "$HL_STATE/sampling" ]; do
      printf '%s %s %s\n' "$(hl_domstate "$VM" hosta)" "$(hl_domstate "$VM" hostb)" \
          "$("$HL_BIN/highlander" who --lockspace "$LS" --identity "$identity" --json | tr -d ' \n')"
  done ) > "$HL_STATE/samples" &
sampler=$!
ip -n "$HL_NETNS_hosta" link set "$VETH_A" down
hl_wait 300 mon hostb "sys.exit(0 if online == ['hostb'] and quorate else 1)" || fail "hostb never saw hosta leave while staying quorate"
mon hosta "sys.exit(0 if online == ['hosta'] and quorate else 1)" || fail "hosta is not a quorate partition of its own: $(mon hosta 'print(online, quorate)')"
hl_wait 600 mon hostb "sys.exit(0 if 'hostb' in failed else 1)" || fail "pacemaker on hostb recorded no failed start of $VM ($(mon hostb 'print(running_on, failed)'))"
running hosta || fail "$VM stopped on hosta during the split"
! running hostb || fail "$VM runs on hostb too: split brain"
grep -q "is held exclusively by guest \"$VM\".*on host 1 \"hosta\"" "$(hl_root hostb)/pm/pacemaker-log/pacemaker.log" \
    || fail "hostb's pacemaker log does not show highlander's refusal naming $VM on hosta"
echo "   hostb: $(grep -o "Failed to acquire lock: [^\"]*\"[^\"]*\"" "$(hl_root hostb)/pm/pacemaker-log/pacemaker.log" | head -1) ..."
echo "   crm_mon on hostb: $(hl_pm hostb crm_mon -1 2>/dev/null | grep -A2 -i 'failed resource actions' | tail -1 | sed 's/^ *//')"

step "heal the link: the cluster converges on one running copy"
ip -n "$HL_NETNS_hosta" link set "$VETH_A" up
hl_wait 600 mon hosta "sys.exit(0 if len(online) == 2 and running_on == ['hosta'] else 1)" || fail "the cluster did not converge on $VM at hosta ($(mon hosta 'print(online, running_on)'))"
running hosta && ! running hostb || fail "after the heal $VM does not run on exactly one host"
rm "$HL_STATE/sampling"; wait $sampler
python3 - "$HL_STATE/samples" <<'PY' || fail "the guest ran on both hosts, or the lease moved, during the split (samples in $HL_STATE/samples)"
import json, sys
n = 0
for line in open(sys.argv[1]):
    a, b, lease = line.split(" ", 2)
    lease = json.loads(lease)
    if a == "running" and b == "running":
        sys.exit(f"both running: {line}")
    if not lease["held"] or lease["owner_name"] != "hosta":
        sys.exit(f"lease not held by hosta: {line}")
    n += 1
print(f"   {n} samples of both hosts and the lockspace: the guest never ran twice; hosta held the lease throughout")
PY
echo "E2E PASSED"
