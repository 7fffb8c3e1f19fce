//! One host id, two writers: a second process configured with a host id in
//! use (another daemon on this machine, a cloned or reinstalled machine) is
//! refused at join, and a writer that overwrites our slot anyway is caught
//! at our next renewal. Real O_DIRECT files, several `Lockspace`s in one
//! process; the foreign writer writes the sector directly.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::delta_lease::HostState;
use engine::error::Error;
use engine::format::{HostSlot, Leader, LeaseValue};
use engine::timing::Timeouts;
use engine::{AcquireRequest, Health, Holder, InitOptions, JoinOptions, Lockspace, Mode};
use testkit::daemon_harness::wait_for;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let p = dir.join(format!("host-id-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn init(dir: &Path, io_ms: u64) -> (PathBuf, Timeouts) {
    let path = dir.join("lockspace");
    let mut o = InitOptions::new("ids");
    o.max_hosts = 4;
    o.resource_slots = 4;
    o.io_timeout = Duration::from_millis(io_ms);
    engine::init::init(&path, &o).unwrap();
    (path, Timeouts::new(o.io_timeout).unwrap())
}


fn slot_bytes(path: &Path, host_id: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    std::fs::File::open(path).unwrap().read_exact_at(&mut b, 512 * host_id as u64).unwrap();
    b
}

fn write_slot(path: &Path, host_id: u32, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, 512 * host_id as u64).unwrap();
    f.sync_data().unwrap();
}

fn read_slot(path: &Path, host_id: u32) -> Option<HostSlot> {
    HostSlot::decode(&slot_bytes(path, host_id)).unwrap()
}

/// Another machine's record for `host_id`, as a second writer would write it.
fn intruder(path: &Path, host_id: u32) -> HostSlot {
    let mine = read_slot(path, host_id).unwrap();
    HostSlot { generation: mine.generation + 1, renewal: 1, nonce: [0x5a; 16], machine_id: [0xc1; 16], host_name: "intruder".into(), ..mine }
}

#[test]
fn a_second_process_with_our_host_id_and_host_name_is_refused() {
    let dir = scratch("twin");
    let (path, _) = init(&dir, 300);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let before = read_slot(&path, 1).unwrap();
    // Same host id, host name and machine id: only a predecessor's own
    // state may prove "this is me restarting"; this one has none.
    let mut twin = JoinOptions::new(&path, 1, "host-a");
    twin.state_dir = Some(dir.join("twin-state"));
    match Lockspace::join(twin) {
        Err(e @ Error::HostIdBusy { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("in use by host \"host-a\"") && msg.contains("unique host_id"), "{msg}");
            assert!(msg.contains("another highlanderd on this machine or a clone of this machine"), "{msg}");
        }
        other => panic!("a second writer of host id 1 joined: {:?}", other.map(|l| l.generation())),
    }
    assert!(matches!(a.health(), Health::Healthy { .. }), "{:?}", a.health());
    let after = read_slot(&path, 1).unwrap();
    assert_eq!((after.generation, after.nonce), (before.generation, before.nonce), "the refused joiner wrote our slot");
}

#[test]
fn another_writer_of_our_slot_is_caught_at_the_next_renewal() {
    let dir = scratch("overwrite");
    // renew_interval 500 ms: the foreign write lands right after one of
    // our renewals, long before the next one reads the slot.
    let (path, t) = init(&dir, 1000);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let seen = read_slot(&path, 1).unwrap().renewal;
    wait_for("a renewal", t.renew_interval * 4, || (read_slot(&path, 1).unwrap().renewal > seen).then_some(()));
    write_slot(&path, 1, &intruder(&path, 1).encode());
    let why = wait_for("the host lease to be lost", t.renew_interval * 3, || match a.health() {
        Health::Lost { why } => Some(why),
        _ => None,
    });
    assert!(why.contains("another writer uses host id 1") && why.contains("\"intruder\"") && why.contains("unique"), "{why}");
    // A lost host lease backs nothing, and our slot is left as found.
    let e = a.acquire(&AcquireRequest { identity: "file:/d".into(), mode: Mode::Exclusive, holder: Holder::default(), expect_lver: None }).unwrap_err();
    assert!(matches!(e, Error::HostLeaseLost { .. }), "{e}");
    assert_eq!(read_slot(&path, 1).unwrap().host_name, "intruder");
    // Leaving must not mark the intruder's slot free either.
    a.leave().unwrap();
    assert_eq!(read_slot(&path, 1).unwrap().host_name, "intruder");
}

#[test]
fn leave_does_not_free_a_slot_another_writer_holds() {
    let dir = scratch("leave");
    let (path, _) = init(&dir, 1000);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    write_slot(&path, 1, &intruder(&path, 1).encode());
    a.leave().unwrap();
    let slot = read_slot(&path, 1).unwrap();
    assert!(!slot.free && slot.host_name == "intruder", "{slot:?}");
}

