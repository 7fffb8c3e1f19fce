//! Host leases ("delta leases", Chockler & Malkhi): joining a host id,
//! renewing it, leaving it, and judging every other host live or dead.
//!
//! A host proves it is alive only by making its slot *change*; observers
//! time that with their own monotonic clock and never compare clocks across
//! hosts. The safety argument is in docs/SAFETY.md ("Host leases").

use std::time::Duration;

use crate::clock::{unix_now, Mono};
use crate::error::{Error, FormatError, Result};
use crate::format::{Header, HostSlot, RECORD_LEN};
use crate::storage::Storage;
use crate::timing::Timeouts;

/// Who this host is: written into its slot, so a peer's slot can be told
/// apart from our own previous incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    pub name: String,
    pub machine_id: [u8; 16],
}

impl HostIdentity {
    /// `name` on this machine (identified by /etc/machine-id).
    pub fn local(name: &str) -> HostIdentity {
        HostIdentity { name: name.to_owned(), machine_id: identity::machine_id() }
    }
}



pub use crate::lease_info::HostState;

/// One slot as an observer sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostView {
    pub host_id: u32,
    pub host_name: String,
    pub generation: u64,
    pub state: HostState,
    /// The holder's wall clock at its last renewal (display only).
    pub renewed_unix: u64,
    /// How long ago, by the observer's clock, the slot last changed.
    pub last_change_ago_ms: Option<u64>,
}

/// One member's copy of a slot, as last read.
#[derive(Clone, PartialEq, Eq)]
struct MemberView {
    record: Option<HostSlot>,
    corrupt: bool,
}

impl MemberView {
    fn of(read: &SlotRead) -> MemberView {
        match read {
            Ok(r) => MemberView { record: r.clone(), corrupt: false },
            Err(_) => MemberView { record: None, corrupt: true },
        }
    }
}

struct Watch {
    /// Per member of the lockspace's storage; None until first read.
    members: Vec<Option<MemberView>>,
    last_change: Mono,
    changes_seen: bool,
    /// Start of the latest read that found the slot unchanged on every
    /// member it read (a majority).
    quiet_read_start: Option<Mono>,
}

impl Watch {
    /// Corrupt on every member read, readable on none.
    fn corrupt(&self) -> bool {
        let seen: Vec<&MemberView> = self.members.iter().flatten().collect();
        !seen.is_empty() && seen.iter().all(|v| v.corrupt)
    }

    /// The newest copy of the slot on any member.
    fn record(&self) -> Option<&HostSlot> {
        newest(self.members.iter().flatten().filter_map(|v| v.record.as_ref()))
    }
}

/// Of several copies of one host slot, the latest write: a host's writes
/// raise (generation, renewal).
pub fn newest<'a>(copies: impl Iterator<Item = &'a HostSlot>) -> Option<&'a HostSlot> {
    copies.max_by_key(|s| (s.generation, s.renewal))
}

/// The observer's memory of every slot, fed by periodic reads of all slots.
pub struct Peers {
    timeouts: Timeouts,
    members: usize,
    watches: Vec<Option<Watch>>,
}

pub type SlotRead = std::result::Result<Option<HostSlot>, FormatError>;

/// Every host slot as one member holds it.
pub struct MemberSlots {
    pub member: usize,
    pub slots: Vec<SlotRead>,
}

/// A slot that an observation found newly corrupt (to be logged once).
pub struct NewlyCorrupt {
    pub host_id: u32,
    pub member: usize,
    pub error: FormatError,
}

impl Peers {
    pub fn new(max_hosts: u32, timeouts: Timeouts) -> Peers {
        Peers::with_members(max_hosts, 1, timeouts)
    }

    pub fn with_members(max_hosts: u32, members: usize, timeouts: Timeouts) -> Peers {
        Peers { timeouts, members, watches: (0..max_hosts).map(|_| None).collect() }
    }

    /// `observe_members` for a one-device lockspace.
    pub fn observe(&mut self, start: Mono, done: Mono, slots: &[SlotRead]) -> Vec<NewlyCorrupt> {
        self.observe_members(start, done, &[MemberSlots { member: 0, slots: slots.to_vec() }])
    }

