//! highlanderd, the per-host lease daemon: guests register over a Unix
//! socket, take and drop disk leases through it, and lose them when their
//! process exits or when this host can no longer renew its host lease.
//!
//! The wire protocol, libvirt's lock state string and the client are in the
//! `proto` crate, which the plugin shares. One file per concept here:
//! - `cli`         highlanderd's command line (also the man page's source)
//! - `config`      /etc/highlander/highlanderd.conf
//! - `check`       the configured lockspaces, checked (`--check` and start)
//! - `guest`       a registered guest and its process (pidfd, start time)
//! - `host_claim`  `host_id = auto`: the claimed id, kept across reboots
//! - `table`       the local lease table: guests, held disks, pending releases
//! - `leases`      the operations on it: register, acquire, release, inquire
//! - `declared`    network disks declared by the qemu hook, leased on acquire
//! - `persist`     the table saved under the state dir, for restarts
//! - `retry`       failed releases on storage, retried until they land
//! - `watcher`     guest liveness: pidfds and restricted connections
//! - `fence`       lock-failure actions when renewal fails (monitor, actions,
//!   escalation when a killed guest does not exit, watchdog)
//! - `heartbeat`   the fence monitors' heartbeat, watched by the sentinel
//! - `sentinel`    fences the guests if highlanderd stops or dies unresumed
//! - `server`      the socket: peer credentials, requests, responses
//! - `log_limit`   repeated warnings, rate-limited per kind
//! - `notify`      systemd readiness (READY=1, STATUS=)
//! - `metrics`     Prometheus metrics: the `metrics` op, the `metrics_listen` thread

