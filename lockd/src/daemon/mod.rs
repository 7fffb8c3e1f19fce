//! highlanderd, the per-host lease daemon: guests register over a Unix
//! socket, take and drop disk leases through it, and lose them when their
//! process exits or when this host can no longer renew its host lease.
//!
//! One file per concept:
//! - `config`      /etc/highlander/highlanderd.conf
//! - `protocol`    the JSON-lines wire protocol (docs/PROTOCOL.md)
//! - `lock_state`  libvirt's lock state string (lease versions for hand-over)
//! - `client`      a blocking client (CLI, tests, benchmark)
//! - `guest`       a registered guest and its process (pidfd, start time)
//! - `leases`      the local lease table: register, acquire, release, inquire
//! - `persist`     the table saved under the state dir, for restarts
//! - `retry`       failed releases on storage, retried until they land
//! - `watcher`     guest liveness: pidfds and restricted connections
//! - `fence`       lock-failure actions when renewal fails; the watchdog
//! - `escalate`    a killed guest that does not exit: the host fences itself
//! - `heartbeat`   the fence monitors' heartbeat, watched by the sentinel
//! - `sentinel`    fences the guests if highlanderd stops or dies unresumed
//! - `server`      the socket: peer credentials, requests, responses

pub mod client;
pub mod config;
pub mod escalate;
pub mod fence;
pub mod guest;
pub mod heartbeat;
pub mod leases;
pub mod lock_state;
pub mod persist;
pub mod protocol;
pub mod retry;
pub mod sentinel;
pub mod server;
pub mod watcher;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::lockspace::{JoinOptions, Lockspace};
use crate::storage::{Fault, FaultHook};
use config::Config;
use leases::Table;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("lockspace {path}: {source}")]
    Lockspace { path: PathBuf, source: crate::Error },
    #[error("lockspaces {first} and {second} are both named \"{name}\"; lockspace names must be unique per host")]
    DuplicateName { name: String, first: PathBuf, second: PathBuf },
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("socket {0}: another highlanderd is already serving it; stop it first")]
    AlreadyRunning(PathBuf),
    #[error(transparent)]
    Sentinel(#[from] sentinel::SentinelError),
}

/// One configured lockspace. The handle is replaced when a lost host lease
/// is rejoined.
pub struct Space {
    pub name: String,
    pub path: PathBuf,
    handle: RwLock<Lockspace>,
    join: JoinOptions,
}

