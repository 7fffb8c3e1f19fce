//! Resource leases on one resource slot: Disk Paxos ballots (leader record +
//! one dblock per host), exclusive and shared acquire, release and the
//! `expect_lver` hand-over, as `lockd/src/resource.rs` and `paxos_lease.rs`
//! implement them, over sectors whose writes may land late.
//!
//! Every decision the code makes as a pure function is the code's own
//! (`engine::resource::{ballot_version, already_held, effectively_held}`,
//! `engine::paxos_lease::{ballot_number, announce, adopted, overtaken}`),
//! called on the model's records converted to the engine's. Host leases are
//! abstracted (docs/MODEL.md, "Composition"): a host's lease is valid until
//! it lapses, and an observer may call it dead only after that, which is
//! what the host-lease model (`host.rs`) checks.

use engine::format::{Dblock, Leader, LeaseValue};
use engine::resource::Mode;
use stateright::{Model, Property};

use crate::Bug;

/// (host id, generation): whom a lease value names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub host: u8,
    pub gen: u8,
}

/// `format::Leader`, reduced to the fields the protocol decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ldr {
    pub held: bool,
    pub short_hold: bool,
    pub lver: u8,
    pub owner: Owner,
}

/// `format::Dblock`, reduced likewise (`inp` None: the empty value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Db {
    pub lver: u8,
    pub mbal: u16,
    pub bal: u16,
    pub inp: Option<Owner>,
    pub released: bool,
    pub shared: bool,
    pub shared_gen: u8,
}

fn value(o: Option<Owner>) -> LeaseValue {
    o.map_or_else(LeaseValue::default, |o| LeaseValue { owner_id: o.host as u32, owner_generation: o.gen as u64, ..LeaseValue::default() })
}

fn owner(v: &LeaseValue) -> Option<Owner> {
    (!v.is_empty()).then_some(Owner { host: v.owner_id as u8, gen: v.owner_generation as u8 })
}

fn leader(l: &Ldr) -> Leader {
    Leader { held: l.held, short_hold: l.short_hold, lver: l.lver as u64, value: value(Some(l.owner)), ..Leader::default() }
}

fn dblocks(dbs: &[Db]) -> Vec<Dblock> {
    dbs.iter()
        .enumerate()
        .map(|(i, d)| Dblock {
            host_id: i as u32 + 1,
            released: d.released,
            shared: d.shared,
            shared_generation: d.shared_gen as u64,
            lver: d.lver as u64,
            mbal: d.mbal as u64,
            bal: d.bal as u64,
            inp: value(d.inp),
            ..Dblock::default()
        })
        .collect()
}

fn db(d: &Dblock) -> Db {
    Db { lver: d.lver as u8, mbal: d.mbal as u16, bal: d.bal as u16, inp: owner(&d.inp), released: d.released, shared: d.shared, shared_gen: d.shared_generation as u8 }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sector {
    Leader,
    /// The dblock of this host id.
    Dblock(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Content {
    Leader(Ldr),
    Dblock(Db),
}

/// A write whose issuer stopped waiting (`storage::Storage::write` timed
/// out): it lands later, or never, and until then the issuer's writes to
/// that sector are refused (`Error::IoOutstanding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pending {
    pub host: u8,
    pub sector: Sector,
    pub content: Content,
}

/// A lease a host holds (its guest uses the disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Held {
    pub lver: u8,
    pub mode: Mode,
    pub gen: u8,
}

/// What an observer's reads of a peer's host slot show: its generation and
/// whether it was called dead (`delta_lease::Peers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct View {
    pub gen: u8,
    pub dead: bool,
}

