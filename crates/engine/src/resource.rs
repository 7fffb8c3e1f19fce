//! Resource leases: naming a disk's slot, acquiring it exclusive or shared,
//! releasing it. The agreement itself is `paxos_lease`; this file decides
//! *when* a ballot may run (is the current owner gone?) and what a refusal
//! says.
//!
//! Slots are found by hashing the resource's identity (SHA-256) into the
//! lockspace's table with linear probing. A never-used slot is named by the
//! ballot for its first lease version: the chosen value carries the key, so
//! two hosts naming one slot at once agree on a single name and the loser
//! probes on. Names are never removed, so probe chains never break.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use sha2::{Digest, Sha256};

use crate::clock::unix_now;
use crate::delta_lease::{HostState, Peers};
use crate::error::{Error, Result};
use crate::format::{Dblock, Header, Holder, Leader, LeaseValue, KEY_LEN};
use crate::paxos_lease::{BallotOutcome, BallotSite, ResourceArea};
use crate::storage::Storage;
pub use crate::lease_info::{describe_holder, Busy, LeaseInfo, SharedHolder};

pub use proto::Mode;

#[derive(Clone, Debug)]
pub struct AcquireRequest {
    /// The disk's stable identity, e.g. `wwid:naa.600…` or `file:/srv/vm.img`.
    pub identity: String,
    pub mode: Mode,
    pub holder: Holder,
    /// Fail unless the lease is still at this version (hand-over, restore).
    pub expect_lver: Option<u64>,
}

/// A lease this host holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub lockspace: String,
    pub identity: String,
    pub key: [u8; KEY_LEN],
    pub slot: u32,
    pub lver: u64,
    pub mode: Mode,
    pub generation: u64,
}


pub fn key_of(identity: &str) -> [u8; KEY_LEN] {
    Sha256::digest(identity.as_bytes()).into()
}

/// The slot names this host has seen. A slot's name is chosen by its first
/// ballot and never changes, so it can be remembered for good: probing then
/// skips slots known to belong to other disks without reading them.
#[derive(Default)]
pub struct SlotNames {
    by_key: HashMap<[u8; KEY_LEN], u32>,
    by_slot: HashMap<u32, [u8; KEY_LEN]>,
}

impl SlotNames {
    fn learn(&mut self, slot: u32, key: [u8; KEY_LEN]) {
        self.by_key.insert(key, slot);
        self.by_slot.insert(slot, key);
    }

    fn named_other(&self, slot: u32, key: &[u8; KEY_LEN]) -> bool {
        self.by_slot.get(&slot).is_some_and(|k| k != key)
    }
}

/// The versions this host released, by slot: storage can show one of them
/// as ours again (another host's late commit of our value, docs/SAFETY.md
/// "A commit landing after the release"), and only we know it is over.
#[derive(Default)]
pub struct Released(HashMap<u32, u64>);

impl Released {
    fn note(&mut self, slot: u32, lver: u64) {
        self.0.insert(slot, lver);
    }

    fn contains(&self, slot: u32, lver: u64) -> bool {
        self.0.get(&slot) == Some(&lver)
    }
}

fn first_slot(key: &[u8; KEY_LEN], slots: u32) -> u32 {
    (u64::from_le_bytes(key[..8].try_into().unwrap()) % slots as u64) as u32
}

/// Everything an acquire or release needs from the joined lockspace.
pub struct Ctx<'a> {
    pub storage: &'a Storage,
    pub header: &'a Header,
    pub host_id: u32,
    pub generation: u64,
    pub host_name: &'a str,
    pub peers: &'a Mutex<Peers>,
    /// key -> slot, for names already found (names never move).
    pub slots: &'a Mutex<SlotNames>,
    /// One per resource slot: this host runs one ballot (writes its one
    /// dblock) per slot at a time, whatever the number of callers.
    pub slot_locks: &'a [Mutex<()>],
    pub released: &'a Mutex<Released>,
    pub backoff_max: Duration,
}

const MAX_BALLOTS: u32 = 12;