pub mod check;
pub mod cli;
pub mod config;
pub mod declared;
pub mod fence;
pub mod guest;
pub mod heartbeat;
pub mod host_claim;
pub mod leases;
pub mod log_limit;
pub mod metrics;
pub mod notify;
pub mod persist;
pub mod priority;
pub mod retry;
pub mod sentinel;
pub mod server;
pub mod table;
pub mod watcher;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use engine::lockspace::{JoinOptions, Lockspace};
use engine::storage::{Fault, FaultHook};
use config::Config;
use table::Table;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Lockspace(#[from] check::CheckError),
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
    #[error(transparent)]
    HostId(#[from] host_claim::ClaimError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("socket {0}: another highlanderd is already serving it; stop it first")]
    AlreadyRunning(PathBuf),
    #[error(transparent)]
    Sentinel(#[from] sentinel::SentinelError),
    #[error("{file}: `metrics_listen` = {addr}: cannot listen: {source}; choose a free port (or port 0 for any), or remove the key")]
    MetricsListen { addr: std::net::SocketAddr, file: PathBuf, source: std::io::Error },
    #[error("cannot start thread {name}: {source}; the host is short of memory or of threads (`ulimit -u`, systemd's TasksMax)")]
    Thread { name: String, source: std::io::Error },
}

/// Starts one of the daemon's threads.
fn thread(name: String, f: impl FnOnce() + Send + 'static) -> Result<(), StartError> {
    match std::thread::Builder::new().name(name.clone()).spawn(f) {
        Ok(_) => Ok(()),
        Err(source) => Err(StartError::Thread { name, source }),
    }
}

/// A disk lease in this host's table: which lockspace, which disk. Here,
/// not in `leases`, so `retry` (which `leases` uses) needs nothing of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskKey {
    pub lockspace: String,
    pub identity: String,
}

impl DiskKey {
    pub fn new(lockspace: impl Into<String>, identity: impl Into<String>) -> DiskKey {
        DiskKey { lockspace: lockspace.into(), identity: identity.into() }
    }

    /// The key of a lease the engine granted.
    pub fn of(lease: &engine::resource::Lease) -> DiskKey {
        DiskKey::new(&lease.lockspace, &lease.identity)
    }
}

/// One configured lockspace. The handle is replaced when a lost host lease
/// is rejoined.
pub struct Space {
    pub name: String,
    pub path: PathBuf,
    handle: RwLock<Lockspace>,
    join: JoinOptions,
    /// Renewal failures of the handles replaced by rejoins.
    failures_before: AtomicU64,
}

impl Space {
    pub fn ls(&self) -> Lockspace {
        self.handle.read().clone()
    }

    /// Renewal failures since the daemon started, across rejoins.
    pub fn renewal_failures(&self) -> u64 {
        self.failures_before.load(Ordering::Relaxed) + self.ls().renewal_failures()
    }
}

pub struct Daemon {
    pub cfg: Config,
    pub spaces: Vec<Space>,
    table: Mutex<Table>,
    /// Serialises engine calls per disk (lockspace, identity).
    disk_locks: Mutex<std::collections::HashMap<leases::DiskKey, Arc<Mutex<()>>>>,
    store: persist::Store,
    watcher: watcher::Watcher,
    /// Requests hold it shared; shutdown takes it exclusively.
    ops: RwLock<()>,
    stopping: AtomicBool,
    /// A lock-failure action could not be carried out: stop petting the watchdog.
    fence_failed: AtomicBool,
    /// The fence sentinel's pid (for messages).
    sentinel_pid: AtomicU32,
    /// Connections being served (the cap is `max_connections`).
    serving: AtomicUsize,
    log_limit: log_limit::LogLimit,
    metrics: metrics::Metrics,
    /// One daemon per state dir, for the daemon's whole life.
    _instance: sentinel::Instance,
}

/// `HIGHLANDER_TEST_FAULT_FILE=/path`: faults on lockspace I/O while that
/// file holds them, one per line: `fail` fails every I/O; `fail member K
/// [K...]` fails the I/O of the K-th (1-based) devices of a lockspace on
/// several; `hang member
/// K [SECS]` holds each of its I/Os SECS seconds (default an hour) before
/// issuing it (a device that stops answering). Unset or empty: no hook.
/// For tests only; read on every I/O.
struct FaultFile(PathBuf);

impl FaultHook for FaultFile {
    fn on_io(&self, member: usize, _op: engine::error::IoOp, _sector: u64, _count: u64) -> Fault {
        let Ok(text) = std::fs::read_to_string(&self.0) else { return Fault::Proceed };
        let this_member = |k: &str| k.parse::<usize>().is_ok_and(|k| k == member + 1);
        for line in text.lines() {
            match line.split_ascii_whitespace().collect::<Vec<_>>().as_slice() {
                ["fail"] => return Fault::Fail,
                ["fail", "member", ks @ ..] if ks.iter().any(|k| this_member(k)) => return Fault::Fail,
                ["hang", "member", k, rest @ ..] if this_member(k) => {
                    let secs = rest.first().and_then(|s| s.parse().ok()).unwrap_or(3600);
                    return Fault::Delay(std::time::Duration::from_secs(secs));
                }
                _ => {}
            }
        }
        Fault::Proceed
    }
}

fn test_fault_hook() -> Option<Arc<dyn FaultHook>> {
    let file = std::env::var_os("HIGHLANDER_TEST_FAULT_FILE").filter(|f| !f.is_empty())?;
    log::warn!("HIGHLANDER_TEST_FAULT_FILE is set: lockspace I/O fails while {} contains `fail` (tests only)", PathBuf::from(&file).display());
    Some(Arc::new(FaultFile(file.into())))
}

impl Daemon {
    /// Joins (or resumes) every lockspace, re-adopts persisted guests, and
    /// starts serving. Returns once the socket accepts connections. A start
    /// that fails after joining leaves the lockspaces it joined as a stop
    /// would (`wind_down`): peers never see a host that died at start-up.
    pub fn start(mut cfg: Config) -> Result<Arc<Daemon>, StartError> {
        let checked = check::lockspaces(&cfg, true)?;
        for c in &checked {
            if let Some(t) = cfg.io_timeout.filter(|t| t.as_millis() != c.header.io_timeout_ms as u128) {
                log::warn!(
                    "lockspace \"{}\" ({}): its header says io_timeout {} ms, the configuration says {} ms; the header is authoritative",
                    c.header.name,
                    c.entry.path.display(),
                    c.header.io_timeout_ms,
                    t.as_millis()
                );
            }
        }
        let io = |what, path: &PathBuf| {
            let path = path.clone();
            move |source| StartError::Io { what, path, source }
        };
        std::fs::create_dir_all(&cfg.state_dir).map_err(io("cannot create state dir", &cfg.state_dir))?;
        let instance = sentinel::Instance::take(&cfg.state_dir)?;
        // From before the saved table is read until this daemon's sentinel
        // is armed and answers for the lockspaces joined: the previous
        // daemon's sentinel decides to fence under the same lock, so it
        // either fenced before a resume is attempted (which then finds the
        // window closed) or stands down once we resumed (sentinel.rs).
        let handover = sentinel::Handover::lock(&cfg.state_dir)?;
        let store = persist::Store::new(&cfg.state_dir);
        let watcher = watcher::Watcher::new().map_err(io("cannot create eventfd for", &cfg.state_dir))?;
        let fault = test_fault_hook();
        let claims = cfg.host_id_auto.then(|| host_claim::HostIdFile::new(&cfg.host_id_file));
        let mut refused = Vec::new();
        let (spaces, saved) = loop {
            let pick = claims.as_ref().map(|f| f.pick(&checked, &refused)).transpose()?;
            if let Some(p) = pick {
                cfg.host_id = p.id;
            }
            let mut saved = store.load(cfg.host_id)?;
            let (source, entry) = match join_all(&cfg, &checked, &mut saved, &fault, pick.is_some_and(|p| p.fresh)) {
                Ok(spaces) => break (spaces, saved),
                Err(failed) => failed,
            };
            // An automatic id someone else holds: taken by another host
            // during our attempt, or since our last start (also by a clone
            // of this machine, host-id file and all): claim another one.
            if let (Some(p), engine::Error::HostIdBusy { holder, same_machine, .. }) = (pick, &source) {
                if refused.len() < host_claim::MAX_ATTEMPTS {
                    let clone = if *same_machine && !p.fresh { " (with this machine's id: a clone of this machine, or a second highlanderd here)" } else { "" };
                    log::warn!("lockspace at {}: host id {} (claimed automatically{}) is in use by host \"{holder}\"{clone}; claiming another", entry.path.display(), p.id, if p.fresh { "" } else { " at an earlier start" });
                    refused.push(p.id);
                    continue;
                }
            }
            return Err(check::CheckError::Lockspace { file: cfg.source.clone(), line: entry.line, path: entry.path.clone(), source: Box::new(source) }.into());
        };
        let armed = sentinel::Sentinel::start(&cfg, spaces.iter().map(|s| (s.name.clone(), s.ls().timeouts()))).and_then(|guard| guard.take_over(&handover).map(|()| guard));
        let guard = match armed {
            Ok(guard) => guard,
            Err(e) => {
                leave_or_stop(&spaces, |name| saved.held_in(name), None);
                return Err(e.into());
            }
        };
        drop(handover);
        let daemon = Arc::new(Daemon {
            watcher,
            cfg,
            spaces,
            table: Mutex::new(Table::default()),
            disk_locks: Mutex::new(Default::default()),
            store,
            ops: RwLock::new(()),
            stopping: AtomicBool::new(false),
            fence_failed: AtomicBool::new(false),
            sentinel_pid: AtomicU32::new(0),
            serving: AtomicUsize::new(0),
            log_limit: log_limit::LogLimit::default(),
            metrics: metrics::Metrics::default(),
            _instance: instance,
        });
        if let Err(e) = daemon.begin(guard, saved) {
            daemon.stopping.store(true, Ordering::SeqCst);
            daemon.watcher.wake();
            daemon.wind_down();
            return Err(e);
        }
        log::info!(
            "highlanderd {} serving {} as host {} \"{}\" in lockspace(s) {}",
            env!("CARGO_PKG_VERSION"),
            daemon.cfg.socket.display(),
            daemon.cfg.host_id,
            daemon.cfg.host_name,
            daemon.spaces.iter().map(|s| format!("\"{}\" (generation {}{})", s.name, s.ls().generation(), if s.ls().resumed() { ", resumed" } else { "" })).collect::<Vec<_>>().join(", ")
        );
        Ok(daemon)
    }

    /// The part of the start-up after the lockspaces are joined: the saved
    /// guests re-adopted, the daemon's threads and the socket.
    fn begin(self: &Arc<Daemon>, guard: sentinel::Sentinel, saved: Table) -> Result<(), StartError> {
        sentinel::supervise(self.clone(), guard)?;
        self.readopt(saved);
        for space in self.spaces.iter().filter(|s| s.ls().resumed()) {
            self.release_orphans(space);
        }
        self.persist();
        let metrics = metrics::bind(self)?;
        let listener = server::bind(&self.cfg)?;
        let threads = (|| {
            watcher::spawn(self.clone())?;
            fence::spawn(self.clone())?;
            retry::spawn(self.clone())?;
            log_limit::spawn(self.clone())?;
            if let Some(metrics) = metrics {
                metrics::spawn(self.clone(), metrics)?;
            }
            server::spawn(self.clone(), listener)
        })();
        if threads.is_err() {
            let _ = std::fs::remove_file(&self.cfg.socket);
        }
        threads
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// SIGTERM: finish requests in flight, then wind down (`wind_down`).
    pub fn shutdown(&self) {
        let _quiesced = self.ops.write();
        self.stopping.store(true, Ordering::SeqCst);
        self.watcher.wake();
        let _ = std::fs::remove_file(&self.cfg.socket);
        self.wind_down();
        log::info!("highlanderd stopped");
    }

    /// Leaves each lockspace in which no guest holds a lease and stops
    /// renewing the others (`leave_or_stop`); saves the table and closes
    /// the watchdog.
    fn wind_down(&self) {
        let mut table = self.table.lock();
        let left = leave_or_stop(&self.spaces, |name| table.held_in(name), Some(self.sentinel_pid.load(Ordering::SeqCst)));
        // Pending releases are void with our slot.
        table.pending.retain(|k, _| !left.contains(&k.lockspace.as_str()));
        let any_held = !table.disks.is_empty();
        drop(table);
        self.persist();
        fence::close_watchdog(any_held);
    }

    fn space(&self, name: &str) -> Option<&Space> {
        self.spaces.iter().find(|s| s.name == name)
    }

    /// Saves the table (atomic write + rename). Serialised so saves land in order.
    fn persist(&self) {
        self.store.save(self.cfg.host_id, &self.table);
    }
}

/// Joins (or resumes) every checked lockspace as `cfg.host_id`; on a
/// failure, leaves those joined and returns the error with its entry.
fn join_all<'a>(cfg: &Config, checked: &'a [check::Checked], saved: &mut Table, fault: &Option<Arc<dyn FaultHook>>, claim: bool) -> Result<Vec<Space>, (engine::Error, &'a config::LockspaceEntry)> {
    let mut spaces: Vec<Space> = Vec::new();
    for c in checked {
        notify::send(&format!("STATUS=joining lockspace \"{}\" ({}) as host {}", c.header.name, c.entry.path.display(), cfg.host_id));
        let mut join = JoinOptions::members(c.entry.members.clone(), cfg.host_id, &cfg.host_name);
        join.fault = fault.clone();
        join.state_dir = Some(cfg.state_dir.clone());
        join.claim = claim;
        match leases::join_resuming(&join, &c.header, saved, cfg) {
            Ok(ls) => spaces.push(Space { name: c.header.name.clone(), path: c.entry.path.clone(), handle: RwLock::new(ls), join, failures_before: AtomicU64::new(0) }),
            Err(source) => {
                leave_or_stop(&spaces, |name| saved.held_in(name), None);
                return Err((source, &c.entry));
            }
        }
    }
    Ok(spaces)
}

/// Leaves each lockspace in which `held` counts no lease (the next join is
/// fast, and peers see this host gone at once, not failing then dead), and
/// merely stops renewing the others (leases, pending releases and resume
/// state stay for a restart; the fence sentinel, `sentinel` if it is this
/// daemon's, which outlives us, fences their guests at fence_begin unless a
/// restarted daemon resumes first). Returns the names of those left.
fn leave_or_stop(spaces: &[Space], held: impl Fn(&str) -> usize, sentinel: Option<u32>) -> Vec<&str> {
    let mut left = Vec::new();
    for space in spaces {
        let held = held(&space.name);
        let ls = space.ls();
        if held == 0 {
            match ls.leave() {
                Ok(()) => {
                    log::info!("lockspace \"{}\": left cleanly", space.name);
                    left.push(space.name.as_str());
                }
                Err(e) => log::warn!("lockspace \"{}\": clean leave failed ({e}); the host slot will be reclaimed after it times out", space.name),
            }
        } else {
            let fence_begin = ls.timeouts().fence_begin;
            ls.stop();
            log::warn!(
                "lockspace \"{}\": stopped with {held} lease(s) held; restart highlanderd within {fence_begin:?} of the last renewal to keep them, or the fence sentinel{} applies their guests' lock-failure actions then",
                space.name,
                sentinel.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
            );
        }
    }
    left
}
