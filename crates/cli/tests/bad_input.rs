//! Bad input gets a clear error naming the thing, and loses nothing: every
//! case checks the message and that the bytes on storage are unchanged.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::error::{Error, FormatError};
use engine::{InitOptions, JoinOptions, Lockspace};
use support::{cli, LoopDevice};

fn scratch(name: &str) -> PathBuf {
    support::scratch("bad", name)
}

fn formatted(name: &str) -> PathBuf {
    let p = scratch(name);
    let mut o = InitOptions::new("bad");
    o.max_hosts = 4;
    o.resource_slots = 4;
    // join_span is T/20: 15 ms leaves room for a loaded CI machine's O_DSYNC write.
    o.io_timeout = Duration::from_millis(300);
    engine::init::init(&p, &o).unwrap();
    p
}

/// Runs `f` and asserts the file's bytes did not change.
fn untouched<T>(path: &Path, f: impl FnOnce() -> T) -> T {
    let before = std::fs::read(path).unwrap();
    let out = f();
    assert!(std::fs::read(path).unwrap() == before, "{} was modified", path.display());
    out
}

fn join_err(path: &Path, host_id: u32) -> Error {
    Lockspace::join(JoinOptions::new(path, host_id, "host-x")).err().expect("join must fail")
}

fn flip(path: &Path, byte: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, byte).unwrap();
    b[0] ^= 0x10;
    f.write_all_at(&b, byte).unwrap();
}

