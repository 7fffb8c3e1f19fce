//! One host of the torture test (tests/torture.rs): joins the lockspace and
//! loops acquire / use / release on a few contended resources, writing each
//! checked use to its witness file, while a fault hook fails and delays its
//! I/O. Rejoins whenever its host lease is lost.
//!
//! Usage: hl-torture-host LOCKSPACE HOST_ID RUN_DIR SEED RESOURCES PROC TWIN
//! LOCKSPACE is one path, or the member devices of a set joined by commas.
//! PROC numbers this process in the witness; TWIN (0 or 1) names it
//! `torture-ID` or `torture-ID-twin`: the twin is a second process
//! configured with the same host id, which must never make two writers.
//! Commands on stdin, one per line (EOF means stop):
//!   io FAIL_PPM DELAY_PPM DELAY_MAX_MS   per-I/O failure and delay odds
//!   hang MS                              hold every I/O issued in the next MS until then
//!   member K FAIL_PPM HANG_MS DELAY_MS   member K (0-based) of a set: fail this
//!                                        share of its I/O, hold what is issued in
//!                                        the next HANG_MS until then, delay the rest
//!                                        by DELAY_MS (0 0 0: healthy again)
//!   stop                                 release, leave, exit 0
//! Exit status 2: the engine returned an error no fault explains.

use testkit::rng;
// Shared with the checker, which also parses what this binary writes.
use testkit::witness;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::clock::Mono;
use engine::error::{Error, IoOp};
use engine::storage::{Fault, FaultHook};
use engine::{AcquireRequest, Health, Holder, JoinOptions, Lease, Lockspace, Mode};
use rng::Rng;
use witness::{Event, Kind};

struct ChaosState {
    rng: Rng,
    fail_ppm: u32,
    delay_ppm: u32,
    delay_max: Duration,
    hang_until: Option<Mono>,
    /// Per member of a set: its own fault on top of the host's.
    members: Vec<MemberFault>,
}

#[derive(Clone, Copy, Default)]
struct MemberFault {
    fail_ppm: u32,
    hang_until: Option<Mono>,
    delay: Duration,
}

/// The fault hook: the driver sets the odds, the host's seed picks the I/Os.
struct Chaos(Mutex<ChaosState>);

impl FaultHook for Chaos {
    fn on_io(&self, member: usize, _op: IoOp, _sector: u64, _count: u64) -> Fault {
        let mut s = self.0.lock().unwrap();
        let now = Mono::now();
        if let Some(until) = s.hang_until.filter(|&u| now < u) {
            return Fault::Delay(until.since(now));
        }
        let m = s.members.get(member).copied().unwrap_or_default();
        if let Some(until) = m.hang_until.filter(|&u| now < u) {
            return Fault::Delay(until.since(now));
        }
        if s.rng.ppm(m.fail_ppm) {
            return Fault::Fail;
        }
        if !m.delay.is_zero() {
            return Fault::Delay(m.delay);
        }
        let (fail, delay, max) = (s.fail_ppm, s.delay_ppm, s.delay_max);
        if s.rng.ppm(fail) {
            Fault::Fail
        } else if s.rng.ppm(delay) {
            Fault::Delay(s.rng.between(Duration::ZERO, max))
        } else {
            Fault::Proceed
        }
    }
}

impl Chaos {
    fn command(&self, line: &str) {
        let f: Vec<u64> = line.split(' ').skip(1).map(|w| w.parse().unwrap_or_else(|_| panic!("bad command {line:?}"))).collect();
        let mut s = self.0.lock().unwrap();
        match (line.split(' ').next(), &f[..]) {
            (Some("io"), &[fail, delay, max_ms]) => {
                s.fail_ppm = fail as u32;
                s.delay_ppm = delay as u32;
                s.delay_max = Duration::from_millis(max_ms);
            }
            (Some("hang"), &[ms]) => s.hang_until = Some(Mono::now().add(Duration::from_millis(ms))),
            (Some("member"), &[k, fail, hang_ms, delay_ms]) => {
                let k = k as usize;
                if s.members.len() <= k {
                    s.members.resize(k + 1, MemberFault::default());
                }
                s.members[k] = MemberFault { fail_ppm: fail as u32, hang_until: (hang_ms > 0).then(|| Mono::now().add(Duration::from_millis(hang_ms))), delay: Duration::from_millis(delay_ms) };
            }
            _ => panic!("bad command {line:?}"),
        }
    }
}

/// Errors that the injected faults, contention or a lost host lease explain.
fn expected(e: &Error, host_id: u32) -> bool {
    match e {
        Error::Busy(_)
        | Error::Contended { .. }
        | Error::Io { .. }
        | Error::IoTimeout { .. }
        | Error::IoOutstanding { .. }
        | Error::IoInjected { .. }
        | Error::NoMajority { .. }
        | Error::HostLeaseLost { .. }
        | Error::JoinUnconfirmed { .. } => true,
        // A late write of one of our own earlier join attempts, or the twin.
        Error::HostIdBusy { holder, .. } => *holder == format!("torture-{host_id}") || *holder == format!("torture-{host_id}-twin"),
        _ => false,
    }
}

struct Host {
    paths: Vec<PathBuf>,
    id: u32,
    proc: u64,
    name: String,
    resources: u32,
    rng: Rng,
    chaos: Arc<Chaos>,
    stop: Arc<AtomicBool>,
    witness: std::fs::File,
    acquired: u64,
    /// Expected errors by kind, for the exit line: where a host's time went.
    errors: std::collections::BTreeMap<String, u32>,
}