#[test]
fn a_fast_rejoin_needs_proof_of_the_predecessor() {
    let dir = scratch("rejoin");
    let (path, t) = init(&dir, 300);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let proof = { a.clone().stop(); a.incarnation() };
    // Same name, no proof: watch the slot for host_dead first.
    let t0 = Instant::now();
    let b = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    assert!(t0.elapsed() >= t.host_dead, "joined a held slot in {:?} without proof", t0.elapsed());
    assert_eq!(b.generation(), a.generation() + 1);
    b.clone().stop();
    // A stale proof (a's, not b's last write) is no proof.
    let mut stale = JoinOptions::new(&path, 1, "host-a");
    stale.predecessor = Some(proof);
    let t0 = Instant::now();
    let c = Lockspace::join(stale).unwrap();
    assert!(t0.elapsed() >= t.host_dead, "a stale proof took the fast path");
    c.clone().stop();
    // The predecessor's exact last write: fast.
    let mut proven = JoinOptions::new(&path, 1, "host-a");
    proven.predecessor = Some(c.incarnation());
    let t0 = Instant::now();
    let d = Lockspace::join(proven).unwrap();
    assert!(t0.elapsed() < t.host_dead, "a proven rejoin waited {:?}", t0.elapsed());
    assert_eq!(d.generation(), c.generation() + 1);
    d.leave().unwrap();
}

#[test]
fn the_resume_state_proves_the_predecessor_after_the_resume_window() {
    let dir = scratch("resume-proof");
    let (path, t) = init(&dir, 300);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut opts = JoinOptions::new(&path, 1, "host-a");
    opts.state_dir = Some(state.clone());
    let a = Lockspace::join(opts.clone()).unwrap();
    a.clone().stop();
    let stopped = Instant::now();
    // Past fence_begin no resume is allowed, but the saved state still
    // names the slot's last write: a new generation, without the wait.
    wait_for("fence_begin to pass", t.fence_begin * 2, || (stopped.elapsed() > t.fence_begin).then_some(()));
    let t0 = Instant::now();
    let b = Lockspace::join(opts).unwrap();
    assert!(!b.resumed() && b.generation() == a.generation() + 1);
    assert!(t0.elapsed() < t.host_dead, "rejoin with a matching resume state waited {:?}", t0.elapsed());
    b.leave().unwrap();
}

#[test]
fn a_corrupt_peer_slot_shows_as_corrupt_and_counts_as_live() {
    let dir = scratch("corrupt-peer");
    let (path, t) = init(&dir, 300);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let b = Lockspace::join(JoinOptions::new(&path, 2, "host-b")).unwrap();
    let lease = b.acquire(&AcquireRequest { identity: "file:/d".into(), mode: Mode::Exclusive, holder: Holder::default(), expect_lver: None }).unwrap();
    b.clone().stop();
    let mut torn = slot_bytes(&path, 2);
    torn[100] ^= 0xff;
    write_slot(&path, 2, &torn);
    wait_for("host 2 to show corrupt", t.renew_interval * 4, || a.hosts().into_iter().find(|h| h.host_id == 2 && h.state == HostState::Corrupt));
    // Counted as live: its lease is not taken, even after host_dead.
    let quiet = Instant::now();
    wait_for("host_dead to pass", t.host_dead * 2, || (quiet.elapsed() > t.host_dead + t.renew_interval).then_some(()));
    let e = a.acquire(&AcquireRequest { identity: "file:/d".into(), mode: Mode::Exclusive, holder: Holder::default(), expect_lver: None }).unwrap_err();
    assert!(matches!(e, Error::Busy(_)), "{e}");
    assert_eq!(lease.slot, a.who("file:/d").unwrap().unwrap().slot);
}

#[test]
fn our_own_corrupt_slot_is_rewritten_by_the_next_renewal() {
    let dir = scratch("corrupt-own");
    let (path, t) = init(&dir, 300);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let mut torn = slot_bytes(&path, 1);
    torn[100] ^= 0xff;
    write_slot(&path, 1, &torn);
    let slot = wait_for("the slot to be rewritten", t.renew_interval * 4, || HostSlot::decode(&slot_bytes(&path, 1)).ok().flatten());
    assert_eq!(slot.generation, a.generation());
    assert!(matches!(a.health(), Health::Healthy { .. }), "{:?}", a.health());
}

#[test]
fn a_record_naming_host_id_zero_is_judged_without_panicking() {
    let dir = scratch("host-zero");
    let (path, _) = init(&dir, 300);
    let a = Lockspace::join(JoinOptions::new(&path, 1, "host-a")).unwrap();
    let b = Lockspace::join(JoinOptions::new(&path, 2, "host-b")).unwrap();
    let req = AcquireRequest { identity: "file:/zero".into(), mode: Mode::Exclusive, holder: Holder::default(), expect_lver: None };
    let lease = a.acquire(&req).unwrap();
    // The leader, rewritten with a checksum-valid owner of host id 0.
    let sector = a.header().layout().resource_base(lease.slot);
    let mut raw = [0u8; 512];
    std::fs::File::open(&path).unwrap().read_exact_at(&mut raw, 512 * sector).unwrap();
    let leader = Leader::decode(&raw).unwrap().unwrap();
    let forged = Leader { value: LeaseValue { owner_id: 0, ..leader.value.clone() }, ..leader };
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&forged.encode(), 512 * sector).unwrap();
    f.sync_data().unwrap();
    assert!(b.who("file:/zero").unwrap().is_some());
    // Host id 0 names no slot, so no host: its owner cannot be judged gone.
    assert!(matches!(b.acquire(&req), Err(Error::Busy(_))));
    let dump = engine::direct::who(std::slice::from_ref(&path), "file:/zero").unwrap();
    assert!(dump.is_some());
}
