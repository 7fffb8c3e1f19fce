//! Multi-host torture test: HOSTS host processes (tests/support/torture_host.rs),
//! plus TWINS more configured with the host ids of the first TWINS (a
//! duplicate host id: they must take turns, never write at once),
//! contend for a few resources on one lockspace file while the driver kills
//! and restarts them, freezes them past host_dead, and makes their I/O fail,
//! stall and hang. Each host writes every use of a lease, checked against the
//! engine's `valid_until()`, to a witness file; afterwards the checker proves
//! from the witness alone that no two holders ever overlapped, and that every
//! host made progress once the faults stopped.
//!
//! HL_TORTURE_SECS (default 60) sets the length of the fault phase,
//! HL_TORTURE_SEED replays a run (the seed is printed first).

use testkit::rng;
use testkit::witness;
use testkit::gluster;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use engine::clock::Mono;
use engine::timing::Timeouts;
use engine::{InitOptions, Mode};
use rng::Rng;
use witness::{Event, Kind};

const HOSTS: u32 = 8;
/// Processes 9 and 10 are twins of hosts 1 and 2: same host id, own name.
const TWINS: u32 = 2;
const PROCS: u32 = HOSTS + TWINS;
const RESOURCES: u32 = 3;
const IO_TIMEOUT: Duration = Duration::from_millis(200);
/// Per-I/O faults every host always runs with: 0.2% fail, 0.5% delayed by up
/// to 1.5 io_timeout.
const BASELINE_FAIL_PPM: u32 = 2_000;
const BASELINE_DELAY_PPM: u32 = 5_000;
/// After the faults stop, how long every host gets to acquire again.
const CALM_DEADLINE: Duration = Duration::from_secs(60);
/// How long a stopped host may take to release, leave and exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

// ------------------------------------------------------------- checker ---

/// One lease as the witness saw it used: from its start to its last use.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    resource: u32,
    host: u32,
    proc: u64,
    generation: u64,
    lver: u64,
    mode: Mode,
    from: u64,
    to: u64,
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {} (process {}) gen {} lver {} {} [{}..{}]", self.host, self.proc, self.generation, self.lver, self.mode, self.from, self.to)
    }
}

fn sessions(events: &[Event]) -> Vec<Session> {
    let mut by_lease: BTreeMap<(u32, u32, u64, u64, u64, bool), Session> = BTreeMap::new();
    for e in events {
        let key = (e.resource, e.host, e.proc, e.generation, e.lver, e.mode == Mode::Shared);
        let s = by_lease.entry(key).or_insert(Session { resource: e.resource, host: e.host, proc: e.proc, generation: e.generation, lver: e.lver, mode: e.mode, from: e.t, to: e.t });
        s.from = s.from.min(e.t);
        s.to = s.to.max(e.t);
    }
    by_lease.into_values().collect()
}

/// Safety violations among the sessions of each resource. Lease versions
/// are chosen once each and in order, so for two different leases of one
/// resource, unless both are shared: they must not share a version, and
/// every use of the older version must precede the newer one's start. That
/// covers overlapping holders and a stale holder waking after a newer one.
/// (Shared holders coexist; one that re-acquires through its registration
/// still on disk reports the version of the last ballot its dblock joined,
/// which can be another shared holder's.)
fn violations(sessions: &[Session]) -> Vec<String> {
    let mut found = Vec::new();
    let mut by_resource: HashMap<u32, Vec<&Session>> = HashMap::new();
    for s in sessions {
        by_resource.entry(s.resource).or_default().push(s);
    }
    for (resource, list) in by_resource {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if (a.host, a.proc, a.generation) == (b.host, b.proc, b.generation) && a.lver == b.lver {
                    continue;
                }
                if a.mode == Mode::Shared && b.mode == Mode::Shared {
                    continue;
                }
                let (old, new) = if a.lver <= b.lver { (a, b) } else { (b, a) };
                if old.lver == new.lver {
                    found.push(format!("resource {resource}: two holders of lease version {}: {old} and {new}", old.lver));
                } else if old.to >= new.from {
                    found.push(format!(
                        "resource {resource}: {old} was still in use {} µs after {new} began",
                        (old.to - new.from) / 1000
                    ));
                }
            }
        }
    }
    found.sort();
    found
}