#[test]
fn unformatted_file_is_not_a_lockspace() {
    let p = scratch("zeros");
    std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
    let e = untouched(&p, || join_err(&p, 1));
    assert!(matches!(e, Error::NotALockspace { source: FormatError::NotFormatted, .. }), "{e}");
    assert!(e.to_string().contains("highlander lockspace init"), "says what to do: {e}");
    let (code, out) = untouched(&p, || cli(&["dump", p.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(out.contains("is not a highlander lockspace") && out.contains(p.to_str().unwrap()), "{out}");
}

#[test]
fn foreign_data_and_existing_lockspaces_are_not_overwritten_by_init() {
    let p = scratch("foreign");
    std::fs::write(&p, b"important filesystem data".repeat(40_000)).unwrap();
    let e = untouched(&p, || engine::init::init(&p, &InitOptions::new("x")).unwrap_err());
    assert!(e.to_string().contains("holds data that no signature probe recognises (a non-zero byte at offset 0); refusing to format it"), "{e}");
    let e = untouched(&p, || join_err(&p, 1));
    assert!(matches!(e, Error::NotALockspace { source: FormatError::BadMagic { .. }, .. }), "{e}");

    let p = formatted("exists");
    let (code, out) = untouched(&p, || cli(&["lockspace", "init", p.to_str().unwrap(), "--name", "again"]));
    assert_eq!(code, 1);
    assert!(out.contains("holds a highlander lockspace \"bad\"; refusing to format it") && out.contains("--force"), "{out}");
}

#[test]
fn another_format_version_is_named() {
    let p = formatted("version");
    std::fs::OpenOptions::new().write(true).open(&p).and_then(|f| {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&(2u32 << 16).to_le_bytes(), 4)
    }).unwrap();
    let e = untouched(&p, || join_err(&p, 1));
    assert!(e.to_string().contains("format version 2.0, this build reads only 1.x"), "{e}");
}

#[test]
fn truncated_file_is_refused() {
    let p = formatted("trunc");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 512).unwrap();
    let e = untouched(&p, || join_err(&p, 1));
    assert!(matches!(e, Error::Truncated { size, need, .. } if size == len - 512 && need == len), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn a_flipped_bit_in_any_record_is_detected_and_named() {
    // Header.
    let p = formatted("flip-header");
    flip(&p, 100);
    let e = untouched(&p, || join_err(&p, 1));
    assert!(matches!(e, Error::CorruptHeader { .. }), "{e}");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");

    // Our own host slot: refused, not overwritten.
    let p = formatted("flip-slot");
    let x = Lockspace::join(JoinOptions::new(&p, 2, "host-x")).unwrap();
    let req = engine::AcquireRequest { identity: "file:/held".into(), mode: engine::Mode::Exclusive, holder: Default::default(), expect_lver: None };
    x.acquire(&req).unwrap();
    x.stop(); // host 2 dies holding a lease
    flip(&p, 2 * 512 + 40);
    let e = untouched(&p, || join_err(&p, 2));
    assert!(matches!(e, Error::CorruptOwnSlot { host_id: 2, .. }), "{e}");
    assert!(e.to_string().contains("host id 2"), "{e}");
    assert!(e.to_string().contains("highlander lockspace clear-host"), "says what to do: {e}");
    // dump shows it and still shows the rest.
    let (code, out) = untouched(&p, || cli(&["dump", p.to_str().unwrap()]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("CORRUPT") && out.contains("sector 2 (host slot of host id 2)"), "{out}");
    // The remedy: clear-host frees it once nobody renews it, and host 2 joins.
    let (code, out) = cli(&["lockspace", "clear-host", p.to_str().unwrap(), "--host-id", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("freed the slot of host id 2"), "{out}");
    // Host 2's old lease counts as released at once; host 2 can join again.
    let other = Lockspace::join(JoinOptions::new(&p, 1, "host-y")).unwrap();
    other.acquire(&req).unwrap();
    other.leave().unwrap();
    Lockspace::join(JoinOptions::new(&p, 2, "host-x")).unwrap().leave().unwrap();

    // A resource leader and a ballot block.
    for (name, sector_in_area) in [("flip-leader", 0u64), ("flip-dblock", 1)] {
        let p = formatted(name);
        let ls = Lockspace::join(JoinOptions::new(&p, 1, "host-x")).unwrap();
        let req = engine::AcquireRequest { identity: "file:/d".into(), mode: engine::Mode::Exclusive, holder: Default::default(), expect_lver: None };
        let lease = ls.acquire(&req).unwrap();
        ls.release(&lease).unwrap();
        let base = ls.header().layout().resource_base(lease.slot) + sector_in_area;
        ls.leave().unwrap();
        flip(&p, base * 512 + 60);
        let ls = Lockspace::join(JoinOptions::new(&p, 1, "host-x")).unwrap();
        let before = std::fs::read(&p).unwrap();
        let e = ls.acquire(&req).unwrap_err();
        let after = std::fs::read(&p).unwrap();
        // Only our host slot (renewals) may have changed.
        let slot = 512..1024;
        assert!(before[..slot.start] == after[..slot.start] && before[slot.end..] == after[slot.end..], "resource area modified");
        assert!(matches!(e, Error::Corrupt { sector, .. } if sector == base), "{name}: {e}");
        ls.leave().unwrap();
    }
}

#[test]
fn host_id_out_of_range_and_duplicates() {
    let p = formatted("ids");
    for id in [0, 5] {
        let e = untouched(&p, || join_err(&p, id));
        assert!(e.to_string().contains(&format!("host id {id} is out of range")) && e.to_string().contains("1..=4"), "{e}");
    }
    let a = Lockspace::join(JoinOptions::new(&p, 1, "host-a")).unwrap();
    let e = join_err(&p, 1);
    assert!(matches!(&e, Error::HostIdBusy { holder, .. } if holder == "host-a"), "{e}");
    assert!(e.to_string().contains("unique host_id"), "{e}");
    // clear-host never takes an id from a host that renews it.
    let (code, out) = cli(&["lockspace", "clear-host", p.to_str().unwrap(), "--host-id", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("in use by host \"host-a\""), "{out}");
    drop(a);
}

#[test]
fn bad_init_arguments_are_refused_before_touching_anything() {
    let p = scratch("args");
    for (args, expect) in [
        (vec!["--name", "has space"], "printable ASCII"),
        (vec!["--name", "ok", "--max-hosts", "0"], "--max-hosts 0 is out of range"),
        (vec!["--name", "ok", "--sector-size", "1000"], "sector size 1000 is not supported"),
        (vec!["--name", "ok", "--io-timeout", "0.001"], "io_timeout"),
    ] {
        let mut full = vec!["lockspace", "init", p.to_str().unwrap()];
        full.extend(args);
        let (code, out) = cli(&full);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(expect), "{full:?}: {out}");
    }
    assert!(!p.exists(), "a refused init created {}", p.display());
    let (code, out) = cli(&["dump", "/nonexistent/lockspace"]);
    assert_eq!(code, 1);
    assert!(out.contains("/nonexistent/lockspace: cannot open"), "{out}");
}

/// A lockspace formatted for 512-byte sectors on a 4096-byte device.
#[test]
fn wrong_sector_size_on_a_block_device() {
    let backing = scratch("4k-backing");
    std::fs::write(&backing, vec![0u8; 8 << 20]).unwrap();
    let guard = LoopDevice::attach(&backing, Some(4096));
    let dev = guard.0.clone();

    let mut o = InitOptions::new("blk");
    o.max_hosts = 4;
    o.resource_slots = 4;
    o.sector_size = Some(512);
    let e = engine::init::init(&dev, &o).unwrap_err();
    assert!(matches!(e, Error::SectorSizeTooSmall { wanted: 512, device: 4096, .. }), "{e}");
    // Nothing was formatted yet: the message says what to pass instead.
    assert!(!e.to_string().contains("formatted") && e.to_string().contains("pass --sector-size 4096 or leave it out"), "{e}");
    // Detected size works.
    o.sector_size = None;
    // join_span is T/20: 15 ms leaves room for a loaded CI machine's O_DSYNC write.
    o.io_timeout = Duration::from_millis(300);
    assert_eq!(engine::init::init(&dev, &o).unwrap().sector_size, 4096);
    Lockspace::join(JoinOptions::new(&dev, 1, "host-a")).unwrap().leave().unwrap();

    // The same bytes behind a 512-byte device: a 4096 lockspace still opens...
    // ...but a 512 lockspace image behind a 4096 device must be refused.
    let img = formatted("512-image");
    let data = std::fs::read(&img).unwrap();
    std::fs::OpenOptions::new().write(true).open(&dev).and_then(|f| {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&data[..4096], 0)
    }).unwrap();
    let e = join_err(&dev, 1);
    assert!(matches!(e, Error::WrongSectorSize { header: 512, device: 4096, .. }), "{e}");
    assert!(e.to_string().contains("512-byte sectors but the device uses 4096-byte"), "{e}");
}

/// What is not a file or block device is named as what it is, through the
/// library and the CLI, instead of the O_DIRECT open's bare EINVAL.
#[test]
fn a_directory_or_character_device_is_named() {
    let dir = scratch("dir");
    std::fs::create_dir_all(&dir).unwrap();
    for (path, what) in [(dir.as_path(), "a directory"), (Path::new("/dev/null"), "a character device")] {
        let expect = format!("{} is {what}, not a lockspace device or file", path.display());
        let errors = [
            join_err(path, 1).to_string(),
            engine::direct::dump(path).unwrap_err().to_string(),
            engine::init::init(path, &InitOptions::new("x")).unwrap_err().to_string(),
            cli(&["dump", path.to_str().unwrap()]).1,
            cli(&["lockspace", "init", path.to_str().unwrap(), "--name", "x"]).1,
        ];
        for e in errors {
            assert!(e.contains(&expect) && !e.contains("os error"), "{what}: {e}");
        }
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing created in the directory");
}

/// A 0- or 100-byte file is too small to be a lockspace, and the message
/// says so and what to do; `init` then grows it like any file of zeros.
#[test]
fn a_file_too_small_to_be_a_lockspace_is_named_and_init_grows_it() {
    for len in [0usize, 100] {
        let p = scratch(&format!("small-{len}"));
        std::fs::write(&p, vec![0u8; len]).unwrap();
        let expect = format!("{}: is {len} bytes, too small to be a highlander lockspace", p.display());
        let errors = [untouched(&p, || join_err(&p, 1)).to_string(), engine::direct::dump(&p).unwrap_err().to_string(), untouched(&p, || cli(&["dump", p.to_str().unwrap()])).1];
        for e in errors {
            assert!(e.contains(&expect) && e.contains(&format!("`highlander lockspace init {} --name NAME`", p.display())), "{len} bytes: {e}");
            assert!(!e.contains("end of lockspace device"), "{e}");
        }
        let (code, out) = cli(&["lockspace", "init", p.to_str().unwrap(), "--name", "grown", "--max-hosts", "4", "--resources", "4"]);
        assert_eq!(code, 0, "{len} bytes: {out}");
        Lockspace::join(JoinOptions::new(&p, 1, "host-x")).unwrap().leave().unwrap();
    }
}

/// The hint after a corrupt header does not send the user to the very
/// command that just failed on it (`dump` cannot read it either).
#[test]
fn a_corrupt_header_says_what_to_do() {
    let p = formatted("corrupt-header");
    flip(&p, 100);
    let (code, out) = untouched(&p, || cli(&["dump", p.to_str().unwrap()]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the lockspace header (sector 0) is corrupt") && out.contains("checksum mismatch"), "{out}");
    assert!(!out.contains("highlander dump"), "points at the command that failed: {out}");
    assert!(out.contains(&format!("highlander lockspace init {} --name NAME --force", p.display())), "{out}");
    // And init without --force does not take it for empty.
    let (code, out) = untouched(&p, || cli(&["lockspace", "init", p.to_str().unwrap(), "--name", "again"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("holds a highlander lockspace whose header is damaged"), "{out}");
}
