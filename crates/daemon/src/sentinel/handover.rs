//! The files a daemon and a sentinel decide under: `highlanderd.lock` (one
//! daemon per state dir), `fence.lock` (resume or fence, never both) and
//! `fence-owner.json` (which daemon answers for each lockspace's guests).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::SentinelError;

/// Held by the running daemon: one highlanderd per state dir.
const INSTANCE_LOCK: &str = "highlanderd.lock";
/// Resume and fence decisions are taken under it.
const HANDOVER_LOCK: &str = "fence.lock";
/// Which daemon answers for each lockspace's guests.
const OWNERS: &str = "fence-owner.json";
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

    /// Records that `owner` now answers for the guests of `lockspaces`: the
    /// previous sentinel stands down for them.
    pub fn take_over<'a>(&self, owner: Owner, lockspaces: impl IntoIterator<Item = &'a str>) -> Result<(), SentinelError> {
        let path = self.dir.join(OWNERS);
        let mut owners = read_owners(&self.dir).unwrap_or_else(|| {
            log::warn!("{}: unreadable; rewriting it", path.display());
            BTreeMap::new()
        });
        for name in lockspaces {
            owners.insert(name.to_owned(), owner);
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
pub(super) fn read_owners(dir: &Path) -> Option<BTreeMap<String, Owner>> {
    match std::fs::read(dir.join(OWNERS)) {
        Ok(text) => serde_json::from_slice(&text).ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(BTreeMap::new()),
        Err(_) => None,
    }
}