    /// Records one read of all slots (from a majority of members) that
    /// started at `start` and completed at `done`; returns the slots that
    /// have just turned corrupt. A slot changed when any member read shows
    /// it different from that member's previous read, or when a member is
    /// read for the first time: only then can the dead verdict rest on the
    /// members it read (docs/SAFETY.md, "A lockspace on several devices").
    pub fn observe_members(&mut self, start: Mono, done: Mono, reads: &[MemberSlots]) -> Vec<NewlyCorrupt> {
        let mut newly_corrupt = Vec::new();
        let members = self.members;
        for (i, watch) in self.watches.iter_mut().enumerate() {
            let first_sight = watch.is_none();
            let w = watch.get_or_insert_with(|| Watch { members: vec![None; members], last_change: done, changes_seen: false, quiet_read_start: None });
            let mut changed = false;
            for read in reads {
                let Some(slot) = read.slots.get(i) else { continue };
                let seen = MemberView::of(slot);
                let known = &mut w.members[read.member];
                if let Err(error) = slot {
                    if !known.as_ref().is_some_and(|k| k.corrupt) {
                        newly_corrupt.push(NewlyCorrupt { host_id: i as u32 + 1, member: read.member, error: error.clone() });
                    }
                }
                if known.as_ref() != Some(&seen) {
                    changed |= !first_sight;
                    *known = Some(seen);
                }
            }
            if changed {
                w.last_change = done;
                w.changes_seen = true;
                w.quiet_read_start = None;
            } else if !first_sight {
                w.quiet_read_start = Some(start);
            }
        }
        newly_corrupt
    }

    /// Host ids come from records that passed a checksum, not from us: an
    /// id of 0 or beyond max_hosts names no slot.
    fn watch(&self, host_id: u32) -> Option<&Watch> {
        self.watches.get((host_id as usize).checked_sub(1)?)?.as_ref()
    }

    fn host_dead(&self, record: &HostSlot) -> Duration {
        host_dead_of(&self.timeouts, Some(record))
    }

    pub fn state(&self, host_id: u32) -> HostState {
        let Some(w) = self.watch(host_id) else {
            return HostState::Unknown;
        };
        if w.corrupt() {
            return HostState::Corrupt;
        }
        let Some(record) = w.record() else { return HostState::Free };
        if record.free {
            return HostState::Free;
        }
        let dead_after = w.last_change.add(self.host_dead(record));
        if w.quiet_read_start.is_some_and(|q| q >= dead_after) {
            return HostState::Dead;
        }
        if !w.changes_seen {
            return HostState::Unknown;
        }
        if Mono::now().since(w.last_change) < 3 * self.timeouts.renew_interval {
            HostState::Live
        } else {
            HostState::Failing
        }
    }

    /// The slot's current generation, if it is held.
    pub fn generation(&self, host_id: u32) -> Option<u64> {
        self.record(host_id).map(|r| r.generation)
    }

    pub fn record(&self, host_id: u32) -> Option<&HostSlot> {
        self.watch(host_id)?.record()
    }

    /// True when leases owned by `host_id` at `generation` can no longer be
    /// in use: the host left, rejoined with a newer generation, or is dead.
    pub fn owner_gone(&self, host_id: u32, generation: u64) -> bool {
        match self.record(host_id) {
            Some(r) if r.generation > generation => true,
            Some(r) if r.generation == generation => r.free || self.state(host_id) == HostState::Dead,
            // Our view predates that generation's join: it may well be alive.
            _ => false,
        }
    }

    /// When an alive owner could be declared dead at the earliest.
    pub fn takeover_in(&self, host_id: u32) -> Option<Duration> {
        let w = self.watch(host_id)?;
        let record = w.record()?;
        Some(w.last_change.add(self.host_dead(record)).remaining())
    }

    pub fn views(&self) -> Vec<HostView> {
        let now = Mono::now();
        self.watches
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                // Slots never written are not hosts; corrupt ones are shown.
                let w = w.as_ref().filter(|w| w.record().is_some() || w.corrupt())?;
                let host_id = i as u32 + 1;
                let r = w.record();
                Some(HostView {
                    host_id,
                    host_name: r.map(|r| r.host_name.clone()).unwrap_or_default(),
                    generation: r.map_or(0, |r| r.generation),
                    state: self.state(host_id),
                    renewed_unix: r.map_or(0, |r| r.renewed_unix),
                    last_change_ago_ms: w.changes_seen.then(|| now.since(w.last_change).as_millis() as u64),
                })
            })
            .collect()
    }
}

/// Reads every host slot in one I/O per member, from a majority.
pub fn read_all(storage: &Storage, header: &Header) -> Result<Vec<MemberSlots>> {
    let ss = storage.sector_size() as usize;
    let reads = storage.read(1, header.max_hosts as u64)?;
    Ok(reads.into_iter().map(|r| MemberSlots { member: r.member, slots: r.data.chunks(ss).map(|s| HostSlot::decode(&s[..RECORD_LEN])).collect() }).collect())
}

