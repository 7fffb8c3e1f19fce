//! The fence sentinel: guests never outlive their leases, even when no
//! highlanderd runs any more.
//!
//! highlanderd stops (SIGTERM, `systemctl stop`) or dies (SIGKILL, a crash)
//! without fencing its guests, on purpose: a daemon started again within the
//! resume window (fence_begin = 3.5T after the last renewal) carries on with
//! the same host lease and re-adopts them. If none comes back, their
//! lock-failure actions must still run before the leases expire (4.5T):
//! other hosts take the disks over at host_dead (5.5T). That is the
//! sentinel, `highlanderd --fence-sentinel`, a small process every daemon
//! starts for itself at start-up, before it takes responsibility for any
//! guest, and that outlives it:
//!
//! - while its daemon runs, it only waits on the daemon's pidfd;
//! - once the daemon has exited, it reads what the daemon left in the state
//!   dir (the table, `guests.json`, and each lockspace's resume state,
//!   `lockspace-NAME.json`), holds the guests that hold leases by pidfd
//!   (pid + start time), and at the deadline a restarted daemon uses to
//!   refuse a resume (valid_from + fence_begin) applies each guest's action
//!   with `fence::fence_now`: poweroff = SIGKILL, waited for; pause/restart =
//!   the fence helper within T/2, else SIGKILL; ignore = logged. All done by
//!   valid_from + lease_expiry;
//! - it stands down for a lockspace once a later daemon has joined it
//!   (resumed, or fenced and joined afresh), and exits when nothing is left.
//!
//! Hand-over without a race: a starting daemon decides "resume" and a
//! sentinel decides "fence" under one lock (`fence.lock` in the state dir),
//! both comparing CLOCK_BOOTTIME with the same deadline from the same file.
//! A starting daemon takes the lock before it reads the saved table and
//! keeps it until its own sentinel is armed and it has recorded in
//! `fence-owner.json` that it answers for the lockspaces it joined. A
//! sentinel fences a lockspace only while that file still names its daemon
//! for it. So either the new daemon resumed before the deadline and the old
//! sentinel stands down, or the sentinel fenced at or after it and the new
//! daemon finds the window closed and joins afresh (`fence_before_rejoin`).
//! `highlanderd.lock`, held by a daemon for its whole life, keeps a second
//! daemon away from a state dir in use (it would take the hand-over).
//!
//! Why at start-up rather than at stop: a daemon that is SIGKILLed, aborts
//! or is OOM-killed runs no code at exit, and one stopping cleanly may be
//! unable to fork or exec right then (memory pressure, a binary replaced by
//! an upgrade); started with the daemon, the sentinel is already armed when
//! it is needed, and a failure to start it stops the daemon from starting
//! rather than leaving guests unguarded later.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::fence::escalate;
use crate::fence::{self, FenceConfig};
use crate::guest::{self, Guest, Pidfd};
use crate::heartbeat;
use crate::persist::Store;
use crate::Daemon;
use engine::clock::Mono;
use engine::timing::Timeouts;

/// The hidden command-line flag of the sentinel mode.
pub const FLAG: &str = "--fence-sentinel";
/// Held by the running daemon: one highlanderd per state dir.
const INSTANCE_LOCK: &str = "highlanderd.lock";
/// Resume and fence decisions are taken under it.
const HANDOVER_LOCK: &str = "fence.lock";
/// Which daemon answers for each lockspace's guests.
const OWNERS: &str = "fence-owner.json";
/// A starting daemon waits this long for its sentinel to report `ready`.
const READY_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("state dir {dir}: another highlanderd ({holder}) is running with it; stop it first")]
    Running { dir: PathBuf, holder: String },
    #[error("cannot start the fence sentinel: {0}")]
    Start(String),
}

fn open_lock(path: &Path) -> Result<File, SentinelError> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path).map_err(|source| SentinelError::Io {
        what: "cannot open lock file",
        path: path.to_owned(),
        source,
    })
}

