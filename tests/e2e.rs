//! End-to-end through real libvirtd and QEMU: each test runs one script in
//! tests/libvirt/, which asserts every step and says which one failed.
//! Never skipped: without root, libvirtd or QEMU they fail and say how to
//! fix it (scripts/setup.sh installs them).

use testkit::gluster;

use std::path::Path;
use std::process::Command;

fn run_script(script: &str) {
    run_script_with(script, &[]);
}

fn run_script_with(script: &str, env: &[(&str, &str)]) {
    // This package is tests/ of the workspace.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let bin = root.join("target/debug");
    for needed in ["highlanderd", "highlander", "libhighlander.so", "highlander-hook"] {
        assert!(bin.join(needed).exists(), "{} missing: build first with `cargo build --workspace --all-targets`", bin.join(needed).display());
    }
    assert!(Path::new("/usr/sbin/libvirtd").exists(), "libvirtd is not installed: run `bash scripts/setup.sh` (as root)");
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the end-to-end tests need root (namespaces, loop devices, libvirtd)");
    let state = root.join(format!("target/e2e-{}-{}", script.trim_end_matches(".sh"), std::process::id()));
    let status = Command::new("bash").arg(root.join("tests/libvirt").join(script)).env("HL_BIN", &bin).env("HL_STATE", &state).envs(env.iter().copied()).status().expect("run bash");
    let _ = std::fs::remove_dir_all(&state);
    assert!(status.success(), "tests/libvirt/{script} failed (its output above says which step)");
}

/// One host: the plugin through every virsh operation an administrator uses.
#[test]
fn plugin_end_to_end() {
    run_script("plugin.sh");
}

/// Two hosts on one lockspace: cross-host refusal, live migration, host
/// failure, storage loss and a frozen host.
#[test]
fn two_hosts_end_to_end() {
    run_script("twohost.sh");
}

/// Two hosts on a lockspace of three devices: one device hung fences no
/// one; a host left without a majority fences before the other takes over.
#[test]
fn lockspace_on_three_devices_end_to_end() {
    run_script("members.sh");
}

/// Two hosts on a GlusterFS replica 3 arbiter 1 volume, each mounting it
/// at its own path: one identity, cross-host refusal, live migration.
#[test]
fn glusterfs_two_hosts_end_to_end() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-gluster-{}", std::process::id()));
    let mut g = gluster::Gluster::start(&dir.join("bed"), "hle2e");
    let probe = dir.join("probe-mount");
    g.mount(None, &probe);
    g.set(&["group", "virt"], |m| !gluster::volfile(m).contains("performance/quick-read") && gluster::direct_io(m));
    run_script_with("gluster.sh", &[("HL_GLUSTER_VOLUME", &g.volume)]);
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

/// gluster:// disks (QEMU's libgfapi driver) on a GlusterFS volume, two
/// hosts with the qemu hook: the network disk is leased, a second guest on
/// it (either host, gluster:// or the FUSE path) is refused naming the
/// holder, suspend/resume, a failed start and a libvirtd restart.
#[test]
fn network_disks_end_to_end() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-netdisk-{}", std::process::id()));
    let mut g = gluster::Gluster::start(&dir.join("bed"), "hlnet");
    let probe = dir.join("probe-mount");
    g.mount(None, &probe);
    g.set(&["group", "virt"], |m| !gluster::volfile(m).contains("performance/quick-read") && gluster::direct_io(m));
    run_script_with("netdisk.sh", &[("HL_GLUSTER_VOLUME", &g.volume)]);
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A two-node Pacemaker cluster without fencing, split by cutting its link:
/// both partitions start the guest, highlander lets exactly one run.
#[test]
fn pacemaker_split_brain_is_refused() {
    run_script("pacemaker.sh");
}