/// Each member's raw copy of one sector.
type Copies = Vec<(usize, [u8; RECORD_LEN])>;

fn read_copies(storage: &Storage, sector: u64, required: &[usize]) -> Result<Copies> {
    Ok(storage.read_from(sector, 1, required)?.into_iter().map(|r| (r.member, r.data[..RECORD_LEN].try_into().unwrap())).collect())
}

/// Reads our own slot: the newest copy (decoded), and every member's raw
/// record. A corrupt copy is an error: we must neither trust it nor
/// overwrite what may be evidence of another host using our id.
fn read_own(storage: &Storage, header: &Header, host_id: u32) -> Result<(Option<HostSlot>, Copies)> {
    let copies = read_copies(storage, header.layout().host_slot(host_id), &[])?;
    Ok((decode_newest(storage, header, host_id, &copies)?, copies))
}

fn decode_newest(storage: &Storage, header: &Header, host_id: u32, copies: &Copies) -> Result<Option<HostSlot>> {
    let slots = copies.iter().map(|(_, raw)| decode_own(storage, header, host_id, raw)).collect::<Result<Vec<_>>>()?;
    Ok(newest(slots.iter().flatten()).cloned())
}

fn decode_own(storage: &Storage, header: &Header, host_id: u32, raw: &[u8; RECORD_LEN]) -> Result<Option<HostSlot>> {
    let slot = HostSlot::decode(raw).map_err(|e| Error::CorruptOwnSlot { path: storage.path().to_owned(), host_id, source: e })?;
    if let Some(s) = &slot {
        Error::unless_same_lockspace(storage.path(), header.layout().host_slot(host_id), &s.lockspace_uuid, &header.uuid)?;
    }
    Ok(slot)
}

/// Our own slot's newest copy, read now (a restarted daemon's resume check).
pub fn read_own_newest(storage: &Storage, header: &Header, host_id: u32) -> Result<Option<HostSlot>> {
    read_own(storage, header, host_id).map(|(slot, _)| slot)
}

/// A joined host slot and the start of the I/O that made it ours: our host
/// lease is valid for `lease_expiry` from `valid_from`.
pub struct Joined {
    pub slot: HostSlot,
    pub valid_from: Mono,
    /// Each member's copy of the slot in the join's last read (empty after
    /// a resume: nothing was read yet).
    pub copies: Vec<(usize, Option<HostSlot>)>,
}

/// One write of a host lease, as its writer knows it: the join's
/// generation and random nonce, and the write's renewal counter. Each
/// write a process makes has its own counter; nobody else writes our nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incarnation {
    pub generation: u64,
    pub nonce: [u8; 16],
    pub renewal: u64,
}

impl Incarnation {
    pub fn of(slot: &HostSlot) -> Incarnation {
        Incarnation { generation: slot.generation, nonce: slot.nonce, renewal: slot.renewal }
    }

    /// True when `slot` holds exactly this write.
    pub fn is(&self, slot: &HostSlot) -> bool {
        !slot.free && Incarnation::of(slot) == *self
    }
}

