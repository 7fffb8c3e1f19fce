//! Host leases in time: two processes that use one host id (a daemon and
//! its twin on a cloned machine, or a daemon and its restart) and one
//! observer of that slot, as `lockd/src/delta_lease.rs` and `lockspace.rs`
//! implement join (fast and slow path), renewal with its ownership check,
//! resume after a restart, and observers' judgement.
//!
//! Time is discrete (1 unit = 1 ms at io_timeout T = 320 ms; every
//! duration comes from `engine::timing::Timeouts::new`). Clocks drift by
//! `MAX_DRIFT`, taken the worst way round for safety: a duration a lease
//! holder measures lasts `slow` (its belief outlives the nominal time), one
//! an observer or joiner waits for lasts `fast` (it acts as early as it may).

use std::time::Duration;

use engine::delta_lease::{check_own, Incarnation, OwnSlot};
use engine::format::HostSlot;
use engine::timing::{Timeouts, MAX_DRIFT};
use stateright::{Model, Property};

use crate::Bug;

/// Model time units (ms) per io_timeout.
pub const T_MS: u64 = 320;

/// The protocol's durations in model time units, with drift applied.
#[derive(Clone, Debug)]
pub struct Durations {
    pub io: u32,
    pub renew: u32,
    /// A holder's fence_begin and lease_expiry as real time: its clock runs slow.
    pub fence_slow: u32,
    pub expiry_slow: u32,
    /// host_dead as an observer or slow-path joiner may measure it: its clock runs fast.
    pub dead_fast: u32,
    /// The longest real read..write span a joiner's check lets through.
    pub span_slow: u32,
    /// The shortest real wait before a joiner's confirming re-read.
    pub delay_fast: u32,
}

/// `d` measured on a clock that runs slow: the longest real time it lasts.
fn slow(d: Duration) -> u32 {
    (d.as_secs_f64() * 1000.0 * (1.0 + MAX_DRIFT)).ceil() as u32
}

/// `d` measured on a clock that runs fast: the shortest real time it lasts.
fn fast(d: Duration) -> u32 {
    (d.as_secs_f64() * 1000.0 / (1.0 + MAX_DRIFT)).floor() as u32
}

impl Durations {
    pub fn of(t: &Timeouts) -> Durations {
        Durations {
            io: t.io_deadline.as_millis() as u32,
            renew: t.renew_interval.as_millis() as u32,
            fence_slow: slow(t.fence_begin),
            expiry_slow: slow(t.lease_expiry),
            dead_fast: fast(t.host_dead),
            span_slow: slow(t.join_span),
            delay_fast: fast(t.join_delay),
        }
    }

    pub fn standard() -> Durations {
        Durations::of(&Timeouts::new(Duration::from_millis(T_MS)).expect("T_MS is a valid io_timeout"))
    }
}

/// A host slot record: generation, the join's nonce, renewal counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rec {
    pub gen: u8,
    pub nonce: u8,
    pub renewal: u8,
}

