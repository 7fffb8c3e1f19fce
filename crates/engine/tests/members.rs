//! A lockspace on three devices (three O_DIRECT files): one member may
//! fail, hang or lag without any host losing its lease; two members away
//! is no majority. docs/SAFETY.md, "A lockspace on several devices".

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::clock::Mono;
use engine::error::{Error, IoOp};
use engine::storage::{Fault, FaultHook};
use engine::{AcquireRequest, Health, Holder, InitOptions, JoinOptions, Lockspace, Mode};

const IO_MS: u64 = 200;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(format!("members-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options() -> InitOptions {
    let mut o = InitOptions::new("trio");
    o.max_hosts = 8;
    o.resource_slots = 16;
    o.io_timeout = Duration::from_millis(IO_MS);
    o
}

fn set(name: &str) -> Vec<PathBuf> {
    let dir = scratch(name);
    let members: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("m{i}"))).collect();
    engine::init::init_members(&members, &options()).unwrap();
    members
}

fn req(identity: &str, guest: &str) -> AcquireRequest {
    AcquireRequest { identity: identity.into(), mode: Mode::Exclusive, holder: Holder { uuid: [1; 16], name: guest.into() }, expect_lver: None }
}

/// Faults per member, switchable while hosts run: a bit mask of members
/// whose I/O fails, and one whose I/O hangs.
#[derive(Default)]
struct MemberFaults {
    failing: AtomicU64,
    hung: AtomicU64,
}

impl FaultHook for MemberFaults {
    fn on_io(&self, member: usize, _op: IoOp, _sector: u64, _count: u64) -> Fault {
        if self.hung.load(Ordering::Relaxed) & (1 << member) != 0 {
            Fault::Delay(Duration::from_secs(3600))
        } else if self.failing.load(Ordering::Relaxed) & (1 << member) != 0 {
            Fault::Fail
        } else {
            Fault::Proceed
        }
    }
}

fn join(members: &[PathBuf], id: u32, faults: &Arc<MemberFaults>) -> Lockspace {
    let mut o = JoinOptions::members(members.to_vec(), id, &format!("host-{id}"));
    o.fault = Some(faults.clone());
    Lockspace::join(o).unwrap()
}