/// Joins host id `host_id`.
///
/// Fast path: the slot was never used, was left cleanly, or holds exactly
/// the last write `predecessor` (this daemon's previous incarnation, from
/// its own state) completed within its lease: read, write, wait
/// `join_delay`, re-read. The read..write span must fit in `join_span`,
/// which is what makes two concurrent joiners of one id unable to both
/// succeed. Anything else, including a slot whose owner fields match ours
/// (a second daemon, a cloned or reinstalled machine look the same), takes
/// the slow path: watch the slot for `host_dead`; any change means the id
/// is in use. docs/SAFETY.md ("Joining a host id").
///
/// `claim`: the id was picked automatically as unused (`host_claim`), so a
/// slot found in use is refused at once instead of watched: another host
/// got there first, and the caller picks another id.
pub fn join(storage: &Storage, header: &Header, timeouts: &Timeouts, host_id: u32, me: &HostIdentity, predecessor: Option<Incarnation>, claim: bool) -> Result<Joined> {
    if host_id == 0 || host_id > header.max_hosts {
        return Err(Error::HostIdOutOfRange { host_id, max_hosts: header.max_hosts, lockspace: header.name.clone() });
    }
    let sector = header.layout().host_slot(host_id);
    let mut may_take_fast = true;
    for _attempt in 0..3 {
        let mut start = Mono::now();
        let (mut seen, copies) = read_own(storage, header, host_id)?;
        let fast = may_take_fast
            && match &seen {
                None => true,
                Some(s) => s.free || predecessor.is_some_and(|p| p.is(s)),
            };
        if !fast && claim && may_take_fast {
            return Err(busy(header, host_id, seen.as_ref()));
        }
        if !fast {
            start = wait_until_unchanged(storage, header, timeouts, host_id, &mut seen, &copies)?;
        }
        let previous = seen;
        let slot = HostSlot {
            free: false,
            host_id,
            io_timeout_ms: timeouts.io_timeout.as_millis() as u32,
            generation: previous.as_ref().map_or(0, |p| p.generation) + 1,
            renewal: previous.as_ref().map_or(0, |p| p.renewal) + 1,
            renewed_unix: unix_now(),
            lockspace_uuid: header.uuid,
            machine_id: me.machine_id,
            nonce: crate::sys::random_bytes(),
            host_name: me.name.clone(),
        };
        let landed = storage.write_record_members(sector, &slot.encode())?;
        if Mono::now().since(start) > timeouts.join_span {
            // Too slow to rule out a concurrent joiner by timing: the next
            // attempt must watch the slot for host_dead instead.
            may_take_fast = false;
            continue;
        }
        std::thread::sleep(timeouts.join_delay);
        // Every member our write reached by then must still hold it: two
        // joiners' majorities share a member, and on it the later write
        // shows (docs/SAFETY.md, "Joining a host id").
        let now = read_copies(storage, sector, &landed)?;
        let mut copies = Vec::new();
        for (member, raw) in &now {
            let found = decode_own(storage, header, host_id, raw)?;
            copies.push((*member, found.clone()));
            match found {
                Some(f) if f == slot => {}
                Some(other) if landed.contains(member) || (other.generation, other.renewal) >= (slot.generation, slot.renewal) => return Err(busy(header, host_id, Some(&other))),
                None if landed.contains(member) => return Err(Error::JoinUnconfirmed { host_id, lockspace: header.name.clone(), why: "our write vanished" }),
                _ => {}
            }
        }
        return Ok(Joined { slot, valid_from: start, copies });
    }
    Err(Error::JoinUnconfirmed { host_id, lockspace: header.name.clone(), why: "storage too slow for a fast join; the slow path timed out" })
}