impl Space {
    pub fn ls(&self) -> Lockspace {
        self.handle.read().clone()
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
    /// One daemon per state dir, for the daemon's whole life.
    _instance: sentinel::Instance,
}

/// `HIGHLANDER_TEST_FAULT_FILE=/path`: while that file contains `fail`,
/// every lockspace I/O fails. For tests only; checked on every I/O.
struct FaultFile(PathBuf);

impl FaultHook for FaultFile {
    fn on_io(&self, _op: crate::error::IoOp, _sector: u64, _count: u64) -> Fault {
        match std::fs::read(&self.0) {
            Ok(text) if text.trim_ascii() == b"fail" => Fault::Fail,
            _ => Fault::Proceed,
        }
    }
}

fn test_fault_hook() -> Option<Arc<dyn FaultHook>> {
    let file = std::env::var_os("HIGHLANDER_TEST_FAULT_FILE")?;
    log::warn!("HIGHLANDER_TEST_FAULT_FILE is set: lockspace I/O fails while {} contains `fail` (tests only)", PathBuf::from(&file).display());
    Some(Arc::new(FaultFile(file.into())))
}

impl Daemon {
    /// Joins (or resumes) every lockspace, re-adopts persisted guests, and
    /// starts serving. Returns once the socket accepts connections.
    pub fn start(cfg: Config) -> Result<Arc<Daemon>, StartError> {
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
        let mut saved = store.load(cfg.host_id)?;
        let fault = test_fault_hook();
        let mut spaces: Vec<Space> = Vec::new();
        for path in &cfg.lockspaces {
            let header = leases::open_or_create(&cfg, path).map_err(|source| StartError::Lockspace { path: path.clone(), source })?;
            if let Some(other) = spaces.iter().find(|s| s.name == header.name) {
                return Err(StartError::DuplicateName { name: header.name, first: other.path.clone(), second: path.clone() });
            }
            let mut join = JoinOptions::new(path, cfg.host_id, &cfg.host_name);
            join.fault = fault.clone();
            join.state_dir = Some(cfg.state_dir.clone());
            let ls = leases::join_resuming(&join, &header, &mut saved, &cfg).map_err(|source| StartError::Lockspace { path: path.clone(), source })?;
            spaces.push(Space { name: header.name.clone(), path: path.clone(), handle: RwLock::new(ls), join });
        }
        let guard = sentinel::Sentinel::start(&cfg, spaces.iter().map(|s| (s.name.clone(), s.ls().timeouts())))?;
        handover.take_over(&guard)?;
        drop(handover);
        let daemon = Arc::new(Daemon {
            watcher: watcher::Watcher::new().map_err(io("cannot create eventfd for", &cfg.state_dir))?,
            cfg,
            spaces,
            table: Mutex::new(Table::default()),
            disk_locks: Mutex::new(Default::default()),
            store,
            ops: RwLock::new(()),
            stopping: AtomicBool::new(false),
            fence_failed: AtomicBool::new(false),
            sentinel_pid: AtomicU32::new(0),
            _instance: instance,
        });
        sentinel::supervise(daemon.clone(), guard);
        daemon.readopt(saved);
        for space in daemon.spaces.iter().filter(|s| s.ls().resumed()) {
            daemon.release_orphans(space);
        }
        daemon.persist();
        let listener = server::bind(&daemon.cfg)?;
        watcher::spawn(daemon.clone());
        fence::spawn(daemon.clone());
        retry::spawn(daemon.clone());
        server::spawn(daemon.clone(), listener);
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

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// SIGTERM: finish requests in flight, then leave each lockspace in
    /// which no guest holds a lease (the next join is fast; pending releases
    /// are void with our slot) and merely stop renewing the others (leases,
    /// pending releases and resume state stay for a restart). The fence
    /// sentinel, which outlives us, fences their guests at fence_begin
    /// unless a restarted daemon resumes first.
    pub fn shutdown(&self) {
        let _quiesced = self.ops.write();
        self.stopping.store(true, Ordering::SeqCst);
        self.watcher.wake();
        let _ = std::fs::remove_file(&self.cfg.socket);
        let mut table = self.table.lock();
        for space in &self.spaces {
            let held = table.disks.keys().filter(|k| k.0 == space.name).count();
            let ls = space.ls();
            if held == 0 {
                match ls.leave() {
                    Ok(()) => {
                        log::info!("lockspace \"{}\": left cleanly", space.name);
                        table.pending.retain(|k, _| k.0 != space.name);
                    }
                    Err(e) => log::warn!("lockspace \"{}\": clean leave failed ({e}); the host slot will be reclaimed after it times out", space.name),
                }
            } else {
                ls.stop();
                log::warn!(
                    "lockspace \"{}\": stopped with {held} lease(s) held; restart highlanderd within {:?} of the last renewal to keep them, or the fence sentinel (pid {}) applies their guests' lock-failure actions then",
                    space.name,
                    space.ls().timeouts().fence_begin,
                    self.sentinel_pid.load(Ordering::SeqCst)
                );
            }
        }
        let any_held = !table.disks.is_empty();
        drop(table);
        self.persist();
        fence::close_watchdog(any_held);
        log::info!("highlanderd stopped");
    }

    fn space(&self, name: &str) -> Option<&Space> {
        self.spaces.iter().find(|s| s.name == name)
    }

    /// Saves the table (atomic write + rename). Serialised so saves land in order.
    fn persist(&self) {
        self.store.save(self.cfg.host_id, &self.table);
    }
}
