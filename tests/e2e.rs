//! End-to-end through real libvirtd and QEMU: runs tests/libvirt/e2e.sh,
//! which asserts each step. Never skipped: without root, libvirtd or QEMU
//! it fails and says how to fix it (scripts/setup.sh installs them).

use std::path::Path;
use std::process::Command;

#[test]
fn libvirt_end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/debug");
    for needed in ["highlanderd", "highlander", "libhighlander.so"] {
        assert!(bin.join(needed).exists(), "{} missing: build first with `cargo build --workspace --all-targets`", bin.join(needed).display());
    }
    assert!(Path::new("/usr/sbin/libvirtd").exists(), "libvirtd is not installed: run `bash scripts/setup.sh` (as root)");
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the end-to-end test needs root (namespaces, loop devices, libvirtd)");
    let state = root.join(format!("target/e2e-{}", std::process::id()));
    let status = Command::new("bash")
        .arg(root.join("tests/libvirt/e2e.sh"))
        .env("HL_BIN", &bin)
        .env("HL_STATE", &state)
        .status()
        .expect("run bash");
    let _ = std::fs::remove_dir_all(&state);
    assert!(status.success(), "tests/libvirt/e2e.sh failed (its output above says which step)");
}