/// The refusal for a host id someone else writes, naming that writer.
fn busy(header: &Header, host_id: u32, other: Option<&HostSlot>) -> Error {
    Error::HostIdBusy {
        host_id,
        lockspace: header.name.clone(),
        holder: other.map_or_else(|| "<unreadable slot>".to_owned(), |s| s.host_name.clone()),
        machine_id: other.map_or_else(String::new, |s| hex(&s.machine_id)),
        generation: other.map_or(0, |s| s.generation),
        same_machine: other.is_some_and(|s| s.machine_id == identity::machine_id()),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Watches a held slot until it has not changed for `host_dead`. Returns the
/// start of the last (confirming) read; fails if the slot changes.
fn wait_until_unchanged(storage: &Storage, header: &Header, timeouts: &Timeouts, host_id: u32, seen: &mut Option<HostSlot>, copies: &Copies) -> Result<Mono> {
    let sector = header.layout().host_slot(host_id);
    match watch_sector(storage, sector, copies, host_dead_of(timeouts, seen.as_ref()), timeouts.renew_interval)? {
        Watched::Quiet(start) => Ok(start),
        Watched::Changed(start, bytes) => match decode_own(storage, header, host_id, &bytes)? {
            Some(s) if s.free => {
                *seen = Some(s);
                Ok(start)
            }
            Some(s) => Err(busy(header, host_id, Some(&s))),
            None => Err(Error::JoinUnconfirmed { host_id, lockspace: header.name.clone(), why: "the slot was wiped while we watched it" }),
        },
    }
}

/// How long a slot must stay unchanged before its holder counts as dead:
/// by its holder's io_timeout when that is longer than ours.
fn host_dead_of(timeouts: &Timeouts, slot: Option<&HostSlot>) -> Duration {
    let theirs = slot.and_then(|s| Timeouts::new(Duration::from_millis(s.io_timeout_ms as u64)).ok()).map(|t| t.host_dead);
    theirs.map_or(timeouts.host_dead, |d| d.max(timeouts.host_dead))
}

// A short-lived return value: boxing the record would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Watched {
    /// Unchanged; the start of the read that confirmed it.
    Quiet(Mono),
    /// Changed, as seen by the read started at that time.
    Changed(Mono, [u8; RECORD_LEN]),
}

/// Re-reads `sector` every `poll` until a read started `quiet` after this
/// call still finds every member's copy as in `first`, or until one
/// changes. A member read for the first time starts the quiet time afresh:
/// what it shows is new to us (docs/SAFETY.md, "A lockspace on several
/// devices").
fn watch_sector(storage: &Storage, sector: u64, first: &Copies, quiet: Duration, poll: Duration) -> Result<Watched> {
    let mut known = first.clone();
    let mut quiet_at = Mono::now().add(quiet);
    loop {
        std::thread::sleep(quiet_at.remaining().min(poll));
        let start = Mono::now();
        for (member, now) in read_copies(storage, sector, &[])? {
            match known.iter().find(|(m, _)| *m == member) {
                Some((_, before)) if *before != now => return Ok(Watched::Changed(start, now)),
                Some(_) => {}
                None => {
                    known.push((member, now));
                    quiet_at = Mono::now().add(quiet);
                }
            }
        }
        if start >= quiet_at {
            return Ok(Watched::Quiet(start));
        }
    }
}

/// Frees host id `host_id`'s slot whatever it holds (a corrupt record, or
/// an id to hand to another machine), but only once it has stayed unchanged
/// for `host_dead`: then no live host is using it. The slot is written FREE
/// with `highest_generation()` (asked only after the watch, when no new
/// lease of the id can appear), so every old lease of the id counts as gone
/// once the id joins again. Returns false when the slot was never written.
pub fn clear_slot(storage: &Storage, header: &Header, timeouts: &Timeouts, host_id: u32, highest_generation: impl FnOnce() -> Result<u64>) -> Result<bool> {
    if host_id == 0 || host_id > header.max_hosts {
        return Err(Error::HostIdOutOfRange { host_id, max_hosts: header.max_hosts, lockspace: header.name.clone() });
    }
    let sector = header.layout().host_slot(host_id);
    let copies = read_copies(storage, sector, &[])?;
    if copies.iter().all(|(_, raw)| *raw == [0; RECORD_LEN]) {
        return Ok(false);
    }
    let decoded: Vec<HostSlot> = copies.iter().filter_map(|(_, raw)| HostSlot::decode(raw).ok().flatten()).collect();
    let slot = newest(decoded.iter()).cloned();
    if let Watched::Changed(_, now) = watch_sector(storage, sector, &copies, host_dead_of(timeouts, slot.as_ref()), timeouts.renew_interval)? {
        return Err(busy(header, host_id, HostSlot::decode(&now).ok().flatten().as_ref()));
    }
    let free = HostSlot {
        free: true,
        host_id,
        io_timeout_ms: timeouts.io_timeout.as_millis() as u32,
        generation: highest_generation()?.max(slot.as_ref().map_or(0, |s| s.generation)),
        renewal: slot.as_ref().map_or(0, |s| s.renewal) + 1,
        renewed_unix: unix_now(),
        lockspace_uuid: header.uuid,
        machine_id: [0; 16],
        nonce: crate::sys::random_bytes(),
        host_name: String::new(),
    };
    storage.write_record(sector, &free.encode())?;
    Ok(true)
}

/// What a renewal's read found in our own slot.
#[derive(Debug)]
pub enum OwnSlot {
    /// One of our own writes: the host id is still ours.
    Ours,
    /// Undecodable. Not from us (sector writes are atomic), so not trusted;
    /// the renewal rewrites it, and a writer that tore it will find our
    /// record at its own next renewal.
    Corrupt(FormatError),
    /// Another record (another writer with our host id, a `clear-host`, a
    /// re-format) or none at all: the host id is no longer ours.
    Taken(Option<HostSlot>),
}

/// Checks our slot against the writes we may have landed: the last one
/// known to have landed (`confirmed`) or a later attempt (renewal counter
/// up to `last_attempt`) that timed out and may have landed since.
pub fn check_own(found: &SlotRead, confirmed: &HostSlot, last_attempt: u64) -> OwnSlot {
    check_own_members(&[(0, found)], confirmed, last_attempt, &mut OwnMemory::new(1))
}

/// `check_own` over each member's copy of our slot (`found`: (member,
/// copy)), for a one-device lockspace or a set. Some member read must hold
/// one of those writes (our last landed write is on a majority, and any two
/// majorities share a member). On a set, other members may lag behind:
/// with an older write of ours, or with what they held before our join
/// (`memory` remembers, per member, what it showed: a member that missed
/// our join keeps the slot's older history). Any other copy, on any member,
/// is another writer's: it changed a member we had read, or shows a
/// generation at or above ours (docs/SAFETY.md, "Renewal checks
/// ownership").
pub fn check_own_members(found: &[(usize, &SlotRead)], confirmed: &HostSlot, last_attempt: u64, memory: &mut OwnMemory) -> OwnSlot {
    let ours = |s: &HostSlot| !s.free && s.generation == confirmed.generation && s.nonce == confirmed.nonce && s.lockspace_uuid == confirmed.lockspace_uuid && s.renewal <= last_attempt;
    let set = memory.0.len() > 1;
    let mut current = false;
    let mut corrupt = None;
    let mut stale = None;
    for &(member, copy) in found {
        let known = memory.0.get_mut(member);
        match copy {
            Err(e) => corrupt = Some(e.clone()),
            Ok(Some(s)) if ours(s) => {
                if s.renewal >= confirmed.renewal {
                    current = true;
                } else {
                    stale = Some(Some(s.clone()));
                }
                if let Some(k) = known {
                    *k = Seen::Ours;
                }
            }
            Ok(other) if set => {
                let older = other.as_ref().is_none_or(|s| s.generation < confirmed.generation);
                match known {
                    Some(Seen::Before(before)) if before == other => {}
                    Some(k @ Seen::Unread) if older => *k = Seen::Before(other.clone()),
                    _ => return OwnSlot::Taken(other.clone()),
                }
            }
            Ok(None) => stale = stale.or(Some(None)),
            Ok(Some(other)) => return OwnSlot::Taken(Some(other.clone())),
        }
    }
    match (corrupt, current) {
        (Some(e), _) => OwnSlot::Corrupt(e),
        (None, true) => OwnSlot::Ours,
        (None, false) => OwnSlot::Taken(stale.flatten()),
    }
}

/// What each member of a set last showed in our own slot.
#[derive(Clone, Debug)]
pub struct OwnMemory(Vec<Seen>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Unread,
    /// One of our writes: anything but ours from now on is another writer.
    Ours,
    /// What the member held before our join reached it.
    Before(Option<HostSlot>),
}

impl OwnMemory {
    pub fn new(members: usize) -> OwnMemory {
        OwnMemory(vec![Seen::Unread; members])
    }

    /// After a join: what each member showed in its last read.
    pub fn after_join(members: usize, copies: &[(usize, Option<HostSlot>)], joined: &HostSlot) -> OwnMemory {
        let mut memory = OwnMemory::new(members);
        for (member, copy) in copies {
            if let Some(seen) = memory.0.get_mut(*member) {
                *seen = if copy.as_ref() == Some(joined) { Seen::Ours } else { Seen::Before(copy.clone()) };
            }
        }
        memory
    }
}

/// Why a slot that is not ours any more was lost, naming what is there now.
pub fn taken_why(host_id: u32, found: Option<&HostSlot>) -> String {
    let what = match found {
        None => "was wiped (all zeros)".to_owned(),
        Some(s) if s.free => format!("was marked free (generation {}) by someone else: `highlander lockspace clear-host`?", s.generation),
        Some(s) => format!(
            "now holds host \"{}\" (machine id {}, generation {}, renewal {}){}",
            s.host_name,
            hex(&s.machine_id),
            s.generation,
            s.renewal,
            if s.machine_id == identity::machine_id() { ": a second highlanderd on this machine, or a clone of this machine" } else { "" }
        ),
    };
    format!("another writer uses host id {host_id}: our slot {what}. Host ids must be unique: give every host its own host_id")
}

/// Writes the next renewal of `current`; returns what was written.
pub fn renew(storage: &Storage, header: &Header, current: &HostSlot) -> Result<HostSlot> {
    let next = HostSlot { renewal: current.renewal + 1, renewed_unix: unix_now(), free: false, ..current.clone() };
    storage.write_record(header.layout().host_slot(current.host_id), &next.encode())?;
    Ok(next)
}

/// Clean leave: marks the slot free so the next join needs no wait.
pub fn leave(storage: &Storage, header: &Header, current: &HostSlot) -> Result<()> {
    let free = HostSlot { renewal: current.renewal + 1, renewed_unix: unix_now(), free: true, ..current.clone() };
    storage.write_record(header.layout().host_slot(current.host_id), &free.encode())
}