fn slot(r: Rec) -> HostSlot {
    HostSlot {
        free: false,
        host_id: 1,
        io_timeout_ms: T_MS as u32,
        generation: r.gen as u64,
        renewal: r.renewal as u64,
        renewed_unix: 0,
        lockspace_uuid: [0; 16],
        machine_id: [0; 16],
        nonce: [r.nonce; 16],
        host_name: String::new(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Write {
    /// Lands at once.
    Now,
    /// Lands after the longest span the fast path accepts.
    Slow,
    /// Lands just past that span: the join must take the slow path.
    TooSlow,
    /// Times out: the issuer gives up, the write stays pending.
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not started yet.
    Idle,
    /// `delta_lease::join`, an attempt's first read.
    JoinRead { attempt: u8, may_fast: bool },
    /// `wait_until_unchanged`: the confirming read after host_dead.
    JoinWatch { attempt: u8, first: Option<Rec> },
    /// The join's write, issued at `start`'s read, landing at `wake`.
    JoinLanding { attempt: u8, start: u32, rec: Rec, passes: bool },
    /// The confirming re-read after join_delay.
    JoinConfirm { start: u32, rec: Rec },
    /// `Shared::renew_once` at `wake`; leases valid while `now < valid_from + expiry`.
    Holding { rec: Rec, confirmed: u8, last_attempt: u8, valid_from: u32, saw_foreign: bool },
    /// The host lease is lost: `fence::rejoin` joins again at `wake`, with
    /// the resume state's proof.
    Lost,
    /// Gave up (HostIdBusy, JoinUnconfirmed, an I/O error).
    Out,
    /// The daemon died; its guests run until fenced (the sentinel at
    /// fence_begin, or a restarted daemon before it rejoins).
    Crashed { held: Option<(Rec, u32)>, saved: Option<(Incarn, u32)> },
}

/// `delta_lease::Incarnation`: a write's generation, nonce and counter.
pub type Incarn = Rec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proc {
    pub phase: Phase,
    pub wake: u32,
    /// Start of this process's next join (resume state / predecessor proof).
    pub proof: Option<Incarn>,
}

/// `delta_lease::Peers` for the one slot: what the observer last saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Observer {
    pub wake: u32,
    pub record: Option<Rec>,
    pub seen: bool,
    pub last_change: u32,
    pub quiet_read_start: Option<u32>,
}

impl Observer {
    /// `Peers::state` is Dead: a read started `host_dead` after the last
    /// change still found the slot unchanged (a held slot only).
    pub fn dead(&self, host_dead: u32) -> bool {
        self.record.is_some() && self.quiet_read_start.is_some_and(|q| q >= self.last_change + host_dead)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub now: u32,
    pub slot: Option<Rec>,
    pub procs: [Proc; 2],
    /// Timed-out writes (process, record): each lands before its issuer's
    /// next write to the slot, which the storage guard refuses until then.
    pub pending: Vec<(u8, Rec)>,
    pub observer: Observer,
    pub next_nonce: u8,
    pub faults_left: u8,
    pub freezes_left: u8,
    pub crashes_left: u8,
    pub joins_left: [u8; 2],
    /// Ghost: the observer called a generation dead while a holder of it was valid.
    pub dead_while_valid: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Second {
    /// Another daemon with the same host id and owner fields (a second
    /// daemon with its own state dir, a cloned VM) starts at any moment.
    Twin,
    /// The first daemon crashes and a new one starts on its host id, with
    /// its resume state (`try_resume`, predecessor proof) or without.
    Restart,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub second: Second,
    /// Both processes start by joining an empty slot (the fast-path race);
    /// otherwise the first holds the id from time 0.
    pub race: bool,
    /// Writes that may time out, in all.
    pub faults: u8,
    /// Freezes (SIGSTOP, a paused VM) past host_dead, in all.
    pub freezes: u8,
    /// Joins each process may start after losing its lease.
    pub rejoins: u8,
    /// Time explored, in model units.
    pub horizon: u32,
    pub bug: Option<Bug>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Nothing is due now: time moves to the next wake-up.
    Advance,
    /// Process `p`'s event due now; `write`: how its write (if any) fares.
    Run { p: u8, write: Write },
    /// A read of process `p` fails instead.
    ReadFails { p: u8 },
    Observe,
    Land { p: u8 },
    Drop { p: u8 },
    Freeze { p: u8 },
    Crash,
    Start { p: u8 },
    /// A new daemon on the crashed one's host id, with or without its
    /// state dir's resume state.
    Restart { resume: bool },
}

pub struct HostModel {
    pub cfg: Config,
    pub d: Durations,
}

impl HostModel {
    pub fn new(cfg: Config) -> HostModel {
        HostModel { cfg, d: Durations::standard() }
    }

    fn bug(&self, b: Bug) -> bool {
        self.cfg.bug == Some(b)
    }

    /// Holders whose leases may still be in use now: (record, valid_from).
    fn valid(&self, s: &State) -> Vec<(Rec, bool)> {
        s.procs
            .iter()
            .filter_map(|p| match p.phase {
                Phase::Holding { rec, valid_from, saw_foreign, .. } if s.now < valid_from + self.d.expiry_slow => Some((rec, saw_foreign)),
                Phase::Crashed { held: Some((rec, valid_from)), .. } if s.now < valid_from + self.d.expiry_slow => Some((rec, false)),
                _ => None,
            })
            .collect()
    }

    fn io_ok(s: &State, p: u8) -> bool {
        !s.pending.iter().any(|(q, _)| *q == p)
    }

    /// Issues a write of `rec` for process `p`: true when it landed now.
    fn write_now(s: &mut State, p: u8, rec: Rec, how: Write) -> bool {
        if !Self::io_ok(s, p) {
            return false;
        }
        if how == Write::Timeout {
            s.faults_left -= 1;
            s.pending.push((p, rec));
            return false;
        }
        s.slot = Some(rec);
        true
    }

    fn fresh(s: &mut State, seen: Option<Rec>) -> Rec {
        s.next_nonce += 1;
        Rec { gen: seen.map_or(0, |r| r.gen) + 1, nonce: s.next_nonce, renewal: seen.map_or(0, |r| r.renewal) + 1 }
    }

    /// Does this event issue a write (so its outcome is a choice)?
    fn writes(&self, s: &State, p: usize) -> Vec<Write> {
        match s.procs[p].phase {
            Phase::JoinRead { may_fast, .. } if self.takes_fast(s, p, may_fast) => vec![Write::Now, Write::Slow, Write::TooSlow, Write::Timeout],
            Phase::JoinWatch { first, .. } if s.slot == first => vec![Write::Now, Write::Slow, Write::TooSlow, Write::Timeout],
            Phase::Holding { .. } => vec![Write::Now, Write::Timeout],
            _ => vec![Write::Now],
        }
    }

    /// The fast-path rule of `delta_lease::join` (or the bug's).
    fn takes_fast(&self, s: &State, p: usize, may_fast: bool) -> bool {
        may_fast
            && match s.slot {
                None => true,
                Some(r) => s.procs[p].proof.is_some_and(|i| Incarnation { generation: i.gen as u64, nonce: [i.nonce; 16], renewal: i.renewal as u64 }.is(&slot(r))) || self.bug(Bug::JoinTrustsOwnerFields),
            }
    }

    fn run(&self, s: &mut State, p: usize, write: Write) {
        let d = &self.d;
        let now = s.now;
        let me = s.procs[p];
        let (phase, wake) = match me.phase {
            Phase::JoinRead { attempt, may_fast } => {
                if self.takes_fast(s, p, may_fast) {
                    self.join_write(s, p, attempt, now, s.slot, write)
                } else {
                    (Phase::JoinWatch { attempt, first: s.slot }, now + d.dead_fast)
                }
            }
            Phase::JoinWatch { attempt, first } => {
                if s.slot != first {
                    (self.lost(s, p), now + d.io)
                } else {
                    self.join_write(s, p, attempt, now, first, write)
                }
            }
            Phase::JoinLanding { attempt, start, rec, passes } => {
                s.slot = Some(rec);
                if passes {
                    (Phase::JoinConfirm { start, rec }, now + d.delay_fast)
                } else if attempt < 2 {
                    (Phase::JoinRead { attempt: attempt + 1, may_fast: false }, now)
                } else {
                    (self.lost(s, p), now)
                }
            }
            Phase::JoinConfirm { start, rec } => {
                if s.slot == Some(rec) {
                    s.procs[p].proof = Some(rec);
                    (Phase::Holding { rec, confirmed: rec.renewal, last_attempt: rec.renewal, valid_from: start, saw_foreign: false }, now + d.renew)
                } else {
                    (self.lost(s, p), now + d.io)
                }
            }
            Phase::Holding { rec, confirmed, last_attempt, valid_from, mut saw_foreign } => {
                // Read first: our slot must hold one of our own writes.
                let found = Ok(s.slot.map(slot));
                let mine = slot(Rec { renewal: confirmed, ..rec });
                if let OwnSlot::Taken(_) = check_own(&found, &mine, last_attempt as u64) {
                    saw_foreign = true;
                    if !self.bug(Bug::NoRenewalOwnershipCheck) {
                        (self.lost(s, p), now)
                    } else {
                        self.renew(s, p, write, rec, confirmed, last_attempt, valid_from, saw_foreign)
                    }
                } else {
                    self.renew(s, p, write, rec, confirmed, last_attempt, valid_from, saw_foreign)
                }
            }
            Phase::Lost => {
                s.joins_left[p] -= 1;
                (Phase::JoinRead { attempt: 0, may_fast: true }, now)
            }
            Phase::Idle | Phase::Out | Phase::Crashed { .. } => unreachable!("no event"),
        };
        s.procs[p].phase = phase;
        s.procs[p].wake = wake;
    }

    /// A lost lease: rejoin while the budget lasts.
    fn lost(&self, s: &State, p: usize) -> Phase {
        if s.joins_left[p] > 0 {
            Phase::Lost
        } else {
            Phase::Out
        }
    }

    /// `renew_once` after its read: unless the lease has run out, write the
    /// next renewal; it counts if it completes.
    #[allow(clippy::too_many_arguments)]
    fn renew(&self, s: &mut State, p: usize, write: Write, rec: Rec, confirmed: u8, last_attempt: u8, valid_from: u32, saw_foreign: bool) -> (Phase, u32) {
        let (d, now) = (&self.d, s.now);
        if now >= valid_from + d.expiry_slow {
            return (self.lost(s, p), now);
        }
        let next = Rec { renewal: last_attempt + 1, ..rec };
        let holding = |confirmed, valid_from| Phase::Holding { rec, confirmed, last_attempt: last_attempt + 1, valid_from, saw_foreign };
        if Self::write_now(s, p as u8, next, write) {
            s.procs[p].proof = Some(next);
            (holding(next.renewal, now), now + d.renew)
        } else if write == Write::Timeout {
            // The renewal thread waited the whole deadline.
            (holding(confirmed, valid_from), now + d.io)
        } else {
            (holding(confirmed, valid_from), now + d.renew)
        }
    }

    /// The join's write of a new record over `seen`, issued now.
    fn join_write(&self, s: &mut State, p: usize, attempt: u8, start: u32, seen: Option<Rec>, write: Write) -> (Phase, u32) {
        if !Self::io_ok(s, p as u8) {
            // IoOutstanding: a write of ours to the slot may still land.
            return (self.lost(s, p), start + self.d.io);
        }
        let rec = Self::fresh(s, seen);
        match write {
            Write::Now => {
                Self::write_now(s, p as u8, rec, write);
                (Phase::JoinConfirm { start, rec }, start + self.d.delay_fast)
            }
            Write::Slow => (Phase::JoinLanding { attempt, start, rec, passes: true }, start + self.d.span_slow),
            Write::TooSlow => (Phase::JoinLanding { attempt, start, rec, passes: false }, start + self.d.span_slow + 1),
            Write::Timeout => {
                Self::write_now(s, p as u8, rec, write);
                (self.lost(s, p), start + self.d.io)
            }
        }
    }

    fn has_event(p: &Proc) -> bool {
        !matches!(p.phase, Phase::Idle | Phase::Out | Phase::Crashed { .. })
    }
}

impl crate::Explain for HostModel {
    fn explain(&self, before: &State, action: &Action) -> String {
        let t = before.now;
        match action {
            Action::Run { p, write } => {
                let phase = format!("{:?}", before.procs[*p as usize].phase);
                let name = phase.split(['(', ' ']).next().unwrap_or_default().to_owned();
                format!("t={t} process {p}: {name} (write: {write:?}; slot {:?})", before.slot)
            }
            Action::Advance => format!("t={t} time passes"),
            other => format!("t={t} {other:?} (slot {:?})", before.slot),
        }
    }
}

impl Model for HostModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let first = Rec { gen: 1, nonce: 1, renewal: 1 };
        let p0 = if self.cfg.race {
            Proc { phase: Phase::Idle, wake: 0, proof: None }
        } else {
            Proc { phase: Phase::Holding { rec: first, confirmed: 1, last_attempt: 1, valid_from: 0, saw_foreign: false }, wake: self.d.renew, proof: Some(first) }
        };
        vec![State {
            now: 0,
            slot: (!self.cfg.race).then_some(first),
            procs: [p0, Proc { phase: Phase::Idle, wake: 0, proof: None }],
            pending: Vec::new(),
            observer: Observer { wake: 0, record: None, seen: false, last_change: 0, quiet_read_start: None },
            next_nonce: 1,
            faults_left: self.cfg.faults,
            freezes_left: self.cfg.freezes,
            crashes_left: u8::from(self.cfg.second == Second::Restart),
            joins_left: [self.cfg.rejoins; 2],
            dead_while_valid: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let mut due = false;
        for (i, p) in s.procs.iter().enumerate() {
            let pid = i as u8;
            if Self::has_event(p) && p.wake == s.now {
                due = true;
                for write in self.writes(s, i) {
                    if write != Write::Timeout || (s.faults_left > 0 && Self::io_ok(s, pid)) {
                        actions.push(Action::Run { p: pid, write });
                    }
                }
                if s.faults_left > 0 && !matches!(p.phase, Phase::Lost | Phase::JoinLanding { .. }) {
                    actions.push(Action::ReadFails { p: pid });
                }
            }
            if Self::has_event(p) && !matches!(p.phase, Phase::JoinLanding { .. }) && s.freezes_left > 0 {
                actions.push(Action::Freeze { p: pid });
            }
        }
        if s.observer.wake == s.now {
            due = true;
            actions.push(Action::Observe);
        }
        for (p, _) in &s.pending {
            actions.push(Action::Land { p: *p });
            actions.push(Action::Drop { p: *p });
        }
        let [p0, p1] = &s.procs;
        match self.cfg.second {
            Second::Twin if p1.phase == Phase::Idle => actions.push(Action::Start { p: 1 }),
            Second::Restart if s.crashes_left > 0 && matches!(p0.phase, Phase::Holding { .. }) => actions.push(Action::Crash),
            Second::Restart if matches!(p0.phase, Phase::Crashed { .. }) && p1.phase == Phase::Idle && Self::io_ok(s, 0) => {
                actions.push(Action::Restart { resume: true });
                actions.push(Action::Restart { resume: false });
            }
            _ => {}
        }
        if self.cfg.race && p0.phase == Phase::Idle {
            actions.push(Action::Start { p: 0 });
        }
        if !due {
            actions.push(Action::Advance);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Advance => {
                let next = s.procs.iter().filter(|p| Self::has_event(p)).map(|p| p.wake).chain([s.observer.wake]).min().expect("the observer always wakes");
                s.now = next;
            }
            Action::Run { p, write } => self.run(&mut s, p as usize, write),
            Action::ReadFails { p } => {
                s.faults_left -= 1;
                let me = &mut s.procs[p as usize];
                match me.phase {
                    // `renew_once`: a failed read is a failed renewal.
                    Phase::Holding { .. } => me.wake = s.now + self.d.io.max(self.d.renew),
                    _ => me.phase = Phase::Out,
                }
            }
            Action::Observe => {
                // `Peers::observe` and `Peers::state` for our one slot.
                let o = &mut s.observer;
                if !o.seen || o.record != s.slot {
                    *o = Observer { wake: o.wake, record: s.slot, seen: true, last_change: s.now, quiet_read_start: None };
                } else {
                    o.quiet_read_start = Some(s.now);
                }
                o.wake = s.now + self.d.renew;
                if let (true, Some(r)) = (o.dead(self.d.dead_fast), o.record) {
                    if self.valid(&s).iter().any(|(v, _)| v.gen == r.gen) {
                        s.dead_while_valid = true;
                    }
                }
            }
            Action::Land { p } => {
                let i = s.pending.iter().position(|(q, _)| *q == p).expect("pending");
                s.slot = Some(s.pending.remove(i).1);
            }
            Action::Drop { p } => s.pending.retain(|(q, _)| *q != p),
            Action::Freeze { p } => {
                s.freezes_left -= 1;
                s.procs[p as usize].wake = s.now.max(s.procs[p as usize].wake) + self.d.dead_fast + 2 * self.d.io;
            }
            Action::Crash => {
                s.crashes_left -= 1;
                let p0 = &mut s.procs[0];
                if let Phase::Holding { rec, confirmed, valid_from, .. } = p0.phase {
                    p0.phase = Phase::Crashed { held: Some((rec, valid_from)), saved: Some((Rec { renewal: confirmed, ..rec }, valid_from)) };
                }
            }
            Action::Restart { resume: false } => s.procs[1] = Proc { phase: Phase::JoinRead { attempt: 0, may_fast: true }, wake: s.now, proof: None },
            Action::Restart { resume: true } => {
                let Phase::Crashed { saved, .. } = s.procs[0].phase else { unreachable!("restarts follow a crash") };
                let (proof, valid_from) = saved.expect("the daemon saved its resume state");
                // `try_resume`: before fence_begin, carry on with the same lease.
                let resumable = s.now < valid_from + self.d.fence_slow && s.slot.is_some_and(|r| r.gen == proof.gen && r.nonce == proof.nonce);
                s.procs[0].phase = Phase::Crashed { held: None, saved: None };
                s.procs[1] = if resumable {
                    let rec = s.slot.expect("resumable");
                    Proc { phase: Phase::Holding { rec, confirmed: rec.renewal, last_attempt: rec.renewal, valid_from, saw_foreign: false }, wake: s.now + self.d.renew, proof: Some(rec) }
                } else {
                    // `fence_before_rejoin`, then a join with the predecessor proof.
                    Proc { phase: Phase::JoinRead { attempt: 0, may_fast: true }, wake: s.now, proof: Some(proof) }
                };
            }
            Action::Start { p } => s.procs[p as usize] = Proc { phase: Phase::JoinRead { attempt: 0, may_fast: true }, wake: s.now, proof: None },
        }
        Some(s)
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.now <= self.cfg.horizon
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("one holder per host id", |m: &HostModel, s: &State| {
                let v = m.valid(s);
                v.iter().all(|(r, _)| r.gen == v[0].0.gen && r.nonce == v[0].0.nonce)
            }),
            Property::always("dead means expired", |_, s: &State| !s.dead_while_valid),
            Property::always("a host that found another writer holds nothing", |m: &HostModel, s: &State| m.valid(s).iter().all(|(_, foreign)| !foreign)),
        ]
    }
}