/// `Peers::owner_gone`: leases of (host, gen) can no longer be in use. A
/// view older than `gen` counts as alive. (Clean leaves are not modelled.)
pub fn owner_gone(view: View, gen: u8) -> bool {
    view.gen > gen || (view.gen == gen && view.dead)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ballot {
    pub lver: u8,
    pub mbal: u16,
    /// What we write to our dblock in this phase.
    pub dblock: Db,
    /// The dblocks the last read returned.
    pub read: Vec<Db>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `Ctx::acquire`/`Ctx::locate`: read the area, decide.
    Read,
    /// `BallotSite::run`, phase 1: write our dblock, then read all.
    P1Write(Ballot),
    P1Read(Ballot),
    /// Phase 2.
    P2Write(Ballot),
    P2Read(Ballot),
    /// `Ctx::commit`: write the leader for the chosen value.
    Commit { lver: u8, chosen: Owner, read: Vec<Db> },
    /// `Ctx::finish` (exclusive, live shared holders found): free the leader and refuse.
    Unhold(Ldr),
    /// `Ctx::finish` (shared): register our mode block, then free the leader.
    Register { lver: u8, mine: Db, leader: Ldr },
    FreeShortHold { lver: u8, mine: Db, leader: Ldr },
    /// Its undo after a failure: unregister, then free the leader.
    Undo { lver: u8, mine: Db, leader: Ldr },
    UndoFree(Ldr),
    /// `Ctx::release`: read the area.
    RelRead(Held),
    /// Exclusive: free the leader (if it is still held) and mark our dblock
    /// RELEASED for the version (unless it already is). The code issues
    /// both at once; with the slot locked, only peers can look in between,
    /// and either order shows them a free lease. With
    /// `Bug::ReleaseOnlyInLeader`, the mark is written only if freeing fails.
    RelFree { leader: Ldr, mark: Option<Db>, mine: Db },
    RelMark(Db),
    /// Shared: clear our mode block.
    RelUnregister(Db),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub mode: Mode,
    pub expect: Option<u8>,
    pub step: Step,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Host {
    pub gen: u8,
    /// The host lease is valid (guests may use its leases).
    pub valid: bool,
    /// Operations in progress: at most one, as the slot lock
    /// (`Ctx::slot_locks`) serialises them, unless `Bug::TwoBallotsPerDblock`.
    pub ops: Vec<Op>,
    pub held: Vec<Held>,
    /// The last version this generation released exclusively (`resource::Released`).
    pub released: Option<u8>,
    pub acquires_left: u8,
    pub ballots_left: u8,
    /// This host's view of every host's slot (index host id - 1).
    pub views: Vec<View>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub leader: Option<Ldr>,
    pub dblocks: Vec<Db>,
    pub pending: Vec<Pending>,
    pub hosts: Vec<Host>,
    pub faults_left: u8,
    pub lapses_left: u8,
    // Ghosts: what the properties judge; the protocol never reads them.
    /// Per lease version, whom an exclusive acquire was granted it.
    pub granted: Vec<(u8, Owner)>,
    /// Per lease version, the value a ballot returned as chosen.
    pub chosen: Vec<(u8, Owner)>,
    /// A version granted twice, two values chosen, or a hand-over granted a
    /// version other than the expected one + 1.
    pub broken: Option<&'static str>,
    /// The last exclusive lease released: what a hand-over expects.
    pub last_released: Option<(u8, u8)>,
    pub ever_granted: bool,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub hosts: u8,
    /// Per host: acquires it may start, ballots it may start
    /// (`MAX_BALLOTS` per acquire in the code; in all, and fewer, here).
    pub budgets: Vec<(u8, u8)>,
    /// I/Os that may fail or time out, in all.
    pub faults: u8,
    /// Host leases that may lapse (crash, freeze, lost renewals), in all.
    pub lapses: u8,
    pub shared: bool,
    pub handover: bool,
    /// Liveness runs: a host whose ballot was overtaken backs off until no
    /// other ballot is in progress (the code's random backoff, made fair).
    pub fair: bool,
    pub bug: Option<Bug>,
}

impl Config {
    /// The bounds `cargo test` checks.
    pub fn small(hosts: u8, ballots: u8) -> Config {
        Config { hosts, budgets: vec![(3, ballots); hosts as usize], faults: 1, lapses: 1, shared: false, handover: false, fair: false, bug: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Acquire { host: u8, mode: Mode, expect: Option<u8> },
    Release { host: u8 },
    /// The next step of one operation; `fault`: its I/O fails (a read) or
    /// times out (a write, which stays pending).
    Step { host: u8, op: u8, fault: bool },
    Land(Pending),
    Drop(Pending),
    /// The host lease lapses: the host crashed, froze, or lost its renewals;
    /// its guests are fenced (its leases void), its I/O in flight stays so.
    Lapse { host: u8 },
    /// Joins again with a new generation (`fence::rejoin`).
    Rejoin { host: u8 },
    /// `Peers::observe`: the observer's read shows the host's current slot.
    Observe { observer: u8, host: u8 },
    /// `Peers::state` turning Dead: only once that incarnation's lease has
    /// lapsed (the host-lease model's claim).
    DeclareDead { observer: u8, host: u8 },
}

pub struct ResourceModel {
    pub cfg: Config,
}

fn h(host: u8) -> usize {
    host as usize - 1
}

impl ResourceModel {
    /// `resource::Released`. Off for the mutants of the checks that came
    /// before it, which it would mask: each must be shown needed on its own.
    fn remembers_releases(&self) -> bool {
        !matches!(self.cfg.bug, Some(Bug::ReleaseOnlyInLeader | Bug::InFlightReleaseTrusted | Bug::ReleasedDblockTakenAsMine))
    }

    fn bug(&self, b: Bug) -> bool {
        self.cfg.bug == Some(b)
    }

    fn max_ops(&self) -> usize {
        if self.bug(Bug::TwoBallotsPerDblock) {
            2
        } else {
            1
        }
    }

    fn me(s: &State, host: u8) -> Owner {
        Owner { host, gen: s.hosts[h(host)].gen }
    }

    /// `Ctx::held_by_other`.
    fn held_by_other(s: &State, host: u8, l: &Ldr, dbs: &[Db]) -> bool {
        if !engine::resource::effectively_held(&leader(l), &dblocks(dbs)) || l.owner.host == host {
            return false;
        }
        !owner_gone(s.hosts[h(host)].views[h(l.owner.host)], l.owner.gen)
    }

    /// `Ctx::live_shared_holders`.
    fn live_shared(s: &State, host: u8, dbs: &[Db]) -> bool {
        let me = &s.hosts[h(host)];
        dbs.iter().enumerate().filter(|(_, d)| d.shared).any(|(i, d)| {
            if i == h(host) {
                d.shared_gen == me.gen
            } else {
                !owner_gone(me.views[i], d.shared_gen)
            }
        })
    }

    /// `resource::already_held`, or the bug's mutant of it.
    fn already_held(&self, s: &State, host: u8, mode: Mode, l: &Ldr, dbs: &[Db]) -> Option<u8> {
        let me = Self::me(s, host);
        let top = dbs.iter().map(|d| d.lver).max().unwrap_or(0);
        let mine = &dbs[h(host)];
        match mode {
            Mode::Exclusive if self.bug(Bug::ReleasedDblockTakenAsMine) => {
                (top <= l.lver && l.held && !l.short_hold && l.owner == me && !Self::live_shared(s, host, dbs)).then_some(l.lver)
            }
            Mode::Shared if self.bug(Bug::LateSharedRegistrationTrusted) => (mine.shared && mine.shared_gen == me.gen).then_some(mine.lver),
            _ => engine::resource::already_held(mode, &leader(l), &dblocks(dbs), host as u32, me.gen as u64, || Self::live_shared(s, host, dbs)).map(|v| v as u8),
        }
    }

    /// `resource::ballot_version`, or the bug's mutant.
    fn ballot_version(&self, l: &Ldr, dbs: &[Db]) -> u8 {
        if self.bug(Bug::LeaderRollback) {
            l.lver + 1
        } else {
            engine::resource::ballot_version(&leader(l), &dblocks(dbs)) as u8
        }
    }

    /// Starts a ballot for `lver` (`BallotSite::run`), if the budget allows.
    fn ballot(&self, s: &mut State, host: u8, lver: u8, dbs: Vec<Db>) -> Option<Step> {
        let me = &mut s.hosts[h(host)];
        if me.ballots_left == 0 {
            return None;
        }
        me.ballots_left -= 1;
        let all = dblocks(&dbs);
        let mbal = engine::paxos_lease::ballot_number(&all, lver as u64, host as u32, self.cfg.hosts as u64);
        let dblock = db(&engine::paxos_lease::announce(&all[h(host)], host as u32, lver as u64, mbal));
        Some(Step::P1Write(Ballot { lver, mbal: mbal as u16, dblock, read: dbs }))
    }

    fn in_ballot(op: &Op) -> bool {
        matches!(op.step, Step::P1Write(_) | Step::P1Read(_) | Step::P2Write(_) | Step::P2Read(_) | Step::Commit { .. })
    }

    fn grant(s: &mut State, host: u8, mode: Mode, lver: u8, expect: Option<u8>, by_ballot: bool) {
        let me = Self::me(s, host);
        if mode == Mode::Exclusive {
            match s.granted.iter().find(|(v, _)| *v == lver) {
                Some((_, o)) if *o != me => s.broken = s.broken.or(Some("a lease version was granted to two owners")),
                Some(_) => {}
                None => s.granted.push((lver, me)),
            }
            if by_ballot && expect.is_some_and(|e| lver != e + 1) {
                s.broken = s.broken.or(Some("a hand-over was granted a version other than the one it expected + 1"));
            }
        }
        s.ever_granted = true;
        s.hosts[h(host)].held.push(Held { lver, mode, gen: me.gen });
    }

    fn note_chosen(s: &mut State, lver: u8, v: Owner) {
        match s.chosen.iter().find(|(l, _)| *l == lver) {
            Some((_, o)) if *o != v => s.broken = s.broken.or(Some("two values were chosen for one lease version")),
            Some(_) => {}
            None => s.chosen.push((lver, v)),
        }
    }

    /// Applies a write of `host`: lands, or (fault) times out and stays
    /// pending, or is refused while an earlier one to that sector is
    /// outstanding. True when it landed and the issuer was told so.
    fn write(s: &mut State, host: u8, sector: Sector, content: Content, fault: bool) -> bool {
        if s.pending.iter().any(|p| p.host == host && p.sector == sector) {
            return false;
        }
        if fault {
            s.faults_left -= 1;
            s.pending.push(Pending { host, sector, content });
            return false;
        }
        Self::land(s, sector, content);
        true
    }

    fn land(s: &mut State, sector: Sector, content: Content) {
        match (sector, content) {
            (Sector::Leader, Content::Leader(l)) => s.leader = Some(l),
            (Sector::Dblock(i), Content::Dblock(d)) => s.dblocks[h(i)] = d,
            _ => unreachable!("a record is written to its own kind of sector"),
        }
    }

    fn is_write(step: &Step) -> bool {
        !matches!(step, Step::Read | Step::P1Read(_) | Step::P2Read(_) | Step::RelRead(_))
    }

    /// One step of `op`; returns the op's next step, None when it is over.
    fn step(&self, s: &mut State, host: u8, op: &Op, fault: bool) -> Option<Step> {
        let me = Self::me(s, host);
        let read_fault = fault && !Self::is_write(&op.step);
        if read_fault {
            s.faults_left -= 1;
            return None;
        }
        match op.step.clone() {
            Step::Read => {
                let dbs = s.dblocks.clone();
                let Some(l) = s.leader else {
                    // `Ctx::locate`: a never-named slot is named by the ballot for version 1.
                    if op.expect.is_some_and(|e| e != 0) {
                        return None;
                    }
                    return self.ballot(s, host, 1, dbs);
                };
                let in_flight = s.pending.iter().any(|p| p.host == host && (p.sector == Sector::Leader || p.sector == Sector::Dblock(host)));
                let lver = self.ballot_version(&l, &dbs);
                if in_flight && !self.bug(Bug::InFlightReleaseTrusted) {
                    return None;
                }
                if let Some(v) = self.already_held(s, host, op.mode, &l, &dbs).filter(|&v| !(op.mode == Mode::Exclusive && s.hosts[h(host)].released == Some(v))) {
                    Self::grant(s, host, op.mode, v, op.expect, false);
                    return None;
                }
                if Self::held_by_other(s, host, &l, &dbs) {
                    return l.short_hold.then_some(Step::Read);
                }
                if op.expect.is_some_and(|e| lver != e + 1) {
                    return None;
                }
                if op.mode == Mode::Exclusive && Self::live_shared(s, host, &dbs) {
                    return None;
                }
                self.ballot(s, host, lver, dbs)
            }
            Step::P1Write(b) => Self::write(s, host, Sector::Dblock(host), Content::Dblock(b.dblock), fault).then_some(Step::P1Read(b)),
            Step::P1Read(mut b) => {
                let all = dblocks(&s.dblocks);
                b.read = s.dblocks.clone();
                if engine::paxos_lease::overtaken(&all, host as u32, b.lver as u64, b.mbal as u64) {
                    return Some(Step::Read);
                }
                let chosen = engine::paxos_lease::adopted(&all, b.lver as u64).and_then(owner).unwrap_or(me);
                b.dblock.bal = b.mbal;
                b.dblock.inp = Some(chosen);
                Some(Step::P2Write(b))
            }
            Step::P2Write(b) => Self::write(s, host, Sector::Dblock(host), Content::Dblock(b.dblock), fault).then_some(Step::P2Read(b)),
            Step::P2Read(b) => {
                let all = dblocks(&s.dblocks);
                if engine::paxos_lease::overtaken(&all, host as u32, b.lver as u64, b.mbal as u64) {
                    return Some(Step::Read);
                }
                let chosen = b.dblock.inp.expect("phase 2 wrote a value");
                Self::note_chosen(s, b.lver, chosen);
                Some(Step::Commit { lver: b.lver, chosen, read: s.dblocks.clone() })
            }
            Step::Commit { lver, chosen, read } => {
                let l = Ldr { held: true, short_hold: op.mode == Mode::Shared && chosen.host == host, lver, owner: chosen };
                if !Self::write(s, host, Sector::Leader, Content::Leader(l), fault) || chosen != me {
                    return None;
                }
                // `Ctx::acquire`: our value re-chosen for a version we released is no grant.
                if !engine::resource::effectively_held(&leader(&l), &dblocks(&read)) || s.hosts[h(host)].released == Some(lver) {
                    return Some(Step::Read);
                }
                let mine = read[h(host)];
                match op.mode {
                    Mode::Exclusive if Self::live_shared(s, host, &read) => Some(Step::Unhold(Ldr { held: false, ..l })),
                    Mode::Exclusive => {
                        Self::grant(s, host, Mode::Exclusive, lver, op.expect, true);
                        None
                    }
                    Mode::Shared => Some(Step::Register { lver, mine, leader: l }),
                }
            }
            Step::Unhold(l) => {
                Self::write(s, host, Sector::Leader, Content::Leader(l), fault);
                None
            }
            Step::Register { lver, mine, leader } => {
                let registered = Db { shared: true, shared_gen: me.gen, released: true, lver, ..mine };
                Some(if Self::write(s, host, Sector::Dblock(host), Content::Dblock(registered), fault) {
                    Step::FreeShortHold { lver, mine, leader }
                } else {
                    Step::Undo { lver, mine, leader }
                })
            }
            Step::FreeShortHold { lver, mine, leader } => {
                let freed = Ldr { held: false, short_hold: false, ..leader };
                if Self::write(s, host, Sector::Leader, Content::Leader(freed), fault) {
                    Self::grant(s, host, Mode::Shared, lver, op.expect, true);
                    return None;
                }
                Some(Step::Undo { lver, mine, leader })
            }
            Step::Undo { lver, mine, leader } => {
                let unregistered = Db { shared: false, shared_gen: 0, released: true, lver, ..mine };
                Self::write(s, host, Sector::Dblock(host), Content::Dblock(unregistered), fault);
                Some(Step::UndoFree(Ldr { held: false, short_hold: false, ..leader }))
            }
            Step::UndoFree(freed) => {
                Self::write(s, host, Sector::Leader, Content::Leader(freed), fault);
                None
            }
            Step::RelRead(lease) => {
                let mine = s.dblocks[h(host)];
                match lease.mode {
                    Mode::Shared => (mine.shared && mine.shared_gen == lease.gen).then_some(Step::RelUnregister(Db { shared: false, shared_gen: 0, ..mine })),
                    Mode::Exclusive => {
                        let l = s.leader?;
                        let ours = l.lver == lease.lver && l.owner == Owner { host, gen: lease.gen };
                        let recorded = Db { released: true, inp: Some(l.owner), ..mine };
                        let mark = (ours && mine.lver == lease.lver && mine != recorded).then_some(recorded);
                        match ((ours && l.held).then_some(Ldr { held: false, short_hold: false, ..l }), mark) {
                            (Some(leader), _) if self.bug(Bug::ReleaseOnlyInLeader) => Some(Step::RelFree { leader, mark: None, mine }),
                            (Some(leader), mark) => Some(Step::RelFree { leader, mark, mine }),
                            (None, _) if self.bug(Bug::ReleaseOnlyInLeader) => None,
                            (None, mark) => mark.map(Step::RelMark),
                        }
                    }
                }
            }
            Step::RelFree { leader, mark, mine } => {
                let freed = Self::write(s, host, Sector::Leader, Content::Leader(leader), fault);
                if self.bug(Bug::ReleaseOnlyInLeader) {
                    return (!freed).then_some(Step::RelMark(Db { released: true, ..mine }));
                }
                mark.map(Step::RelMark)
            }
            Step::RelMark(d) | Step::RelUnregister(d) => {
                Self::write(s, host, Sector::Dblock(host), Content::Dblock(d), fault);
                None
            }
        }
    }
}

impl crate::Explain for ResourceModel {
    fn explain(&self, before: &State, action: &Action) -> String {
        match action {
            Action::Step { host, op, fault } => {
                let step = format!("{:?}", before.hosts[h(*host)].ops[*op as usize].step);
                let name = step.split(['(', ' ']).next().unwrap_or_default();
                let what = match (fault, Self::is_write(&before.hosts[h(*host)].ops[*op as usize].step)) {
                    (false, _) => "",
                    (true, true) => " (write times out)",
                    (true, false) => " (read fails)",
                };
                format!("host {host} op {op}: {name}{what}")
            }
            Action::Land(p) => format!("late write of host {} lands on {:?}: {:?}", p.host, p.sector, p.content),
            Action::Drop(p) => format!("late write of host {} to {:?} is lost", p.host, p.sector),
            other => format!("{other:?}"),
        }
    }
}

impl Model for ResourceModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let n = self.cfg.hosts as usize;
        let hosts = self
            .cfg
            .budgets
            .iter()
            .map(|&(acquires, ballots)| Host {
                gen: 1,
                valid: true,
                ops: Vec::new(),
                held: Vec::new(),
                released: None,
                acquires_left: acquires,
                ballots_left: ballots,
                // Joined and read every slot once before serving acquires.
                views: vec![View { gen: 1, dead: false }; n],
            })
            .collect();
        vec![State {
            leader: None,
            dblocks: vec![Db::default(); n],
            pending: Vec::new(),
            hosts,
            faults_left: self.cfg.faults,
            lapses_left: self.cfg.lapses,
            granted: Vec::new(),
            chosen: Vec::new(),
            broken: None,
            last_released: None,
            ever_granted: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for (i, me) in s.hosts.iter().enumerate() {
            let host = i as u8 + 1;
            if me.valid {
                let busy_elsewhere = self.cfg.fair && s.hosts.iter().enumerate().any(|(j, o)| j != i && o.ops.iter().any(Self::in_ballot));
                for (k, op) in me.ops.iter().enumerate() {
                    if busy_elsewhere && op.step == Step::Read {
                        continue;
                    }
                    actions.push(Action::Step { host, op: k as u8, fault: false });
                    let guarded = |sector| s.pending.iter().any(|p| p.host == host && p.sector == sector);
                    let blocked = match &op.step {
                        Step::Commit { .. } | Step::Unhold(_) | Step::FreeShortHold { .. } | Step::UndoFree(_) | Step::RelFree { .. } => guarded(Sector::Leader),
                        step if Self::is_write(step) => guarded(Sector::Dblock(host)),
                        _ => false,
                    };
                    if s.faults_left > 0 && !blocked {
                        actions.push(Action::Step { host, op: k as u8, fault: true });
                    }
                }
                if me.ops.len() < self.max_ops() && me.held.is_empty() && me.acquires_left > 0 {
                    actions.push(Action::Acquire { host, mode: Mode::Exclusive, expect: None });
                    if self.cfg.shared {
                        actions.push(Action::Acquire { host, mode: Mode::Shared, expect: None });
                    }
                    if let Some((_, lver)) = s.last_released.filter(|(from, _)| self.cfg.handover && *from != host) {
                        actions.push(Action::Acquire { host, mode: Mode::Exclusive, expect: Some(lver) });
                    }
                }
                if me.ops.is_empty() && !me.held.is_empty() {
                    actions.push(Action::Release { host });
                }
                if s.lapses_left > 0 {
                    actions.push(Action::Lapse { host });
                }
            } else {
                actions.push(Action::Rejoin { host });
            }
            for (j, other) in s.hosts.iter().enumerate().filter(|(j, _)| *j != i) {
                let view = me.views[j];
                if view.gen != other.gen {
                    actions.push(Action::Observe { observer: host, host: j as u8 + 1 });
                }
                if !view.dead && (view.gen < other.gen || !other.valid) {
                    actions.push(Action::DeclareDead { observer: host, host: j as u8 + 1 });
                }
            }
        }
        for p in &s.pending {
            actions.push(Action::Land(*p));
            actions.push(Action::Drop(*p));
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Acquire { host, mode, expect } => {
                let me = &mut s.hosts[h(host)];
                me.acquires_left -= 1;
                me.ops.push(Op { mode, expect, step: Step::Read });
            }
            Action::Release { host } => {
                // The guest has stopped using the disk before it releases.
                let lease = s.hosts[h(host)].held.remove(0);
                if lease.mode == Mode::Exclusive {
                    s.last_released = Some((host, lease.lver));
                    if self.remembers_releases() {
                        s.hosts[h(host)].released = Some(lease.lver);
                    }
                }
                s.hosts[h(host)].ops.push(Op { mode: lease.mode, expect: None, step: Step::RelRead(lease) });
            }
            Action::Step { host, op, fault } => {
                let current = s.hosts[h(host)].ops[op as usize].clone();
                match self.step(&mut s, host, &current, fault) {
                    Some(step) => s.hosts[h(host)].ops[op as usize].step = step,
                    None => {
                        s.hosts[h(host)].ops.remove(op as usize);
                    }
                }
            }
            Action::Land(p) => {
                s.pending.retain(|q| *q != p);
                Self::land(&mut s, p.sector, p.content);
            }
            Action::Drop(p) => s.pending.retain(|q| *q != p),
            Action::Lapse { host } => {
                s.lapses_left -= 1;
                let me = &mut s.hosts[h(host)];
                me.valid = false;
                me.ops.clear();
                me.held.clear();
            }
            Action::Rejoin { host } => {
                let me = &mut s.hosts[h(host)];
                me.valid = true;
                me.released = None;
                me.gen += 1;
                let gen = me.gen;
                me.views[h(host)] = View { gen, dead: false };
            }
            Action::Observe { observer, host } => {
                let gen = s.hosts[h(host)].gen;
                s.hosts[h(observer)].views[h(host)] = View { gen, dead: false };
            }
            Action::DeclareDead { observer, host } => s.hosts[h(observer)].views[h(host)].dead = true,
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("one exclusive holder", |_, s: &State| {
                let holders = |mode| s.hosts.iter().filter(|x| x.valid && x.held.iter().any(|l| l.mode == mode)).count();
                let exclusive = holders(Mode::Exclusive);
                exclusive <= 1 && (exclusive == 0 || s.hosts.iter().all(|x| !x.valid || x.held.iter().all(|l| l.mode == Mode::Exclusive)))
            }),
            Property::always("one owner per version", |_, s: &State| s.broken.is_none()),
            Property::eventually("a free resource is acquired", |m: &ResourceModel, s: &State| !m.cfg.fair || s.ever_granted),
        ]
    }
}