/// `highlanderd.lock`, held for the daemon's whole life (released by the
/// kernel when the process is gone, however it ends).
pub struct Instance {
    _file: File,
}

impl Instance {
    pub fn take(state_dir: &Path) -> Result<Instance, SentinelError> {
        let path = state_dir.join(INSTANCE_LOCK);
        let mut file = open_lock(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = if pid.trim().is_empty() { "pid unknown".to_owned() } else { format!("pid {}", pid.trim()) };
                return Err(SentinelError::Running { dir: state_dir.to_owned(), holder });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(SentinelError::Io { what: "cannot lock", path, source }),
        }
        // For the message above; informational only.
        let _ = file.set_len(0).and_then(|()| file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0));
        Ok(Instance { _file: file })
    }
}

/// `fence.lock`, held while a daemon decides to resume or a sentinel to
/// fence; released when dropped.
pub struct Handover {
    _file: File,
    dir: PathBuf,
}

impl Handover {
    pub fn lock(state_dir: &Path) -> Result<Handover, SentinelError> {
        let path = state_dir.join(HANDOVER_LOCK);
        let file = open_lock(&path)?;
        let locked = match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                log::warn!("{} is held (a fence sentinel is fencing, or a starting highlanderd is deciding whether to resume); waiting for it", path.display());
                file.lock()
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        };
        locked.map_err(|source| SentinelError::Io { what: "cannot lock", path, source })?;
        Ok(Handover { _file: file, dir: state_dir.to_owned() })
    }

    /// Records that `sentinel`'s daemon now answers for the guests of the
    /// lockspaces it joined: the previous sentinel stands down for them.
    pub fn take_over(&self, sentinel: &Sentinel) -> Result<(), SentinelError> {
        let path = self.dir.join(OWNERS);
        let mut owners = read_owners(&self.dir).unwrap_or_else(|| {
            log::warn!("{}: unreadable; rewriting it", path.display());
            BTreeMap::new()
        });
        for (name, _) in &sentinel.spec.lockspaces {
            owners.insert(name.clone(), sentinel.owner());
        }
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec(&owners).expect("owners serialise");
        std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &path)).map_err(|source| SentinelError::Io { what: "cannot write", path, source })
    }
}

/// Who answers for a lockspace's guests (`fence-owner.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub daemon_pid: u32,
    /// Start time of the daemon process (/proc/PID/stat): pids are reused.
    pub daemon_start: u64,
    /// For admins and tests; the daemon starts a new one if it dies.
    pub sentinel_pid: u32,
}

/// The owners file; empty when there is none, None when it is unreadable.
fn read_owners(dir: &Path) -> Option<BTreeMap<String, Owner>> {
    match std::fs::read(dir.join(OWNERS)) {
        Ok(text) => serde_json::from_slice(&text).ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(BTreeMap::new()),
        Err(_) => None,
    }
}

/// What a sentinel is told by its daemon (JSON on its stdin).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Spec {
    daemon_pid: u32,
    daemon_start: u64,
    state_dir: PathBuf,
    fence: FenceConfig,
    log_level: String,
    /// Each lockspace the daemon joined, with its timeouts.
    lockspaces: Vec<(String, SpaceTimes)>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct SpaceTimes {
    io_timeout_ms: u64,
    fence_begin_ms: u64,
    fence_deadline_ms: u64,
    lease_expiry_ms: u64,
}

impl SpaceTimes {
    fn io_timeout(&self) -> Duration {
        Duration::from_millis(self.io_timeout_ms)
    }
    fn fence_begin(&self) -> Duration {
        Duration::from_millis(self.fence_begin_ms)
    }
    fn fence_deadline(&self) -> Duration {
        Duration::from_millis(self.fence_deadline_ms)
    }
    fn lease_expiry(&self) -> Duration {
        Duration::from_millis(self.lease_expiry_ms)
    }
}

/// A running sentinel, as its daemon sees it.
pub struct Sentinel {
    spec: Spec,
    child: Child,
}

