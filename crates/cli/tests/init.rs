//! `lockspace init` destroys nothing without --force: whatever a device or
//! file holds (what libblkid's probe recognises, sanlock's leases, another
//! lockspace, any other data) is refused and named; zeros, any size of
//! file of zeros, and a path that does not exist yet are formatted. Each
//! case is made by the real tool (mkfs.ext4, mkfs.xfs, mkswap, pvcreate,
//! sfdisk, cryptsetup, sanlock) on a file or a loop device.

mod support;

use std::path::Path;

use engine::InitOptions;
use support::{cli, run, scratch, LoopDevice};

/// A layout that fits in a few MiB, so size never decides the outcome.
fn small() -> InitOptions {
    let mut o = InitOptions::new("fresh");
    o.max_hosts = 4;
    o.resource_slots = 4;
    o
}

/// A file of `mib` MiB of zeros (sparse).
fn zeros(name: &str, mib: u64) -> std::path::PathBuf {
    let p = scratch("init", name);
    std::fs::File::create(&p).unwrap().set_len(mib << 20).unwrap();
    p
}

/// Asserts that init, through the library and the CLI, refuses `path`
/// naming `expect`, tells how to override, and changes no byte.
fn refused(path: &Path, expect: &[&str]) {
    let before = std::fs::read(path).unwrap();
    let e = engine::init::init(path, &small()).expect_err("init must refuse").to_string();
    let (code, out) = cli(&["lockspace", "init", path.to_str().unwrap(), "--name", "x", "--max-hosts", "4", "--resources", "4"]);
    assert!(std::fs::read(path).unwrap() == before, "{} was modified", path.display());
    assert_eq!(code, 1, "{out}");
    for msg in [&e, &out] {
        assert!(msg.contains(&format!("{} holds ", path.display())), "names the path: {msg}");
        for word in expect {
            assert!(msg.contains(word), "expected {word:?} in: {msg}");
        }
        assert!(msg.contains("refusing to format it. Pass --force to destroy it"), "says how to override: {msg}");
    }
}

const UUID: &str = "0b7a3f52-2c4e-4d0a-9a55-6c1f1e0d2b77";

#[test]
fn ext4_in_a_file_is_refused_naming_type_uuid_and_label() {
    let p = zeros("ext4", 16);
    run("mkfs.ext4", &["-q", "-F", "-L", "data", "-U", UUID, p.to_str().unwrap()]);
    refused(&p, &["an ext4 filesystem", &format!("UUID {UUID}"), "label \"data\""]);
}