fn read_witness(dir: &Path) -> Vec<Event> {
    let mut events = Vec::new();
    for slot in 1..=PROCS {
        let text = std::fs::read_to_string(dir.join(format!("witness-{}.log", proc_name(slot)))).unwrap_or_default();
        events.extend(text.lines().map(|l| Event::parse(l).unwrap()));
    }
    events
}

/// The host id process slot `slot` runs as.
fn host_of(slot: u32) -> u32 {
    if slot > HOSTS {
        slot - HOSTS
    } else {
        slot
    }
}

/// The host name of process slot `slot` (as torture_host.rs names itself).
fn proc_name(slot: u32) -> String {
    if slot > HOSTS {
        format!("torture-{}-twin", host_of(slot))
    } else {
        format!("torture-{slot}")
    }
}

// --------------------------------------------------------------- fleet ---

/// A command line for `io`: failure and delay odds per I/O.
fn io_command(fail_ppm: u32, delay_ppm: u32, delay_max: Duration) -> String {
    format!("io {fail_ppm} {delay_ppm} {}", delay_max.as_millis())
}

struct HostProc {
    child: Child,
    stdin: ChildStdin,
    /// SIGSTOPped until then.
    frozen_until: Option<Instant>,
    /// Under a fault burst until then.
    burst_until: Option<Instant>,
}

/// The host processes. Dropping it (also on panic) kills every one.
struct Fleet {
    exe: PathBuf,
    /// Process `id` uses `lockspaces[id % len]`: one lockspace reached by several paths.
    lockspaces: Vec<PathBuf>,
    dir: PathBuf,
    seed: u64,
    baseline: String,
    hosts: BTreeMap<u32, HostProc>,
    starts: u64,
    failures: Vec<String>,
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we have not yet reaped, so the pid
    // cannot have been reused.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig}): {}", child.id(), std::io::Error::last_os_error());
}

impl Fleet {
    fn spawn(&mut self, id: u32) {
        self.starts += 1;
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{}.stderr", proc_name(id)))).unwrap();
        let mut child = Command::new(&self.exe)
            .arg(&self.lockspaces[id as usize % self.lockspaces.len()])
            .arg(host_of(id).to_string())
            .arg(&self.dir)
            .arg((self.seed ^ (u64::from(id) << 40) ^ self.starts.wrapping_mul(0x9E37_79B9)).to_string())
            .arg(RESOURCES.to_string())
            .arg(self.starts.to_string())
            .arg(if id > HOSTS { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.exe.display()));
        let stdin = child.stdin.take().unwrap();
        let mut host = HostProc { child, stdin, frozen_until: None, burst_until: None };
        writeln!(host.stdin, "{}", self.baseline).unwrap();
        self.hosts.insert(id, host);
    }

    fn broadcast(&mut self, line: &str) {
        for id in 1..=PROCS {
            self.send(id, line);
        }
    }

    fn send(&mut self, id: u32, line: &str) {
        // A host that died has closed its stdin; `reap` reports it.
        let _ = writeln!(self.hosts.get_mut(&id).unwrap().stdin, "{line}");
    }

    /// Notes hosts that exited on their own (a panic or an unexpected error)
    /// and starts them again.
    fn reap(&mut self) {
        let dead: Vec<(u32, std::process::ExitStatus)> = self.hosts.iter_mut().filter_map(|(&id, h)| h.child.try_wait().unwrap().map(|s| (id, s))).collect();
        for (id, status) in dead {
            self.failures.push(format!("process {} exited by itself with {status}; see {}", proc_name(id), self.dir.join(format!("{}.stderr", proc_name(id))).display()));
            self.spawn(id);
        }
    }

    fn kill_and_restart(&mut self, id: u32) {
        let mut h = self.hosts.remove(&id).unwrap();
        h.child.kill().unwrap();
        h.child.wait().unwrap();
        self.spawn(id);
    }

    fn freeze(&mut self, id: u32, for_: Duration) {
        let h = self.hosts.get_mut(&id).unwrap();
        signal(&h.child, libc::SIGSTOP);
        h.frozen_until = Some(Instant::now() + for_);
    }