impl Host {
    fn check(&mut self, what: &str, e: Error) {
        if !expected(&e, self.id) {
            eprintln!("host {}: unexpected error from {what}: {e} ({e:?})", self.id);
            std::process::exit(2);
        }
        let kind = format!("{e:?}");
        let kind = kind.split([' ', '(', '{']).next().unwrap_or_default();
        *self.errors.entry(format!("{what} {kind}")).or_default() += 1;
    }

    /// `predecessor`: our previous lockspace's last write, for a fast rejoin.
    fn join(&mut self, predecessor: Option<engine::delta_lease::Incarnation>) -> Option<Lockspace> {
        let mut opts = JoinOptions::members(self.paths.clone(), self.id, &self.name);
        opts.fault = Some(self.chaos.clone());
        opts.predecessor = predecessor;
        while !self.stop.load(Ordering::Relaxed) {
            match Lockspace::join(opts.clone()) {
                Ok(ls) => {
                    eprintln!("host {}: joined, generation {}", self.id, ls.generation());
                    return Some(ls);
                }
                Err(e) => {
                    eprintln!("host {}: join failed at {:?}: {e}", self.id, Mono::now());
                    self.check("join", e);
                    std::thread::sleep(Duration::from_millis(20 + self.rng.below(80)));
                }
            }
        }
        None
    }

    /// Now, if our leases are valid now by the engine's own claim.
    fn valid_now(ls: &Lockspace) -> Option<u64> {
        let until = ls.valid_until()?;
        let t = Mono::now();
        (t < until).then_some(t.0)
    }

    fn record(&mut self, kind: Kind, resource: u32, lease: &Lease, t: u64) {
        let e = Event { kind, resource, host: self.id, proc: self.proc, generation: lease.generation, lver: lease.lver, mode: lease.mode, t };
        // One write(2) per line on an O_APPEND file: lines never interleave
        // and survive SIGKILL.
        self.witness.write_all(e.to_line().as_bytes()).expect("witness write");
    }

    /// Uses the lease a few times, then releases it.
    fn hold(&mut self, ls: &Lockspace, resource: u32, lease: &Lease, tick: Duration) {
        let uses = 1 + self.rng.below(5);
        for i in 0..=uses {
            if i > 0 {
                std::thread::sleep(self.rng.between(tick / 20, tick / 2));
            }
            let Some(t) = Host::valid_now(ls) else { break };
            let kind = match i {
                0 => Kind::Start,
                i if i == uses => Kind::End,
                _ => Kind::Use,
            };
            self.record(kind, resource, lease, t);
        }
        if let Err(e) = ls.release(lease) {
            self.check("release", e);
        }
    }

    /// Acquire / use / release until stopped or the host lease is lost.
    fn work(&mut self, ls: &Lockspace) {
        let tick = ls.timeouts().io_timeout;
        while !self.stop.load(Ordering::Relaxed) && !matches!(ls.health(), Health::Lost { .. }) {
            let resource = self.rng.below(self.resources as u64) as u32;
            // Resource 0 is also taken shared, the others only exclusive.
            let mode = if resource == 0 && self.rng.below(3) == 0 { Mode::Shared } else { Mode::Exclusive };
            let req = AcquireRequest {
                identity: format!("file:/torture/res{resource}"),
                mode,
                holder: Holder { uuid: [self.id as u8; 16], name: format!("guest-{}", self.id) },
                expect_lver: None,
            };
            match ls.acquire(&req) {
                Ok(lease) => {
                    self.acquired += 1;
                    self.hold(ls, resource, &lease, tick);
                    std::thread::sleep(self.rng.between(Duration::ZERO, tick / 4));
                }
                Err(e) => {
                    self.check("acquire", e);
                    std::thread::sleep(self.rng.between(tick / 10, tick / 2));
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, id, dir, seed, resources, proc, twin] = &args[..] else {
        panic!("usage: hl-torture-host LOCKSPACE HOST_ID RUN_DIR SEED RESOURCES PROC TWIN");
    };
    let id: u32 = id.parse().expect("host id");
    let proc: u64 = proc.parse().expect("proc");
    let name = if twin == "1" { format!("torture-{id}-twin") } else { format!("torture-{id}") };
    let seed: u64 = seed.parse().expect("seed");
    let chaos = Arc::new(Chaos(Mutex::new(ChaosState {
        rng: Rng::new(seed ^ 0xC4A0_5C4A_05C4_A05C),
        fail_ppm: 0,
        delay_ppm: 0,
        delay_max: Duration::ZERO,
        hang_until: None,
        members: Vec::new(),
    })));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (chaos, stop) = (chaos.clone(), stop.clone());
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line.as_deref() {
                    Ok("stop") | Err(_) => break,
                    Ok(cmd) => chaos.command(cmd),
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let witness = std::fs::OpenOptions::new().create(true).append(true).open(PathBuf::from(dir).join(format!("witness-{name}.log"))).expect("open witness file");
    let mut host = Host {
        paths: path.split(',').map(PathBuf::from).collect(),
        id,
        proc,
        name,
        resources: resources.parse().expect("resource count"),
        rng: Rng::new(seed),
        chaos,
        stop,
        witness,
        acquired: 0,
        errors: Default::default(),
    };
    let mut predecessor = None;
    while let Some(ls) = host.join(predecessor) {
        host.work(&ls);
        if host.stop.load(Ordering::Relaxed) {
            if let Err(e) = ls.leave() {
                host.check("leave", e);
            }
            break;
        }
        eprintln!("host {}: host lease lost ({:?}); rejoining", id, ls.health());
        ls.clone().stop();
        predecessor = Some(ls.incarnation());
    }
    eprintln!("host {id}: stopped after {} acquisitions; expected errors: {:?}", host.acquired, host.errors);
}