impl Sentinel {
    /// Starts the sentinel of this daemon for `lockspaces` (name, timeouts)
    /// and returns once it watches the daemon.
    pub fn start(cfg: &Config, lockspaces: impl IntoIterator<Item = (String, Timeouts)>) -> Result<Sentinel, SentinelError> {
        let daemon_pid = std::process::id();
        let daemon_start = guest::start_time(daemon_pid).map_err(|e| SentinelError::Start(format!("cannot read this process's start time: {e}")))?;
        let ms = |d: Duration| d.as_millis() as u64;
        let spec = Spec {
            daemon_pid,
            daemon_start,
            state_dir: cfg.state_dir.clone(),
            fence: cfg.into(),
            log_level: cfg.log_level.to_string(),
            lockspaces: lockspaces
                .into_iter()
                .map(|(name, t)| {
                    let times = SpaceTimes { io_timeout_ms: ms(t.io_timeout), fence_begin_ms: ms(t.fence_begin), fence_deadline_ms: ms(t.fence_deadline), lease_expiry_ms: ms(t.lease_expiry) };
                    (name, times)
                })
                .collect(),
        };
        let child = spawn(&spec)?;
        log::info!("fence sentinel armed: pid {}", child.id());
        Ok(Sentinel { spec, child })
    }

    pub fn owner(&self) -> Owner {
        Owner { daemon_pid: self.spec.daemon_pid, daemon_start: self.spec.daemon_start, sentinel_pid: self.child.id() }
    }
}

/// Runs `highlanderd --fence-sentinel` in a session of its own (no signal
/// for the daemon's process group reaches it) and hands it `spec`.
fn spawn(spec: &Spec) -> Result<Child, SentinelError> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("highlanderd").arg(FLAG).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    // SAFETY: between fork and exec the closure calls only setsid(2), which
    // is async-signal-safe, allocates nothing and touches no shared state.
    unsafe {
        cmd.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = cmd.spawn().map_err(|e| SentinelError::Start(format!("cannot run {FLAG}: {e}")))?;
    let ready = (|| {
        let mut stdin = child.stdin.take().expect("piped");
        let mut json = serde_json::to_vec(spec).expect("the spec serialises");
        json.push(b'\n');
        stdin.write_all(&json).map_err(|e| format!("cannot hand it its instructions: {e}"))?;
        drop(stdin);
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .spawn(move || {
                let mut line = String::new();
                let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
            })
            .map_err(|e| format!("cannot start a thread to read its answer: {e}"))?;
        match rx.recv_timeout(READY_WITHIN) {
            Ok(Ok(line)) if line.trim() == "ready" => Ok(()),
            Ok(Ok(line)) => Err(format!("it answered {:?} instead of \"ready\"", line.trim())),
            Ok(Err(e)) => Err(format!("cannot read its answer: {e}")),
            Err(_) => Err(format!("it did not report ready within {READY_WITHIN:?}")),
        }
    })();
    if let Err(why) = ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SentinelError::Start(why));
    }
    Ok(child)
}