    /// Ends freezes and fault bursts that are due (all of them with `all`).
    fn thaw(&mut self, all: bool) {
        let now = Instant::now();
        let due = |t: Option<Instant>| t.is_some_and(|t| all || t <= now);
        let mut unburst = Vec::new();
        for (&id, h) in &mut self.hosts {
            if due(h.frozen_until) {
                signal(&h.child, libc::SIGCONT);
                h.frozen_until = None;
            }
            if due(h.burst_until) {
                h.burst_until = None;
                unburst.push(id);
            }
        }
        for id in unburst {
            let line = self.baseline.clone();
            self.send(id, &line);
        }
    }

    /// Asks every host to stop and waits for each to exit cleanly.
    fn shutdown(&mut self) {
        self.thaw(true);
        for id in 1..=PROCS {
            self.send(id, "stop");
        }
        let deadline = Instant::now() + EXIT_DEADLINE;
        for (id, mut h) in std::mem::take(&mut self.hosts) {
            let status = loop {
                if let Some(s) = h.child.try_wait().unwrap() {
                    break Some(s);
                }
                if Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            match status {
                Some(s) if s.success() => {}
                Some(s) => self.failures.push(format!("process {} exited with {s} when asked to stop", proc_name(id))),
                None => {
                    self.failures.push(format!("process {} did not exit within {EXIT_DEADLINE:?} of being asked to stop (deadlock?)", proc_name(id)));
                    let _ = h.child.kill();
                    let _ = h.child.wait();
                }
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for h in self.hosts.values_mut() {
            let _ = h.child.kill();
            let _ = h.child.wait();
        }
    }
}

// ---------------------------------------------------------------- test ---

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// Hosts that have not started a lease since `since`.
fn idle_since(dir: &Path, since: Mono) -> Vec<u32> {
    let events = read_witness(dir);
    (1..=HOSTS).filter(|&id| !events.iter().any(|e| e.host == id && e.kind == Kind::Start && e.t > since.0)).collect()
}

/// The fleets share two cores: one at a time.
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn init_torture_lockspace(path: &Path, io_timeout: Duration) {
    init_torture_members(&[path.to_owned()], io_timeout);
}

fn init_torture_members(paths: &[PathBuf], io_timeout: Duration) {
    let mut opts = InitOptions::new("torture");
    opts.max_hosts = 16;
    opts.resource_slots = 8;
    opts.io_timeout = io_timeout;
    engine::init::init_members(paths, &opts).unwrap();
}

#[test]
fn torture() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("torture");
    let lockspace = dir.join("lockspace");
    init_torture_lockspace(&lockspace, IO_TIMEOUT);
    run_torture(&dir, vec![lockspace], IO_TIMEOUT, env_u64("HL_TORTURE_SECS").unwrap_or(60), 1);
}

/// The same on a lockspace of three devices (three files). On top of the
/// host faults, one member at a time fails every I/O, hangs, or answers
/// slowly, as seen by every host at once or by one host alone (a path to
/// one array failing); now and then two members go away together, and with
/// no majority the hosts must fence before any peer takes over.
#[test]
fn torture_on_three_devices() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("torture-members");
    let members: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("member{i}"))).collect();
    init_torture_members(&members, IO_TIMEOUT);
    let joined = PathBuf::from(members.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(","));
    run_torture(&dir, vec![joined], IO_TIMEOUT, env_u64("HL_MEMBER_TORTURE_SECS").unwrap_or(45), 3);
}