/// Waits (polling) until `cond` holds; fails the test at the deadline.
fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Mono::now().add(deadline);
    while !cond() {
        assert!(Mono::now() < end, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn one_hung_member_fences_no_one_and_leases_keep_working() {
    let members = set("hung");
    let faults = Arc::new(MemberFaults::default());
    let a = join(&members, 1, &faults);
    let b = join(&members, 2, &faults);
    let lease = a.acquire(&req("file:/trio/disk1", "vm1")).unwrap();
    faults.hung.store(1 << 1, Ordering::Relaxed);
    // Past the point where a one-device lockspace would fence (3.5 T),
    // both hosts renew on the two members left.
    let t = a.timeouts();
    let until = Mono::now().add(t.lease_expiry + t.io_timeout);
    while Mono::now() < until {
        for ls in [&a, &b] {
            assert!(matches!(ls.health(), Health::Healthy { .. }), "host {} with one member hung: {:?}", ls.host_id(), ls.health());
        }
        std::thread::sleep(t.renew_interval / 4);
    }
    assert!(a.members().iter().any(|m| m.member == 1 && m.state == engine::storage::MemberHealth::Hung), "{:?}", a.members());
    // Refusals still name the holder; release and take-over still work.
    match b.acquire(&req("file:/trio/disk1", "vm2")) {
        Err(Error::Busy(busy)) => assert!(busy.to_string().contains("vm1") && busy.to_string().contains("host-1"), "{busy}"),
        other => panic!("expected a refusal naming vm1, got {other:?}"),
    }
    a.release(&lease).unwrap();
    assert_eq!(b.acquire(&req("file:/trio/disk1", "vm2")).unwrap().lver, 2);
}

#[test]
fn two_members_away_is_no_majority() {
    let members = set("two-away");
    let faults = Arc::new(MemberFaults::default());
    let a = join(&members, 1, &faults);
    faults.failing.store(0b011, Ordering::Relaxed);
    match a.acquire(&req("file:/trio/disk2", "vm1")) {
        Err(Error::NoMajority { reached, members: 3, majority: 2, why, .. }) => {
            assert!(reached < 2, "reached {reached}");
            assert!(why.contains("member 1 (") && why.contains("member 2 ("), "{why}");
        }
        other => panic!("expected NoMajority, got {other:?}"),
    }
    wait_until("renewals failing without a majority", a.timeouts().fence_begin, || matches!(a.health(), Health::Failing { .. }));
    faults.failing.store(0, Ordering::Relaxed);
    wait_until("renewals recover with the majority back", a.timeouts().fence_begin, || matches!(a.health(), Health::Healthy { .. }));
    a.acquire(&req("file:/trio/disk2", "vm1")).unwrap();
}

/// Host A cannot reach member 1, host B cannot reach member 3: each works
/// on its own majority, and the two meet on member 2.
#[test]
fn hosts_on_different_majorities_see_each_other() {
    let members = set("split");
    let (fa, fb) = (Arc::new(MemberFaults::default()), Arc::new(MemberFaults::default()));
    fa.failing.store(0b001, Ordering::Relaxed);
    fb.failing.store(0b100, Ordering::Relaxed);
    let a = join(&members, 1, &fa);
    let b = join(&members, 2, &fb);
    let lease = a.acquire(&req("file:/trio/disk3", "vm1")).unwrap();
    assert!(matches!(b.acquire(&req("file:/trio/disk3", "vm2")), Err(Error::Busy(_))));
    wait_until("B sees A live", Duration::from_secs(5), || b.hosts().iter().any(|h| h.host_id == 1 && h.state == engine::delta_lease::HostState::Live));
    a.release(&lease).unwrap();
    let taken = b.acquire(&req("file:/trio/disk3", "vm2")).unwrap();
    assert_eq!(taken.lver, 2);
    assert!(matches!(a.acquire(&req("file:/trio/disk3", "vm1")), Err(Error::Busy(_))));
}

/// A member that missed writes (it failed for a while) is only behind:
/// once back, the newest copy on the others still decides.
#[test]
fn a_member_that_missed_writes_is_outvoted_by_newer_copies() {
    let members = set("lagging");
    let faults = Arc::new(MemberFaults::default());
    let a = join(&members, 1, &faults);
    let b = join(&members, 2, &faults);
    let first = a.acquire(&req("file:/trio/disk4", "vm1")).unwrap();
    faults.failing.store(0b100, Ordering::Relaxed);
    a.release(&first).unwrap();
    let second = b.acquire(&req("file:/trio/disk4", "vm2")).unwrap();
    faults.failing.store(0, Ordering::Relaxed);
    // Member 3 still shows vm1 holding version 1.
    let who = a.who("file:/trio/disk4").unwrap().unwrap();
    assert!(who.held && who.owner_id == 2 && who.lver == second.lver, "{who:?}");
    assert!(matches!(a.acquire(&req("file:/trio/disk4", "vm1")), Err(Error::Busy(_))));
}

#[test]
fn sets_are_checked_when_formatted_and_opened() {
    let dir = scratch("checks");
    let two = [dir.join("x1"), dir.join("x2")];
    assert!(matches!(engine::init::init_members(&two, &options()), Err(Error::InvalidInit { what, .. }) if what.contains("1, 3 or 5")));
    let twice = [dir.join("y1"), dir.join("y2"), dir.join("y1")];
    std::fs::write(&twice[0], b"").unwrap();
    match engine::init::init_members(&twice, &options()) {
        Err(Error::InvalidInit { what, .. }) => assert!(what.contains("same file"), "{what}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!twice[1].exists(), "a refused init must write nothing");

    let members = set("opened");
    // A member alone is not the lockspace.
    match engine::lockspace::open_members(&members[..1], false) {
        Err(Error::BadMemberSet { what, .. }) => assert!(what.contains("member 1 of the 3 devices") && what.contains("name all of them"), "{what}"),
        other => panic!("expected BadMemberSet, got {:?}", other.map(|(_, h)| h)),
    }
    // Any order: the header says which member is which.
    let shuffled = vec![members[2].clone(), members[0].clone(), members[1].clone()];
    let (storage, header) = engine::lockspace::open_members(&shuffled, false).unwrap();
    assert_eq!(header.members, 3);
    assert_eq!(storage.paths(), members);
    // A member of another lockspace.
    let other = set("other");
    let mixed = vec![members[0].clone(), members[1].clone(), other[2].clone()];
    assert!(matches!(engine::lockspace::open_members(&mixed, false), Err(Error::BadMemberSet { what, .. }) if what.contains("is not a member of lockspace")));
    // One member gone: degraded, and says so; two gone: refused.
    std::fs::remove_file(&members[1]).unwrap();
    let (storage, _) = engine::lockspace::open_members(&members, false).unwrap();
    assert!(storage.member_states().iter().any(|m| m.state == engine::storage::MemberHealth::Missing && m.error.as_deref().is_some_and(|e| e.contains("No such file"))), "{:?}", storage.member_states());
    std::fs::remove_file(&members[2]).unwrap();
    match engine::lockspace::open_members(&members, false) {
        Err(Error::BadMemberSet { what, .. }) => assert!(what.contains("only 1 of the 3 devices") && what.contains("a majority is 2"), "{what}"),
        other => panic!("expected BadMemberSet, got {:?}", other.map(|(_, h)| h)),
    }
    // Each member on its own still dumps, naming its place.
    let dump = engine::direct::dump(&members[0]).unwrap();
    assert_eq!((dump.member, dump.members), (1, 3));
}

/// A member away during a rejoin still holds the slot's older history when
/// it answers again (our previous generation): that is not another writer.
#[test]
fn a_member_back_with_our_slot_from_before_the_join_is_not_another_writer() {
    let members = set("back");
    let faults = Arc::new(MemberFaults::default());
    let first = join(&members, 1, &faults);
    faults.failing.store(0b100, Ordering::Relaxed);
    first.leave().unwrap();
    let again = join(&members, 1, &faults);
    assert_eq!(again.generation(), 2);
    faults.failing.store(0, Ordering::Relaxed);
    let reads_of_third = || again.member_io_counts()[2].map_or(0, |(reads, _)| reads);
    let healed_at = reads_of_third();
    wait_until("renewals read the third member again", Duration::from_secs(10), || reads_of_third() >= healed_at + 4);
    assert!(matches!(again.health(), Health::Healthy { .. }), "{:?}", again.health());
    again.acquire(&req("file:/trio/disk5", "vm1")).unwrap();
}

/// A write that reached a majority may still be running on the third
/// member; an acquire right after a release must not take that for a
/// write of unknown outcome (it did, about one round in five, before).
#[test]
fn back_to_back_acquires_on_a_healthy_set_all_succeed() {
    let members = set("back-to-back");
    let a = join(&members, 1, &Arc::new(MemberFaults::default()));
    for round in 0..200 {
        let lease = a.acquire(&req("file:/trio/disk6", "vm1")).unwrap_or_else(|e| panic!("round {round}: acquire: {e}"));
        a.release(&lease).unwrap_or_else(|e| panic!("round {round}: release: {e}"));
    }
}