/// Reaps the sentinel; should it ever die while the daemon runs (it ignores
/// SIGTERM, SIGINT and SIGHUP, so a SIGKILL or a crash), starts another.
pub fn supervise(daemon: Arc<Daemon>, mut sentinel: Sentinel) -> Result<(), super::StartError> {
    daemon.sentinel_pid.store(sentinel.child.id(), Ordering::SeqCst);
    let run = move || loop {
        let status = sentinel.child.wait();
        if daemon.stopping() {
            return;
        }
        log::error!(
            "fence sentinel (pid {}) ended ({}) while highlanderd runs: if highlanderd stopped now its guests would not be fenced; starting a new one",
            sentinel.child.id(),
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        );
        loop {
            let restarted = spawn(&sentinel.spec).and_then(|child| {
                sentinel.child = child;
                Handover::lock(&daemon.cfg.state_dir)?.take_over(&sentinel)
            });
            match restarted {
                Ok(()) => {
                    log::warn!("fence sentinel armed again: pid {}", sentinel.child.id());
                    daemon.sentinel_pid.store(sentinel.child.id(), Ordering::SeqCst);
                    break;
                }
                Err(e) => {
                    log::error!("{e}; retrying in 1 s");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    };
    super::thread("hl-sentinel".into(), run)
}

// ------------------------------------------------------ sentinel mode ---

/// `highlanderd --fence-sentinel`: reads its instructions on stdin, answers
/// `ready`, waits for its daemon to exit, then fences what it left behind.
pub fn run() -> ExitCode {
    block_stop_signals();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"hl-sentinel".as_ptr() as libc::c_ulong, 0, 0, 0) };
    let mut line = String::new();
    let spec = std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string()).and_then(|_| serde_json::from_str::<Spec>(&line).map_err(|e| e.to_string()));
    let spec = match spec {
        Ok(s) => s,
        Err(e) => {
            eprintln!("highlanderd {FLAG}: no valid instructions on stdin ({e}); this mode is started by highlanderd itself");
            return ExitCode::FAILURE;
        }
    };
    let level = spec.log_level.parse().unwrap_or(log::LevelFilter::Info);
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format(|buf, r| writeln!(buf, "[{} {} fence-sentinel] {}", buf.timestamp_millis(), r.level(), r.args()))
        .try_init();
    let daemon = Pidfd::open(spec.daemon_pid).ok();
    // SAFETY: getppid takes no arguments and cannot fail.
    let parent = unsafe { libc::getppid() } as u32;
    // The pidfd was opened first: if the daemon is still our parent now,
    // the pidfd is the daemon's (otherwise it has exited already).
    let daemon = daemon.filter(|_| parent == spec.daemon_pid);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"ready\n").and_then(|()| out.flush());
    drop(out);
    // The daemon closes its end: fence helpers must not write into it.
    // SAFETY: dup2 of this process's own stderr onto its stdout.
    unsafe { libc::dup2(2, 1) };
    if let Some(pidfd) = daemon {
        watch_live(&spec, &pidfd);
    }
    watch(&spec);
    ExitCode::SUCCESS
}

/// While the daemon runs: waits for its exit, or, should it hang with
/// leases at stake past the fencing time (`heartbeat.rs`), SIGKILLs it.
fn watch_live(spec: &Spec, daemon: &Pidfd) {
    let watched: Vec<heartbeat::Watched> =
        spec.lockspaces.iter().map(|(name, t)| heartbeat::Watched { name, fence_begin: t.fence_begin(), stale: t.io_timeout() / 2 }).collect();
    let round = spec.lockspaces.iter().map(|(_, t)| heartbeat::round(t.io_timeout())).min().unwrap_or(Duration::from_secs(1));
    let (mut awake_since, mut last_round) = (Mono::now(), Mono::now());
    while !daemon.wait_exit(round) {
        let now = Mono::now();
        // A round that came this late means the sentinel was not running
        // (the host froze, or starved it): the daemon may just be waking too.
        if now.since(last_round) > 2 * round {
            awake_since = now;
        }
        last_round = now;
        let Some(why) = heartbeat::hung(&spec.state_dir, spec.fence.host_id, &watched, awake_since) else { continue };
        log::error!("highlanderd (pid {}) is alive but hung: {why}; killing it (SIGKILL) and fencing its guests", spec.daemon_pid);
        if let Err(e) = daemon.kill() {
            log::error!("cannot kill highlanderd (pid {}): {e}; fencing its guests anyway", spec.daemon_pid);
        }
        // A thread stuck in I/O keeps the process from exiting, but SIGKILL
        // has stopped every other one: none of its code runs any more.
        if !daemon.wait_exit(round) {
            log::error!("highlanderd (pid {}) has not exited {round:?} after SIGKILL (a thread stuck in I/O?); fencing its guests anyway", spec.daemon_pid);
        }
        return;
    }
}