/// The same on a GlusterFS replica 3 arbiter 1 volume (options: `group
/// virt`), the hosts split over two FUSE mounts of it. A slower io_timeout:
/// every I/O crosses FUSE and three brick processes on these two cores.
#[test]
fn torture_on_glusterfs() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("torture-gluster");
    let mut g = gluster::Gluster::start(&dir.join("bed"), "hltorture");
    let mounts = [dir.join("mnt-a"), dir.join("mnt-b")];
    for m in &mounts {
        g.mount(None, m);
    }
    g.set(&["group", "virt"], |m| !gluster::volfile(m).contains("performance/quick-read") && gluster::direct_io(m));
    let io_timeout = Duration::from_millis(500);
    init_torture_lockspace(&mounts[0].join("lockspace"), io_timeout);
    let witness = dir.join("run");
    std::fs::create_dir_all(&witness).unwrap();
    run_torture(&witness, mounts.iter().map(|m| m.join("lockspace")).collect(), io_timeout, env_u64("HL_GLUSTER_TORTURE_SECS").unwrap_or(30), 1);
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the fleet on `lockspaces` (one lockspace, by one or more paths; a
/// set's members joined by commas), its witness files in `dir`, and checks
/// the history. With `members` > 1 the lockspace's members get faults too.
fn run_torture(dir: &Path, lockspaces: Vec<PathBuf>, io_timeout: Duration, secs: u64, members: u64) {
    let seed = env_u64("HL_TORTURE_SEED").unwrap_or_else(|| u64::from_le_bytes(engine::sys::random_bytes()[..8].try_into().unwrap()));
    println!("torture: HL_TORTURE_SEED={seed} {secs} s, {HOSTS} hosts + {TWINS} twins sharing host ids 1..={TWINS}, {RESOURCES} resources, io_timeout {io_timeout:?}, lockspace {lockspaces:?}");
    let t = Timeouts::new(io_timeout).unwrap();
    let delay_max = t.io_timeout * 3 / 2;
    let mut fleet = Fleet {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_hl-torture-host")),
        lockspaces,
        dir: dir.to_owned(),
        seed,
        baseline: io_command(BASELINE_FAIL_PPM, BASELINE_DELAY_PPM, delay_max),
        hosts: BTreeMap::new(),
        starts: 0,
        failures: Vec::new(),
    };
    for id in 1..=PROCS {
        fleet.spawn(id);
    }

    // Fault phase.
    let mut rng = Rng::new(seed);
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(secs);
    // The member faults in force: until when, and on which members; and
    // the spans (by the witness clock) when every host had a majority.
    let mut member_fault: Option<(Instant, Vec<u64>)> = None;
    let mut majority_spans: Vec<(Mono, Mono)> = Vec::new();
    while Instant::now() < end {
        std::thread::sleep(rng.between(Duration::from_millis(200), Duration::from_millis(700)));
        fleet.thaw(false);
        fleet.reap();
        if let Some((_, faulty)) = member_fault.take_if(|(until, _)| *until <= Instant::now()) {
            for k in faulty {
                fleet.broadcast(&format!("member {k} 0 0 0"));
            }
        }
        if members > 1 && member_fault.is_none() && rng.below(4) == 0 {
            let k = rng.below(members);
            let for_ = rng.between(2 * t.io_timeout, t.host_dead + 4 * t.io_timeout);
            let (cmd, action) = match rng.below(100) {
                0..=29 => (format!("member {k} 1000000 0 0"), "member fails"),
                30..=59 => (format!("member {k} 0 {} 0", for_.as_millis()), "member hangs"),
                60..=79 => (format!("member {k} 0 0 {}", (t.io_timeout / 2).as_millis()), "member slow"),
                80..=89 => (format!("member {k} 1000000 0 0"), "member fails for one host"),
                _ => (format!("member {k} 1000000 0 0"), "two members fail"),
            };
            let mut faulty = vec![k];
            match action {
                "member fails for one host" => fleet.send(1 + rng.below(PROCS as u64) as u32, &cmd),
                "two members fail" => {
                    let other = (k + 1 + rng.below(members - 1)) % members;
                    fleet.broadcast(&cmd);
                    fleet.broadcast(&format!("member {other} 1000000 0 0"));
                    faulty.push(other);
                }
                _ => fleet.broadcast(&cmd),
            }
            println!("{:>8.3} s  member {k}: {action} for {for_:?}", Instant::now().saturating_duration_since(end - Duration::from_secs(secs)).as_secs_f64());
            *counts.entry(action).or_default() += 1;
            if faulty.len() == 1 {
                majority_spans.push((Mono::now(), Mono::now().add(for_)));
            }
            member_fault = Some((Instant::now() + for_, faulty));
        }
        let id = 1 + rng.below(PROCS as u64) as u32;
        let frozen = fleet.hosts.values().filter(|h| h.frozen_until.is_some()).count();
        let action = match rng.below(100) {
            0..=11 => {
                fleet.kill_and_restart(id);
                "kill+restart"
            }
            // At most two frozen at once, so the rest keep contending.
            12..=23 if frozen < 2 && fleet.hosts[&id].frozen_until.is_none() => {
                if rng.ppm(700_000) {
                    let d = rng.between(t.host_dead + t.io_timeout, t.host_dead + 6 * t.io_timeout);
                    fleet.freeze(id, d);
                    "freeze past host_dead"
                } else {
                    let d = rng.between(t.io_timeout, 3 * t.io_timeout);
                    fleet.freeze(id, d);
                    "short freeze"
                }
            }
            24..=39 => {
                let line = io_command(50_000, 50_000, delay_max);
                fleet.send(id, &line);
                fleet.hosts.get_mut(&id).unwrap().burst_until = Some(Instant::now() + rng.between(Duration::from_secs(1), Duration::from_secs(3)));
                "I/O fault burst"
            }
            40..=47 => {
                let ms = rng.between(t.io_timeout, 8 * t.io_timeout).as_millis();
                fleet.send(id, &format!("hang {ms}"));
                "storage hang"
            }
            _ => continue,
        };
        println!("{:>8.3} s  {}: {action}", Instant::now().saturating_duration_since(end - Duration::from_secs(secs)).as_secs_f64(), proc_name(id));
        *counts.entry(action).or_default() += 1;
    }
    println!("faults injected: {counts:?}");

    // Calm phase: every host must acquire again.
    fleet.thaw(true);
    for id in 1..=PROCS {
        fleet.send(id, &io_command(0, 0, Duration::ZERO));
    }
    for k in 0..members {
        fleet.broadcast(&format!("member {k} 0 0 0"));
    }
    let calm = Mono::now();
    let calm_deadline = Instant::now() + CALM_DEADLINE;
    let idle = loop {
        fleet.reap();
        let idle = idle_since(dir, calm);
        if idle.is_empty() || Instant::now() >= calm_deadline {
            break idle;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("calm phase: {:.1} s, hosts still idle: {idle:?}", Mono::now().since(calm).as_secs_f64());
    fleet.shutdown();

    let events = read_witness(dir);
    let sessions = sessions(&events);
    // Per host: leases held, and generations (joins) that held any.
    let mut per_host: BTreeMap<u32, (u32, std::collections::BTreeSet<u64>)> = BTreeMap::new();
    for s in &sessions {
        let h = per_host.entry(s.host).or_default();
        h.0 += 1;
        h.1.insert(s.generation);
    }
    let summary: Vec<String> = per_host.iter().map(|(id, (n, gens))| format!("{id}: {n} leases in {} generations", gens.len())).collect();
    println!("{} witness events, {} leases held; host {}", events.len(), sessions.len(), summary.join(", "));
    let twins: Vec<String> = (HOSTS + 1..=PROCS)
        .map(|slot| {
            let starts = std::fs::read_to_string(dir.join(format!("witness-{}.log", proc_name(slot)))).unwrap_or_default().lines().filter(|l| l.starts_with("start ")).count();
            format!("{} {starts}", proc_name(slot))
        })
        .collect();
    println!("leases started by the twins: {}", twins.join(", "));
    let bad = violations(&sessions);
    let mut problems = std::mem::take(&mut fleet.failures);
    if !majority_spans.is_empty() {
        // With one member away, leases keep being granted.
        let during = events.iter().filter(|e| e.kind == Kind::Start && majority_spans.iter().any(|(a, b)| (a.0..b.0).contains(&e.t))).count();
        let span: Duration = majority_spans.iter().map(|(a, b)| b.since(*a)).sum();
        println!("leases started while one member was away: {during} in {span:?}");
        if during == 0 {
            problems.push(format!("no lease was started in the {span:?} that one member was away"));
        }
    }
    problems.extend(bad.iter().take(20).cloned());
    if !idle.is_empty() {
        problems.push(format!("hosts {idle:?} never acquired within {CALM_DEADLINE:?} after the faults stopped"));
    }
    assert!(problems.is_empty(), "seed {seed}: {} safety violations; run dir {} kept\n{}", bad.len(), dir.display(), problems.join("\n"));
    let _ = std::fs::remove_dir_all(dir);
}

// Deterministic replays of the engine bugs this test found.

fn two_hosts(name: &str, fault: Option<std::sync::Arc<dyn engine::storage::FaultHook>>) -> (PathBuf, engine::Lockspace, engine::Lockspace) {
    two_hosts_with(name, fault, None)
}

/// Hosts A (id 1) and B (id 2), each with its own fault hook.
fn two_hosts_with(name: &str, fault_a: Option<std::sync::Arc<dyn engine::storage::FaultHook>>, fault_b: Option<std::sync::Arc<dyn engine::storage::FaultHook>>) -> (PathBuf, engine::Lockspace, engine::Lockspace) {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("torture-{name}-{}.lockspace", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut opts = InitOptions::new("replay");
    opts.max_hosts = 4;
    opts.resource_slots = 4;
    opts.io_timeout = IO_TIMEOUT;
    engine::init::init(&path, &opts).unwrap();
    let mut a = engine::JoinOptions::new(&path, 1, "host-a");
    a.fault = fault_a;
    let mut b = engine::JoinOptions::new(&path, 2, "host-b");
    b.fault = fault_b;
    (path.clone(), engine::Lockspace::join(a).unwrap(), engine::Lockspace::join(b).unwrap())
}

fn exclusive(identity: &str) -> engine::AcquireRequest {
    engine::AcquireRequest { identity: identity.into(), mode: Mode::Exclusive, holder: engine::Holder { uuid: [9; 16], name: "vm".into() }, expect_lver: None }
}

/// A's commit of version 1 lands late (as after a SIGSTOP), over version 2:
/// the leader says A holds version 1. A must not take that as its lease.
#[test]
fn a_late_leader_write_cannot_hand_out_an_old_version() {
    use std::os::unix::fs::FileExt;
    let (path, a, b) = two_hosts("late-leader", None);
    let disk = "file:/late-leader";
    let la = a.acquire(&exclusive(disk)).unwrap();
    let offset = a.header().layout().resource_base(la.slot) * a.header().sector_size as u64;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut stale = [0u8; 512];
    file.read_exact_at(&mut stale, offset).unwrap();
    a.release(&la).unwrap();
    let lb = b.acquire(&exclusive(disk)).unwrap();
    assert_eq!(lb.lver, 2);
    b.release(&lb).unwrap();
    file.write_all_at(&stale, offset).unwrap();
    file.sync_data().unwrap();
    // A finds B's version 2 in the dblocks and repairs the leader to it;
    // B's dblock still records B's release, so version 2 stays released.
    assert!(matches!(a.acquire(&exclusive(disk)), Err(engine::Error::Busy(_))));
    let lb = b.acquire(&exclusive(disk)).unwrap();
    assert_eq!(lb.lver, 3);
    b.release(&lb).unwrap();
    assert_eq!(a.acquire(&exclusive(disk)).unwrap().lver, 4);
    let _ = std::fs::remove_file(&path);
}

/// Fails writes to one sector while armed.
struct FailSector(std::sync::atomic::AtomicU64);

impl engine::storage::FaultHook for FailSector {
    fn on_io(&self, _member: usize, op: engine::error::IoOp, sector: u64, _count: u64) -> engine::storage::Fault {
        if op == engine::error::IoOp::Write && sector == self.0.load(std::sync::atomic::Ordering::Relaxed) {
            engine::storage::Fault::Fail
        } else {
            engine::storage::Fault::Proceed
        }
    }
}

/// A's release lands only as a RELEASED dblock (its leader write failed), so
/// peers may take the lease; A's next acquire must not reuse the old version.
#[test]
fn a_release_recorded_only_in_the_dblock_is_final() {
    let hook = std::sync::Arc::new(FailSector(std::sync::atomic::AtomicU64::new(u64::MAX)));
    let (path, a, b) = two_hosts("released-dblock", Some(hook.clone()));
    let disk = "file:/released-dblock";
    let la = a.acquire(&exclusive(disk)).unwrap();
    hook.0.store(a.header().layout().resource_base(la.slot), std::sync::atomic::Ordering::Relaxed);
    a.release(&la).unwrap();
    hook.0.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    let again = a.acquire(&exclusive(disk)).unwrap();
    assert_eq!(again.lver, 2, "re-acquire after release must win a new version");
    assert!(matches!(b.acquire(&exclusive(disk)), Err(engine::Error::Busy(_))));
    let _ = std::fs::remove_file(&path);
}

/// Holds writes to one sector past the deadline (they land later, as on a
/// hung device) and fails writes to another.
struct LateAndFailed {
    late: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    hold: Duration,
}

impl engine::storage::FaultHook for LateAndFailed {
    fn on_io(&self, _member: usize, op: engine::error::IoOp, sector: u64, _count: u64) -> engine::storage::Fault {
        use std::sync::atomic::Ordering::Relaxed;
        match op {
            engine::error::IoOp::Write if sector == self.late.load(Relaxed) => engine::storage::Fault::Delay(self.hold),
            engine::error::IoOp::Write if sector == self.failed.load(Relaxed) => engine::storage::Fault::Fail,
            _ => engine::storage::Fault::Proceed,
        }
    }
}

/// A's release times out on the leader (the write lands later) and fails
/// on its dblock. A's next acquire read the leader still naming A and took
/// "already mine" for the old version; the late release then freed it and
/// B took the next version while A used the old one (found by a 10-minute
/// soak, seed 892070139997564096). A must not trust what it read while its
/// own write was in flight.
#[test]
fn a_release_still_in_flight_is_not_taken_for_a_hold() {
    use std::sync::atomic::Ordering::Relaxed;
    let t = Timeouts::new(IO_TIMEOUT).unwrap();
    let hook = std::sync::Arc::new(LateAndFailed { late: u64::MAX.into(), failed: u64::MAX.into(), hold: t.io_deadline * 3 });
    let (path, a, b) = two_hosts("release-in-flight", Some(hook.clone()));
    let disk = "file:/release-in-flight";
    let la = a.acquire(&exclusive(disk)).unwrap();
    let leader = a.header().layout().resource_base(la.slot);
    hook.late.store(leader, Relaxed);
    hook.failed.store(a.header().layout().dblock(la.slot, a.host_id()), Relaxed);
    // The dblock's failure is the one reported: only it makes a release final.
    assert!(matches!(a.release(&la), Err(engine::Error::IoInjected { .. })));
    hook.late.store(u64::MAX, Relaxed);
    hook.failed.store(u64::MAX, Relaxed);
    match a.acquire(&exclusive(disk)) {
        Err(engine::Error::IoOutstanding { .. }) => {}
        other => panic!("acquire while our release is in flight: {other:?}"),
    }
    // Once the late release has landed, the lease is free for anyone, at the next version.
    let deadline = Instant::now() + t.io_deadline * 10;
    let lb = loop {
        match b.acquire(&exclusive(disk)) {
            Ok(l) => break l,
            Err(engine::Error::Busy(_)) if Instant::now() < deadline => std::thread::sleep(t.renew_interval / 4),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(lb.lver, 2);
    assert!(matches!(a.acquire(&exclusive(disk)), Err(engine::Error::Busy(_))));
    let _ = std::fs::remove_file(&path);
}

/// Stops the first write to one sector (once armed) until opened: the
/// writer is caught between reading a resource and writing its dblock.
#[derive(Default)]
struct Gate {
    state: std::sync::Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    sector: Option<u64>,
    reached: bool,
    open: bool,
}

impl Gate {
    fn arm(&self, sector: u64) {
        self.state.lock().unwrap().sector = Some(sector);
    }
    fn wait_reached(&self) {
        let s = self.state.lock().unwrap();
        drop(self.changed.wait_while(s, |s| !s.reached).unwrap());
    }
    fn open(&self) {
        self.state.lock().unwrap().open = true;
        self.changed.notify_all();
    }
}

impl engine::storage::FaultHook for Gate {
    fn on_io(&self, _member: usize, op: engine::error::IoOp, sector: u64, _count: u64) -> engine::storage::Fault {
        let mut s = self.state.lock().unwrap();
        if op == engine::error::IoOp::Write && s.sector == Some(sector) && !s.reached {
            s.reached = true;
            self.changed.notify_all();
            drop(self.changed.wait_while(s, |s| !s.open).unwrap());
        }
        engine::storage::Fault::Proceed
    }
}

/// Another host's commit of A's version lands late, after A released it:
/// the leader names A as holder again. B, which read the release, is
/// already balloting for the next version; A's next acquire took the
/// resurrected leader for "already mine" and used the old version while B
/// won the new one (found by the torture test on GlusterFS, seed
/// 17828213066102740463). A release must stay final whoever rewrites the
/// leader afterwards.
#[test]
fn a_leader_another_host_wrote_late_does_not_undo_a_release() {
    use std::os::unix::fs::FileExt;
    let gate = std::sync::Arc::new(Gate::default());
    let (path, a, b) = two_hosts_with("late-commit", None, Some(gate.clone()));
    let disk = "file:/late-commit";
    let la = a.acquire(&exclusive(disk)).unwrap();
    let layout = a.header().layout();
    let offset = layout.resource_base(la.slot) * a.header().sector_size as u64;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    // What a third host's commit of A's chosen value writes.
    let commit = {
        let mut buf = [0u8; 512];
        file.read_exact_at(&mut buf, offset).unwrap();
        buf
    };
    a.release(&la).unwrap();
    gate.arm(layout.dblock(la.slot, b.host_id()));
    let b = std::sync::Arc::new(b);
    let contender = {
        let b = b.clone();
        std::thread::spawn(move || b.acquire(&exclusive(disk)))
    };
    gate.wait_reached();
    file.write_all_at(&commit, offset).unwrap();
    file.sync_data().unwrap();
    let again = a.acquire(&exclusive(disk));
    gate.open();
    let contended = contender.join().unwrap();
    match (&again, &contended) {
        (Ok(la), Ok(lb)) => panic!("two holders: A at version {}, B at version {}", la.lver, lb.lver),
        (Ok(la), _) => assert_eq!(la.lver, 2, "A's re-acquire must win a new version, not reuse the released one"),
        _ => {}
    }
    assert!(again.is_ok() || contended.is_ok(), "nobody holds it: A {again:?}, B {contended:?}");
    let _ = std::fs::remove_file(&path);
}

// The checker must be able to fail: synthetic histories.

fn ev(kind: Kind, host: u32, lver: u64, mode: Mode, t: u64) -> Event {
    Event { kind, resource: 0, host, proc: u64::from(host), generation: 1, lver, mode, t }
}

fn check_lines(events: &[Event]) -> Vec<String> {
    // Round-trip through the text format the hosts write.
    let parsed: Vec<Event> = events.iter().map(|e| Event::parse(e.to_line().trim_end()).unwrap()).collect();
    assert_eq!(parsed, events);
    violations(&sessions(&parsed))
}

#[test]
fn checker_accepts_a_clean_history() {
    use Kind::*;
    use Mode::*;
    let clean = [
        ev(Start, 1, 1, Exclusive, 10),
        ev(End, 1, 1, Exclusive, 20),
        ev(Start, 2, 2, Shared, 30),
        ev(Start, 3, 3, Shared, 35),
        ev(End, 2, 2, Shared, 40),
        ev(Use, 3, 3, Shared, 45),
        ev(Start, 1, 4, Exclusive, 50),
        ev(End, 1, 4, Exclusive, 55),
        // Two shared holders reporting one version.
        ev(Start, 2, 5, Shared, 60),
        ev(Start, 3, 5, Shared, 61),
        ev(End, 2, 5, Shared, 62),
    ];
    assert_eq!(check_lines(&clean), Vec::<String>::new());
}

#[test]
fn checker_catches_overlaps_and_stale_holders() {
    use Kind::*;
    use Mode::*;
    let overlap = [ev(Start, 1, 1, Exclusive, 10), ev(Start, 2, 2, Exclusive, 15), ev(Use, 1, 1, Exclusive, 20)];
    assert_eq!(check_lines(&overlap).len(), 1);
    let shared_vs_exclusive = [ev(Start, 1, 1, Shared, 10), ev(Start, 2, 2, Exclusive, 15), ev(Use, 1, 1, Shared, 20)];
    assert_eq!(check_lines(&shared_vs_exclusive).len(), 1);
    // Host 1 wakes and uses version 1 after version 2 came and went.
    let stale = [ev(Start, 1, 1, Exclusive, 10), ev(Start, 2, 2, Exclusive, 15), ev(End, 2, 2, Exclusive, 20), ev(Use, 1, 1, Exclusive, 25)];
    assert_eq!(check_lines(&stale).len(), 1);
    let same_version = [ev(Start, 1, 7, Exclusive, 10), ev(End, 1, 7, Exclusive, 11), ev(Start, 2, 7, Exclusive, 30)];
    assert_eq!(check_lines(&same_version).len(), 1);
    let same_version_shared = [ev(Start, 1, 7, Shared, 10), ev(End, 1, 7, Shared, 11), ev(Start, 2, 7, Exclusive, 30)];
    assert_eq!(check_lines(&same_version_shared).len(), 1);
    // Two processes with one host id (twins) both using one lease.
    let twin = Event { proc: 99, ..ev(Use, 1, 7, Exclusive, 12) };
    assert_eq!(check_lines(&[ev(Start, 1, 7, Exclusive, 10), twin, ev(End, 1, 7, Exclusive, 20)]).len(), 1);
}