#[test]
fn ext4_on_a_loop_device_is_refused_and_force_overwrites_it() {
    let backing = zeros("ext4-loop", 16);
    let dev = LoopDevice::attach(&backing, None);
    run("mkfs.ext4", &["-q", "-F", "-U", UUID, dev.path()]);
    refused(&dev.0, &["an ext4 filesystem", &format!("UUID {UUID}")]);
    let (code, out) = cli(&["lockspace", "init", dev.path(), "--name", "forced", "--max-hosts", "4", "--resources", "4", "--force"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&["dump", dev.path()]);
    assert!(code == 0 && out.contains("lockspace \"forced\""), "{out}");
}

#[test]
fn xfs_is_refused() {
    let p = zeros("xfs", 300); // mkfs.xfs wants at least 300 MB; sparse
    run("mkfs.xfs", &["-q", "-f", "-m", &format!("uuid={UUID}"), p.to_str().unwrap()]);
    refused(&p, &["an xfs filesystem", &format!("UUID {UUID}")]);
}

#[test]
fn swap_is_refused() {
    let p = zeros("swap", 16);
    run("mkswap", &["-U", UUID, p.to_str().unwrap()]);
    refused(&p, &["a swap area", &format!("UUID {UUID}")]);
}

/// An LVM2 label lives in sector 1 (sector 0 stays zero). pvcreate needs
/// no device-mapper, so a real one is made on a loop device.
#[test]
fn lvm_physical_volume_is_refused() {
    let backing = zeros("lvm", 16);
    let dev = LoopDevice::attach(&backing, None);
    run("pvcreate", &["-q", "-y", "--config", "devices { use_devicesfile = 0 }", dev.path()]);
    refused(&dev.0, &["an LVM2 physical volume (UUID "]);
}

#[test]
fn partition_tables_are_refused() {
    for (label, expect) in [("gpt", "a gpt partition table"), ("dos", "an MBR (dos) partition table")] {
        let p = zeros(&format!("pt-{label}"), 16);
        let mut sfdisk = std::process::Command::new("sfdisk")
            .args(["-q", p.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk (fdisk package) must be installed; run scripts/setup.sh");
        use std::io::Write;
        sfdisk.stdin.take().unwrap().write_all(format!("label: {label}\n,8M\n").as_bytes()).unwrap();
        assert!(sfdisk.wait().unwrap().success());
        refused(&p, &[expect]);
    }
}

#[test]
fn luks_is_refused() {
    let p = zeros("luks", 32);
    let key = scratch("init", "luks-key");
    std::fs::write(&key, b"not a secret").unwrap();
    run(
        "cryptsetup",
        &["luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--uuid", UUID, "--key-file", key.to_str().unwrap(), p.to_str().unwrap()],
    );
    refused(&p, &["a LUKS encrypted volume", &format!("UUID {UUID}")]);
}

/// libblkid does not know sanlock: its lockspaces and resource leases are
/// recognised by their record magic.
#[test]
fn sanlock_lockspaces_and_leases_are_refused() {
    let p = zeros("sanlock-ls", 2);
    run("sanlock", &["direct", "init", "-s", &format!("vdsm:0:{}:0", p.display())]);
    refused(&p, &["a sanlock lockspace \"vdsm\""]);
    let p = zeros("sanlock-res", 2);
    run("sanlock", &["direct", "init", "-r", &format!("vdsm:disk1:{}:0", p.display())]);
    refused(&p, &["a sanlock resource lease \"vdsm:disk1\""]);
}

#[test]
fn another_lockspace_and_unknown_data_are_refused() {
    let p = scratch("init", "lockspace");
    engine::init::init(&p, &InitOptions::new("first")).unwrap();
    refused(&p, &["a highlander lockspace \"first\"", "stop every host using it first"]);

    // Sector 0 zero, as ext4 leaves it, and something no probe knows further in.
    let p = zeros("unknown", 1);
    std::fs::write(&p, [vec![0u8; 5000], b"precious".to_vec()].concat()).unwrap();
    refused(&p, &["data that no signature probe recognises (a non-zero byte at offset 5000)"]);
}

#[test]
fn zeros_of_any_size_and_missing_paths_are_formatted() {
    for len in [0u64, 100, 1000, 1 << 20, 64 << 20] {
        let p = scratch("init", &format!("zeros-{len}"));
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        let header = engine::init::init(&p, &small()).unwrap_or_else(|e| panic!("{len}-byte file of zeros: {e}"));
        let need = header.layout().total_sectors() * 512;
        assert_eq!(std::fs::metadata(&p).unwrap().len(), len.max(need), "grown to the lockspace's size, never shrunk");
        engine::direct::dump(&p).unwrap();
    }
    let p = scratch("init", "missing");
    let (code, out) = cli(&["lockspace", "init", p.to_str().unwrap(), "--name", "new", "--max-hosts", "4", "--resources", "4"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(engine::direct::dump(&p).unwrap().name, "new");
}

/// A block device of zeros is formatted; one too small says so at init
/// time (not "truncated", which is about an existing lockspace).
#[test]
fn a_zeroed_loop_device_is_formatted_and_a_small_one_is_named_too_small() {
    let backing = zeros("blk", 4);
    let dev = LoopDevice::attach(&backing, None);
    engine::init::init(&dev.0, &small()).unwrap();
    let (code, out) = cli(&["lockspace", "init", dev.path(), "--name", "big", "--force"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is 4194304 bytes, too small for this lockspace") && out.contains("fewer --max-hosts or --resources"), "{out}");
    assert!(!out.contains("truncated") && !out.contains("formatted with"), "{out}");
}