/// The sentinel must outlive a `systemctl stop` and a Ctrl-C: only SIGKILL
/// ends it. Blocked rather than ignored, so that fence helpers (whose mask
/// std::process::Command clears) start with the usual dispositions.
fn block_stop_signals() {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset/sigaddset;
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// One lockspace whose guests this sentinel answers for.
struct Plan {
    name: String,
    times: SpaceTimes,
    /// Generations of the leases held (one, unless the daemon died mid-rejoin).
    generations: BTreeSet<u64>,
    /// Guest pid -> its disks in this lockspace (for the messages).
    disks: BTreeMap<u32, Vec<String>>,
    /// Why there is no deadline from the resume state, once logged.
    no_stamp: Option<String>,
}

impl Plan {
    /// The start of the last renewal that counted, by the resume state; the
    /// Unix epoch of CLOCK_BOOTTIME (fence at once) when it cannot vouch.
    fn valid_from(&mut self, dir: &Path, host_id: u32) -> Mono {
        let file = engine::lockspace::resume_file(dir, &self.name);
        let why = match engine::lockspace::saved_renewal(&file) {
            Ok((id, generation, valid_from)) if id == host_id && self.generations.len() == 1 && self.generations.contains(&generation) => return valid_from,
            Ok((id, generation, _)) => format!("it is for host {id} generation {generation}, the leases for generation(s) {:?}", self.generations),
            Err(e) => e,
        };
        if self.no_stamp.as_ref() != Some(&why) {
            log::error!("lockspace \"{}\": no usable resume state in {} ({why}): fencing at once", self.name, file.display());
            self.no_stamp = Some(why);
        }
        Mono(0)
    }
}

/// After the daemon's exit: fences, at the deadline, the guests it left
/// holding leases, unless a later daemon takes them over first.
fn watch(spec: &Spec) {
    let dir = &spec.state_dir;
    let cfg = &spec.fence;
    // The later daemon that answers for lockspace `name` now, if any. An
    // unreadable owners file shows no take-over: we still answer (and fence).
    let taken_by = |owners: &Option<BTreeMap<String, Owner>>, name: &str| -> Option<Owner> {
        let other = owners.as_ref()?.get(name).copied()?;
        (other.daemon_pid != spec.daemon_pid || other.daemon_start != spec.daemon_start).then_some(other)
    };
    let owners = read_owners(dir);
    let table = match Store::new(dir).load(cfg.host_id) {
        Ok(t) => t,
        Err(e) => {
            log::error!("highlanderd (pid {}) exited, but its saved guests cannot be read ({e}): no guest can be fenced from here", spec.daemon_pid);
            return;
        }
    };
    let mut guests: BTreeMap<u32, (Guest, Pidfd)> = BTreeMap::new();
    let mut plans: Vec<Plan> = Vec::new();
    for (name, times) in &spec.lockspaces {
        if taken_by(&owners, name).is_some() {
            continue;
        }
        let mut plan = Plan { name: name.clone(), times: *times, generations: BTreeSet::new(), disks: BTreeMap::new(), no_stamp: None };
        for ((ls, identity), d) in &table.disks {
            if ls != name {
                continue;
            }
            plan.generations.insert(d.lease.generation);
            for pid in &d.holders {
                plan.disks.entry(*pid).or_default().push(format!("{identity} ({})", d.path));
            }
        }
        plan.disks.retain(|pid, _| {
            if guests.contains_key(pid) {
                return true;
            }
            let Some(g) = table.guests.get(pid) else { return false };
            match guest::track(*pid, Some(g.start_time)) {
                Some((pidfd, _)) => {
                    // `fenced` from here on means fenced by this sentinel: one
                    // the daemon fenced once may have been resumed since, or
                    // its helper may have failed before the daemon escalated.
                    guests.insert(*pid, (Guest { fenced: false, ..g.clone() }, pidfd));
                    true
                }
                None => false,
            }
        });
        if !plan.disks.is_empty() {
            plans.push(plan);
        }
    }
    if plans.is_empty() {
        log::info!("highlanderd (pid {}) exited; no running guest holds a lease it answered for: nothing to fence", spec.daemon_pid);
        return;
    }
    for p in &mut plans {
        let fence_at = p.valid_from(dir, cfg.host_id).add(p.times.fence_begin());
        log::warn!(
            "highlanderd (pid {}) exited while {} guest(s) hold leases in lockspace \"{}\": their lock-failure actions run in {:.1?} unless a highlanderd resumes this host's lease first",
            spec.daemon_pid,
            p.disks.len(),
            p.name,
            fence_at.remaining()
        );
    }
    loop {
        let owners = read_owners(dir);
        plans.retain(|p| match taken_by(&owners, &p.name) {
            Some(other) => {
                log::info!("lockspace \"{}\": highlanderd (pid {}) took over its guests; standing down", p.name, other.daemon_pid);
                false
            }
            None => true,
        });
        for p in &mut plans {
            p.disks.retain(|pid, _| guests.get(pid).is_some_and(|(g, pidfd)| !g.fenced && !pidfd.exited()));
            if p.disks.is_empty() {
                log::info!("lockspace \"{}\": every guest that held leases is gone or fenced", p.name);
            }
        }
        plans.retain(|p| !p.disks.is_empty());
        if plans.is_empty() {
            return;
        }
        let now = Mono::now();
        let mut next: Option<Mono> = None;
        let mut due = false;
        for p in &mut plans {
            let fence_at = p.valid_from(dir, cfg.host_id).add(p.times.fence_begin());
            due |= fence_at <= now;
            next = Some(next.map_or(fence_at, |n| n.min(fence_at)));
        }
        if !due {
            let tick = plans.iter().map(|p| heartbeat::round(p.times.io_timeout())).min().expect("a plan");
            std::thread::sleep(next.expect("a plan").since(now).min(tick));
            continue;
        }
        // Decide under the hand-over lock: a daemon resuming right now
        // either has finished (and owns the lockspace) or waits for us.
        let lock = Handover::lock(dir);
        if let Err(e) = &lock {
            log::error!("{e}; fencing without the hand-over lock");
        }
        let owners = read_owners(dir);
        let mut i = 0;
        while i < plans.len() {
            let p = &mut plans[i];
            if taken_by(&owners, &p.name).is_some() {
                i += 1; // stands down at the top of the loop
                continue;
            }
            let valid_from = p.valid_from(dir, cfg.host_id);
            if Mono::now() < valid_from.add(p.times.fence_begin()) {
                i += 1;
                continue;
            }
            fence_plan(spec, p, valid_from, &mut guests);
            plans.swap_remove(i);
        }
        drop(lock);
    }
}

/// Applies the action of every guest in `p` at once (one thread each), so
/// one slow pause helper does not hold up the next guest's kill.
fn fence_plan(spec: &Spec, p: &Plan, valid_from: Mono, guests: &mut BTreeMap<u32, (Guest, Pidfd)>) {
    let expiry = valid_from.add(p.times.lease_expiry());
    let deadline = escalate::exit_deadline(valid_from, p.times.fence_deadline(), p.times.lease_expiry() - p.times.fence_deadline());
    let why = format!(
        "highlanderd (pid {}) exited and no highlanderd resumed this host's lease within the resume window ({:?} after its last renewal); its leases expire in {:.1?}",
        spec.daemon_pid,
        p.times.fence_begin(),
        expiry.remaining()
    );
    let stuck: Vec<String> = std::thread::scope(|s| {
        let fencing: Vec<_> = guests
            .iter_mut()
            .filter_map(|(pid, (g, pidfd))| {
                let disks = p.disks.get(pid).filter(|_| !g.fenced)?;
                let why = format!("{why}; disks {}", disks.join(", "));
                Some(s.spawn(move || fence::fence_now(&spec.fence, g, pidfd, &p.name, &why, deadline).stuck().then(|| g.to_string())))
            })
            .collect();
        fencing.into_iter().filter_map(|h| h.join().expect("a fence thread panicked")).collect()
    });
    if !stuck.is_empty() {
        escalate::self_fence(&spec.fence, &spec.state_dir, &format!("fence sentinel (pid {})", std::process::id()), &p.name, stuck, p.times.io_timeout() / 2);
    }
}