impl Ctx<'_> {
    fn site(&self, slot: u32) -> BallotSite<'_> {
        BallotSite { storage: self.storage, layout: self.header.layout(), slot, host_id: self.host_id, lockspace_uuid: self.header.uuid }
    }

    fn backoff(&self) {
        let r = u64::from_le_bytes(crate::sys::random_bytes()[..8].try_into().unwrap());
        let max = self.backoff_max.as_micros().max(1) as u64;
        std::thread::sleep(Duration::from_micros(r % max));
    }

    /// Describes a resource, judging hosts with our observations.
    fn info(&self, slot: u32, area: &ResourceArea) -> LeaseInfo {
        let peers = self.peers.lock();
        describe(self.header, slot, area, |id, generation| {
            if id == self.host_id && generation == self.generation {
                return (self.host_name.to_owned(), HostState::Live);
            }
            // A slot last read before that generation's join says nothing
            // about the host now (it showed free, or an older incarnation).
            let Some(record) = peers.record(id).filter(|r| r.generation >= generation) else {
                return (String::new(), HostState::Unknown);
            };
            let state = if peers.owner_gone(id, generation) { HostState::Dead } else { peers.state(id) };
            (record.host_name.clone(), state)
        })
    }

    fn busy(&self, slot: u32, area: &ResourceArea) -> Error {
        let info = self.info(slot, area);
        let takeover_in_ms = info.held.then(|| self.peers.lock().takeover_in(info.owner_id)).flatten().map(|d| d.as_millis() as u64);
        Error::Busy(Box::new(Busy { info, takeover_in_ms }))
    }

    /// Is the lease in `area` held by a host that may still be using it?
    fn held_by_other(&self, area: &ResourceArea) -> bool {
        let Some(leader) = &area.leader else { return false };
        if !effectively_held(leader, &area.dblocks) {
            return false;
        }
        let v = &leader.value;
        if v.owner_id == self.host_id {
            // Our own: older generations are void; ours now is ours.
            return false;
        }
        !self.peers.lock().owner_gone(v.owner_id, v.owner_generation)
    }

    /// The value names this host at its current generation. (The holder or
    /// time may differ: an earlier, overtaken attempt of ours can be the one
    /// chosen, and it is just as much ours.)
    fn is_ours(&self, v: &LeaseValue, key: &[u8; KEY_LEN]) -> bool {
        v.owner_id == self.host_id && v.owner_generation == self.generation && &v.key == key
    }

    /// Does anyone else (another host, or a current registration of ours)
    /// hold the resource shared?
    fn live_shared_holders(&self, area: &ResourceArea) -> bool {
        let peers = self.peers.lock();
        area.dblocks.iter().filter(|d| d.shared).any(|d| {
            if d.host_id == self.host_id {
                d.shared_generation == self.generation
            } else {
                !peers.owner_gone(d.host_id, d.shared_generation)
            }
        })
    }

    pub fn acquire(&self, req: &AcquireRequest) -> Result<Lease> {
        let key = key_of(&req.identity);
        let value = LeaseValue {
            owner_id: self.host_id,
            owner_generation: self.generation,
            acquired_unix: unix_now(),
            key,
            identity: req.identity.clone(),
            holder: req.holder.clone(),
        };
        let lease = |slot, lver| Lease {
            lockspace: self.header.name.clone(),
            identity: req.identity.clone(),
            key,
            slot,
            lver,
            mode: req.mode,
            generation: self.generation,
        };
        for _ in 0..MAX_BALLOTS {
            let (slot, mut area, guard) = match self.locate(&key, req, &value)? {
                Located::Found(slot, area, guard) => (slot, area, guard),
                Located::Won(slot, area, _guard) => return self.finish(req, slot, area, 1).map(|()| lease(slot, 1)),
                Located::Retry => {
                    self.backoff();
                    continue;
                }
            };
            let leader = area.leader.clone().expect("located slots are named");
            let lver = ballot_version(&leader, &area.dblocks);
            // Idempotent: a repeated acquire of what we hold succeeds, but
            // nothing we read while a write of ours to this lease was in
            // flight proves it: a timed-out release landing after the read
            // frees the lease under us (docs/SAFETY.md, "A release still in
            // flight").
            if area.own_write_in_flight {
                return Err(Error::IoOutstanding { path: self.storage.path().to_owned(), op: crate::error::IoOp::Write, sector: self.header.layout().resource_base(slot) });
            }
            if let Some(held) = already_held(req.mode, &leader, &area.dblocks, self.host_id, self.generation, || self.live_shared_holders(&area)) {
                if !(req.mode == Mode::Exclusive && self.released.lock().contains(slot, held)) {
                    return Ok(lease(slot, held));
                }
            }
            // A holder is named first: it is the more useful refusal.
            if self.held_by_other(&area) {
                if leader.short_hold {
                    drop(guard);
                    self.backoff();
                    continue;
                }
                return Err(self.busy(slot, &area));
            }
            if let Some(expected) = req.expect_lver {
                if lver != expected + 1 {
                    let i = self.info(slot, &area);
                    let taker = format!("{} on host {} \"{}\" at {}", describe_holder(&i.holder), i.owner_id, i.owner_name, crate::clock::format_unix(i.since_unix));
                    return Err(Error::VersionMismatch { identity: req.identity.clone(), expected, found: lver - 1, taker });
                }
            }
            if req.mode == Mode::Exclusive && self.live_shared_holders(&area) {
                return Err(self.busy(slot, &area));
            }
            match self.site(slot).run(lver, &value, &mut area)? {
                BallotOutcome::Aborted => {
                    drop(guard);
                    self.backoff();
                    continue;
                }
                BallotOutcome::Chosen(chosen) => {
                    self.commit(slot, lver, &chosen, req.mode)?;
                    area.leader = Some(Leader { held: true, lver, writer_id: self.host_id, lockspace_uuid: self.header.uuid, short_hold: false, value: chosen.clone() });
                    if !self.is_ours(&chosen, &key) {
                        return Err(self.busy(slot, &area));
                    }
                    // Our value chosen again for a version we had released
                    // (the ballot repaired a rolled-back leader): that
                    // version is over, not granted; the next one is balloted.
                    // Our dblock's mark says so, unless that write was lost;
                    // our memory of the release says so in any case.
                    if !effectively_held(area.leader.as_ref().expect("just committed"), &area.dblocks) || self.released.lock().contains(slot, lver) {
                        drop(guard);
                        continue;
                    }
                    return self.finish(req, slot, area, lver).map(|()| lease(slot, lver));
                }
            }
        }
        Err(Error::Contended { identity: req.identity.clone(), attempts: MAX_BALLOTS })
    }

    /// Writes the leader for a chosen value.
    fn commit(&self, slot: u32, lver: u64, chosen: &LeaseValue, mode: Mode) -> Result<()> {
        let short_hold = mode == Mode::Shared && chosen.owner_id == self.host_id;
        self.site(slot).write_leader(&Leader { held: true, short_hold, lver, writer_id: self.host_id, lockspace_uuid: self.header.uuid, value: chosen.clone() })
    }

    /// After our value won `lver`: an exclusive lease checks for shared
    /// holders; a shared one registers its mode block and frees the leader.
    fn finish(&self, req: &AcquireRequest, slot: u32, area: ResourceArea, lver: u64) -> Result<()> {
        let site = self.site(slot);
        let leader = area.leader.clone().expect("a won ballot has a leader");
        match req.mode {
            Mode::Exclusive => {
                if self.live_shared_holders(&area) {
                    // Our hold of `lver` ends here: remembered as a release,
                    // so a late commit of our value is no grant later.
                    self.released.lock().note(slot, lver);
                    site.write_leader(&Leader { held: false, writer_id: self.host_id, ..leader })?;
                    return Err(self.busy(slot, &area));
                }
                Ok(())
            }
            Mode::Shared => {
                // The short hold of `lver` is over whatever the writes below
                // do. Another host's late commit of our value writes it
                // without the short-hold flag (the value does not carry the
                // mode), which would later read as our exclusive hold of
                // `lver`: remembered as a release, it is none (docs/SAFETY.md,
                // "A commit landing after the release").
                self.released.lock().note(slot, lver);
                let mine = area.dblocks[self.host_id as usize - 1].clone();
                let registered = Dblock { shared: true, shared_generation: self.generation, released: true, lver, ..mine.clone() };
                let freed = Leader { held: false, short_hold: false, writer_id: self.host_id, ..leader };
                site.write_dblock(&registered).and_then(|()| site.write_leader(&freed)).inspect_err(|_| {
                    // Undo what we can, so our short hold does not block
                    // everyone until we rejoin; failures here change nothing.
                    let _ = site.write_dblock(&Dblock { shared: false, shared_generation: 0, released: true, lver, ..mine });
                    let _ = site.write_leader(&freed);
                })
            }
        }
    }

    /// Finds the slot named `key`, naming a fresh one if needed; the slot is
    /// returned locked.
    fn locate(&self, key: &[u8; KEY_LEN], req: &AcquireRequest, value: &LeaseValue) -> Result<Located<'_>> {
        let slots = self.header.resource_slots;
        let start = self.slots.lock().by_key.get(key).copied().unwrap_or_else(|| first_slot(key, slots));
        for i in 0..slots {
            let slot = (start + i) % slots;
            if self.slots.lock().named_other(slot, key) {
                continue;
            }
            let guard = self.slot_locks[slot as usize].lock();
            let site = self.site(slot);
            let mut area = site.read_area()?;
            if let Some(l) = &area.leader {
                self.slots.lock().learn(slot, l.value.key);
                if &l.value.key == key {
                    return Ok(Located::Found(slot, area, guard));
                }
                continue;
            }
            // Never named: the ballot for version 1 names it.
            if let Some(expected) = req.expect_lver.filter(|&e| e != 0) {
                let taker = "nobody: the lockspace has no record of this disk (was it re-initialised?)".to_owned();
                return Err(Error::VersionMismatch { identity: req.identity.clone(), expected, found: 0, taker });
            }
            match site.run(1, value, &mut area)? {
                BallotOutcome::Aborted => return Ok(Located::Retry),
                BallotOutcome::Chosen(chosen) => {
                    self.commit(slot, 1, &chosen, req.mode)?;
                    area.leader = Some(Leader { held: true, short_hold: false, lver: 1, writer_id: self.host_id, lockspace_uuid: self.header.uuid, value: chosen.clone() });
                    self.slots.lock().learn(slot, chosen.key);
                    if &chosen.key != key {
                        continue;
                    }
                    if !self.is_ours(&chosen, key) {
                        return Err(self.busy(slot, &area));
                    }
                    return Ok(Located::Won(slot, area, guard));
                }
            }
        }
        Err(Error::Full { lockspace: self.header.name.clone(), slots })
    }

    pub fn release(&self, lease: &Lease) -> Result<()> {
        let _guard = self.slot_locks[lease.slot as usize].lock();
        let site = self.site(lease.slot);
        let area = site.read_area()?;
        let mine = area.dblocks[self.host_id as usize - 1].clone();
        match lease.mode {
            Mode::Shared => {
                if !(mine.shared && mine.shared_generation == lease.generation) {
                    return Ok(());
                }
                site.write_dblock(&Dblock { shared: false, shared_generation: 0, ..mine })
            }
            Mode::Exclusive => {
                // Whatever storage shows, this version is over for us.
                self.released.lock().note(lease.slot, lease.lver);
                let Some(leader) = area.leader else { return Ok(()) };
                let ours = leader.lver == lease.lver && leader.value.owner_id == self.host_id && leader.value.owner_generation == lease.generation;
                // Our dblock records the release for good: a leader naming us
                // that another host's late commit writes back afterwards then
                // still reads as released, to us and to peers (docs/SAFETY.md,
                // "A commit landing after the release"). Only at the lease's
                // own version: our dblock never goes back.
                let recorded = Dblock { released: true, inp: leader.value.clone(), ..mine.clone() };
                let record = ours && mine.lver == lease.lver && mine != recorded;
                let free = ours && leader.held;
                if !free && !record {
                    return Ok(());
                }
                let freed = Leader { held: false, short_hold: false, writer_id: self.host_id, ..leader.clone() };
                // Both at once: with the slot locked, their order changes
                // nothing, and the release costs one I/O's time.
                let (dblock, leader_write) = std::thread::scope(|scope| {
                    let freeing = free.then(|| scope.spawn(|| site.write_leader(&freed)));
                    let dblock = if record { site.write_dblock(&recorded) } else { Ok(()) };
                    (dblock, freeing.map_or(Ok(()), |h| h.join().expect("leader write thread")))
                });
                // Either write frees the lease for peers; only the dblock
                // makes it final, so its failure is the one reported (the
                // caller retries, and a retry writes what is missing).
                match (dblock, leader_write) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Err(e)) if !record => Err(e),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Every lease storage records as ours at our generation: a leader that
    /// names us and is effectively held (including a shared acquire's short
    /// hold), and a shared registration in our dblock. Reads every slot.
    pub fn held_by_me(&self) -> Result<Vec<Lease>> {
        let mut out = Vec::new();
        for slot in 0..self.header.resource_slots {
            let area = self.site(slot).read_area()?;
            let Some(leader) = &area.leader else { continue };
            // Every value chosen in a slot carries the slot's name.
            let lease = |lver, mode| Lease { lockspace: self.header.name.clone(), identity: leader.value.identity.clone(), key: leader.value.key, slot, lver, mode, generation: self.generation };
            if effectively_held(leader, &area.dblocks) && leader.value.owner_id == self.host_id && leader.value.owner_generation == self.generation {
                out.push(lease(leader.lver, Mode::Exclusive));
            }
            let mine = &area.dblocks[self.host_id as usize - 1];
            if mine.shared && mine.shared_generation == self.generation {
                out.push(lease(mine.lver, Mode::Shared));
            }
        }
        Ok(out)
    }

    /// Checks on storage that `lease` is still ours (after a daemon restart).
    pub fn verify(&self, lease: &Lease) -> Result<()> {
        let area = self.site(lease.slot).read_area()?;
        let not_held = || Error::NotHeld { identity: lease.identity.clone(), lver: lease.lver };
        let mine = &area.dblocks[self.host_id as usize - 1];
        let held = match lease.mode {
            Mode::Shared => mine.shared && mine.shared_generation == lease.generation,
            // A dblock beyond the leader's version: the leader may be a late, stale write.
            Mode::Exclusive => area.leader.as_ref().is_some_and(|l| {
                effectively_held(l, &area.dblocks)
                    && area.dblocks.iter().all(|d| d.lver <= l.lver)
                    && l.lver == lease.lver
                    && l.value.owner_id == self.host_id
                    && l.value.owner_generation == lease.generation
            }),
        };
        if held {
            self.slots.lock().learn(lease.slot, lease.key);
            Ok(())
        } else {
            Err(not_held())
        }
    }
}

enum Located<'a> {
    Found(u32, ResourceArea, MutexGuard<'a, ()>),
    /// We named a fresh slot and own version 1.
    Won(u32, ResourceArea, MutexGuard<'a, ()>),
    Retry,
}

/// The version an acquire ballots for: the leader's next, and never below
/// a version some dblock has reached. A late-landing leader write can roll
/// the leader back; balloting below the top dblock would roll our own
/// dblock back and let a decided version be chosen again (docs/SAFETY.md,
/// "Late-landing leader writes").
pub fn ballot_version(leader: &Leader, dblocks: &[Dblock]) -> u64 {
    (leader.lver + 1).max(top_version(dblocks))
}

fn top_version(dblocks: &[Dblock]) -> u64 {
    dblocks.iter().map(|d| d.lver).max().unwrap_or(0)
}

/// "We already hold it": the version of the `mode` lease that storage
/// proves is ours at `generation`, or None (a ballot decides). The leader
/// alone does not prove an exclusive hold: no dblock may be beyond its
/// version (a rolled-back leader), our dblock must not mark it RELEASED
/// (our release landed only there, and peers take it), it must not be a
/// shared acquire's short hold, and no live host may be registered shared
/// (`live_shared`, asked last). A shared registration of ours may be a
/// late-landing write that missed an exclusive holder's check: trusted only
/// for the leader's version, with no version taken since.
pub fn already_held(mode: Mode, leader: &Leader, dblocks: &[Dblock], host_id: u32, generation: u64, live_shared: impl FnOnce() -> bool) -> Option<u64> {
    let top = top_version(dblocks);
    match mode {
        Mode::Exclusive => (top <= leader.lver
            && effectively_held(leader, dblocks)
            && !leader.short_hold
            && leader.value.owner_id == host_id
            && leader.value.owner_generation == generation
            && !live_shared())
        .then_some(leader.lver),
        Mode::Shared => {
            let mine = &dblocks[host_id as usize - 1];
            (mine.shared && mine.shared_generation == generation && mine.lver == leader.lver && top <= leader.lver).then_some(mine.lver)
        }
    }
}

/// A leader is held unless freed, or its owner marked its dblock released
/// for that very version (the release's leader write was lost).
pub fn effectively_held(leader: &Leader, dblocks: &[Dblock]) -> bool {
    if !leader.held {
        return false;
    }
    let owner = leader.value.owner_id as usize;
    let released = owner >= 1 && owner <= dblocks.len() && {
        let d = &dblocks[owner - 1];
        d.released && d.lver == leader.lver && d.inp == leader.value
    };
    !released
}

/// Builds a `LeaseInfo`; `host(id, generation)` names a host and judges it.
pub fn describe(header: &Header, slot: u32, area: &ResourceArea, host: impl Fn(u32, u64) -> (String, HostState)) -> LeaseInfo {
    let leader = area.leader.clone().unwrap_or_default();
    let held = effectively_held(&leader, &area.dblocks);
    let v = &leader.value;
    let (owner_name, owner_state) = if v.owner_id != 0 { host(v.owner_id, v.owner_generation) } else { (String::new(), HostState::Free) };
    let shared = area
        .dblocks
        .iter()
        .filter(|d| d.shared)
        .map(|d| {
            let (host_name, host_state) = host(d.host_id, d.shared_generation);
            SharedHolder { host_id: d.host_id, host_name, generation: d.shared_generation, holder: d.inp.holder.clone(), host_state }
        })
        .filter(|s| s.host_state != HostState::Dead)
        .collect();
    LeaseInfo {
        identity: v.identity.clone(),
        lockspace: header.name.clone(),
        slot,
        lver: leader.lver,
        held,
        owner_id: v.owner_id,
        owner_name,
        owner_generation: v.owner_generation,
        owner_state,
        holder: v.holder.clone(),
        since_unix: v.acquired_unix,
        shared,
    }
}

/// The highest generation of `host_id` that any resource record names (its
/// leases, values it proposed or others adopted, shared registrations).
pub fn highest_generation_of(storage: &Storage, header: &Header, host_id: u32) -> Result<u64> {
    let mut highest = 0;
    for slot in 0..header.resource_slots {
        let area = BallotSite { storage, layout: header.layout(), slot, host_id, lockspace_uuid: header.uuid }.read_area()?;
        let values = area.leader.iter().map(|l| &l.value).chain(area.dblocks.iter().map(|d| &d.inp));
        for v in values.filter(|v| v.owner_id == host_id) {
            highest = highest.max(v.owner_generation);
        }
        for d in area.dblocks.iter().filter(|d| d.host_id == host_id) {
            highest = highest.max(d.shared_generation);
        }
    }
    Ok(highest)
}

/// Finds a resource's slot without naming anything (read-only).
pub fn find(storage: &Storage, header: &Header, identity: &str) -> Result<Option<(u32, ResourceArea)>> {
    let key = key_of(identity);
    let slots = header.resource_slots;
    let start = first_slot(&key, slots);
    for i in 0..slots {
        let slot = (start + i) % slots;
        let site = BallotSite { storage, layout: header.layout(), slot, host_id: 1, lockspace_uuid: header.uuid };
        let area = site.read_area()?;
        match &area.leader {
            Some(l) if l.value.key == key => return Ok(Some((slot, area))),
            Some(_) => continue,
            None => return Ok(None),
        }
    }
    Ok(None)
}
