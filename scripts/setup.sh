#!/usr/bin/env bash
# Installs what building and testing highlander needs, on Debian 12, when
# missing: a C compiler and libclang (bindgen reads include/lock_driver.h and
# libblkid's header), libblkid-dev (`lockspace init` probes what a device
# holds), libvirt, QEMU and jq for the end-to-end tests, e2fsprogs
# (mkfs.ext4) for the disk identity and init tests, xfsprogs, fdisk (sfdisk),
# lvm2 (pvcreate) and cryptsetup-bin (luksFormat) for the init tests, make,
# file, binutils, groff and systemd-analyze for the install check, sanlock
# (also the init tests) and libvirt's sanlock plugin (libvirt-sanlock) for
# side-by-side benchmarks, GlusterFS (server, FUSE client, attr) for the
# replicated-storage tests, corosync, pacemaker, resource-agents and crmsh
# for the cluster-manager test, python3-fusepy and libfuse2 (the freezable
# FUSE filesystem of tests/fencing.rs), g++ (libfuzzer-sys builds
# libFuzzer) and cargo-fuzz for scripts/fuzz.sh, icinga2-bin, nagios4-core and
# prometheus-node-exporter for the monitoring tests, which run them as their own
# processes to load the examples and read `highlander metrics` (on a machine
# with systemd, Debian also starts nagios4 and node_exporter as services). Idempotent; does nothing when everything is present.
set -euo pipefail

command -v cargo >/dev/null || { echo "setup: cargo is missing; install Rust (https://rustup.rs) first" >&2; exit 1; }

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# qemu-block-extra: QEMU's gluster:// driver (block-gluster.so), for tests/libvirt/netdisk.sh.
for pkg in gcc g++ libclang-dev libblkid-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-block-extra util-linux e2fsprogs xfsprogs fdisk lvm2 cryptsetup-bin python3 jq make file binutils groff-base systemd sanlock libvirt-sanlock glusterfs-server glusterfs-client attr pacemaker corosync resource-agents crmsh python3-fusepy libfuse2 icinga2-bin nagios4-core prometheus-node-exporter; do
    have "$pkg" || need+=("$pkg")
done

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to install: ${need[*]}" >&2; exit 1; fi
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    extra=()
    # Some images carry a backported qemu-utils that conflicts with bookworm's
    # qemu-system-x86; pin qemu-utils to the version qemu-system-x86 wants.
    if [[ " ${need[*]} " == *" qemu-system-x86 "* ]]; then
        want=$(apt-cache show qemu-system-x86 | sed -n 's/^Version: //p' | head -1)
        have_utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
        if [ -n "$have_utils" ] && [ "$have_utils" != "$want" ]; then extra=("qemu-utils=$want" --allow-downgrades); fi
    fi
    apt-get install -y -qq --no-install-recommends "${need[@]}" "${extra[@]}" >/dev/null
fi

# scripts/fuzz.sh drives cargo-fuzz (from crates.io; it runs on the stable toolchain).
command -v cargo-fuzz >/dev/null || { echo "setup: installing cargo-fuzz"; cargo install cargo-fuzz --locked --quiet; }

# libvirt's QEMU driver refuses to start without its user and group, even
# when qemu.conf runs guests as root.
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/images /var/cache/libvirt
