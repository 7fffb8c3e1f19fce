//! Lease engine on a real O_DIRECT file: several hosts (in one process,
//! each its own `Lockspace` with its own host id) on one lockspace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::delta_lease::HostState;
use engine::error::Error;
use engine::{AcquireRequest, Holder, InitOptions, JoinOptions, Lockspace, Mode};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let p = dir.join(format!("engine-{name}-{}.lockspace", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn init(path: &Path, io_ms: u64) {
    let mut o = InitOptions::new("test");
    o.max_hosts = 8;
    o.resource_slots = 16;
    o.io_timeout = Duration::from_millis(io_ms);
    engine::init::init(path, &o).unwrap();
}

fn req(identity: &str, mode: Mode, guest: &str) -> AcquireRequest {
    AcquireRequest { identity: identity.into(), mode, holder: Holder { uuid: [1; 16], name: guest.into() }, expect_lver: None }
}

#[test]
fn exclusive_is_exclusive_and_release_frees() {
    let path = scratch("excl");
    init(&path, 300);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let b = Lockspace::join(JoinOptions::new(&path, 2, "host-b")).unwrap();
    let lease = a.acquire(&req("file:/disk1", Mode::Exclusive, "vm1")).unwrap();
    assert_eq!(lease.lver, 1);
    // Idempotent on the holder.
    assert_eq!(a.acquire(&req("file:/disk1", Mode::Exclusive, "vm1")).unwrap(), lease);
    match b.acquire(&req("file:/disk1", Mode::Exclusive, "vm2")) {
        Err(Error::Busy(busy)) => {
            let msg = busy.to_string();
            assert!(msg.contains("vm1") && msg.contains("host-a") && msg.contains("file:/disk1"), "{msg}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    a.release(&lease).unwrap();
    let lb = b.acquire(&req("file:/disk1", Mode::Exclusive, "vm2")).unwrap();
    assert_eq!(lb.lver, 2);
    let who = b.who("file:/disk1").unwrap().unwrap();
    assert!(who.held && who.owner_id == 2 && who.holder.name == "vm2");
    // Hand-over with a stale expected version fails.
    b.release(&lb).unwrap();
    let mut stale = req("file:/disk1", Mode::Exclusive, "vm1");
    stale.expect_lver = Some(1);
    assert!(matches!(a.acquire(&stale), Err(Error::VersionMismatch { expected: 1, found: 2, .. })));
    stale.expect_lver = Some(2);
    assert_eq!(a.acquire(&stale).unwrap().lver, 3);
}

#[test]
fn shared_excludes_exclusive() {
    let path = scratch("shared");
    init(&path, 300);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let b = Lockspace::join(JoinOptions::new(&path, 2, "host-b")).unwrap();
    let sa = a.acquire(&req("file:/shared", Mode::Shared, "vm1")).unwrap();
    let sb = b.acquire(&req("file:/shared", Mode::Shared, "vm2")).unwrap();
    assert!(b.acquire(&req("file:/shared2", Mode::Exclusive, "x")).is_ok());
    let info = a.who("file:/shared").unwrap().unwrap();
    assert_eq!(info.shared.len(), 2);
    b.release(&sb).unwrap();
    let r = b.acquire(&req("file:/shared", Mode::Exclusive, "vm2"));
    assert!(matches!(r, Err(Error::Busy(_))), "{r:?}");
    a.release(&sa).unwrap();
    b.acquire(&req("file:/shared", Mode::Exclusive, "vm2")).unwrap();
    assert!(matches!(a.acquire(&req("file:/shared", Mode::Shared, "vm1")), Err(Error::Busy(_))));
}

#[test]
fn dead_host_lease_is_taken_only_after_host_dead() {
    let path = scratch("dead");
    init(&path, 300);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let b = Lockspace::join(JoinOptions::new(&path, 2, "host-b")).unwrap();
    a.acquire(&req("file:/d", Mode::Exclusive, "vm1")).unwrap();
    // Host a stops renewing without leaving: it "dies" holding the lease.
    let t = a.timeouts();
    a.stop();
    let died = std::time::Instant::now();
    loop {
        match b.acquire(&req("file:/d", Mode::Exclusive, "vm2")) {
            Ok(l) => {
                assert!(died.elapsed() >= t.lease_expiry, "taken over after {:?}, before a's lease expired", died.elapsed());
                assert_eq!(l.lver, 2);
                break;
            }
            Err(Error::Busy(_)) => {
                assert!(died.elapsed() < t.host_dead * 3, "never taken over");
                std::thread::sleep(t.renew_interval);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(b.hosts().iter().any(|h| h.host_id == 1 && h.state == HostState::Dead));
}

#[test]
fn clean_leave_makes_rejoin_fast_and_duplicate_id_is_refused() {
    let path = scratch("join");
    init(&path, 1000);
    let a = Lockspace::join(JoinOptions::new(&path, 3, "host-a")).unwrap();
    let g1 = a.generation();
    a.leave().unwrap();
    let t0 = std::time::Instant::now();
    let a = Lockspace::join(JoinOptions::new(&path, 3, "host-a")).unwrap();
    assert!(t0.elapsed() < Duration::from_millis(500), "rejoin took {:?}", t0.elapsed());
    assert_eq!(a.generation(), g1 + 1);
    // Another host configured with the same id sees the slot renewing.
    match Lockspace::join(JoinOptions::new(&path, 3, "host-z")) {
        Err(Error::HostIdBusy { holder, .. }) => assert_eq!(holder, "host-a"),
        other => panic!("expected HostIdBusy, got {:?}", other.err()),
    }
    assert!(matches!(Lockspace::join(JoinOptions::new(&path, 9, "host-z")), Err(Error::HostIdOutOfRange { .. })));
}
