//! End-to-end through real libvirtd and QEMU: each test runs one script in
//! tests/libvirt/, which asserts every step and says which one failed.
//! Never skipped: without root, libvirtd or QEMU they fail and say how to
//! fix it (scripts/setup.sh installs them).

use std::path::Path;
use std::process::Command;

fn run_script(script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/debug");
    for needed in ["highlanderd", "highlander", "libhighlander.so"] {
        assert!(bin.join(needed).exists(), "{} missing: build first with `cargo build --workspace --all-targets`", bin.join(needed).display());
    }
    assert!(Path::new("/usr/sbin/libvirtd").exists(), "libvirtd is not installed: run `bash scripts/setup.sh` (as root)");
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the end-to-end tests need root (namespaces, loop devices, libvirtd)");
    let state = root.join(format!("target/e2e-{}-{}", script.trim_end_matches(".sh"), std::process::id()));
    let status = Command::new("bash").arg(root.join("tests/libvirt").join(script)).env("HL_BIN", &bin).env("HL_STATE", &state).status().expect("run bash");
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
