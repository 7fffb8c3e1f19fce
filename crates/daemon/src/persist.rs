//! The lease table saved under the state dir (`guests.json`), rewritten
//! atomically (write + rename) on every change, so a restarted or upgraded
//! daemon knows which guests hold which leases. The state dir is normally
//! /run (tmpfs): it must not survive a reboot, and needs no fsync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::declared::Declaration;
use crate::guest::Guest;
use crate::table::{Disk, Table};
use crate::DiskKey;
use engine::resource::Lease;

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    host_id: u32,
    guests: Vec<Guest>,
    disks: Vec<Disk>,
    /// Failed releases still to retry (absent in files of older daemons).
    #[serde(default)]
    pending: Vec<Lease>,
    /// Declared network disks (absent in files of older daemons).
    #[serde(default)]
    declared: Vec<Declaration>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: cannot read saved guests: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: saved guests are unreadable ({why}); guests still running would go untracked. Inspect it, then move it away to start afresh")]
    Garbled { path: PathBuf, why: String },
    #[error("{path}: saved guests belong to host id {saved}, but this host is configured as host id {configured}; restore host_id = {saved} or move the file away")]
    OtherHost { path: PathBuf, saved: u32, configured: u32 },
}

pub struct Store {
    file: PathBuf,
    tmp: PathBuf,
    /// Counts calls to `save`; each follows a change to the table.
    changes: AtomicU64,
    /// Held from snapshot to rename, so saves land in the order taken;
    /// holds the change count the file on disk covers.
    order: Mutex<u64>,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store { file: state_dir.join("guests.json"), tmp: state_dir.join("guests.json.tmp"), changes: AtomicU64::new(0), order: Mutex::new(0) }
    }

    /// The saved table; empty when nothing was saved.
    pub fn load(&self, host_id: u32) -> Result<Table, PersistError> {
        let text = match std::fs::read(&self.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Table::default()),
            Err(source) => return Err(PersistError::Read { path: self.file.clone(), source }),
        };
        let saved: Saved = serde_json::from_slice(&text).map_err(|e| PersistError::Garbled { path: self.file.clone(), why: e.to_string() })?;
        if saved.format != FORMAT {
            return Err(PersistError::Garbled { path: self.file.clone(), why: format!("format {} is not {FORMAT}", saved.format) });
        }
        if saved.host_id != host_id && !(saved.guests.is_empty() && saved.pending.is_empty()) {
            return Err(PersistError::OtherHost { path: self.file.clone(), saved: saved.host_id, configured: host_id });
        }
        Ok(Table {
            guests: saved.guests.into_iter().map(|g| (g.pid, g)).collect(),
            disks: saved.disks.into_iter().map(|d| (DiskKey::of(&d.lease), d)).collect(),
            pending: saved.pending.into_iter().map(|l| (DiskKey::of(&l), l)).collect(),
            released_state: Default::default(),
            declared: saved.declared.into_iter().map(|d| (d.uuid, d)).collect(),
        })
    }

    /// Saves the table after a change. Under a burst of changes, one write
    /// covers every change made before its snapshot, and later callers
    /// whose change it covers return at once.
    pub fn save(&self, host_id: u32, table: &Mutex<Table>) {
        let mine = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut on_disk = self.order.lock();
        if *on_disk >= mine {
            return;
        }
        let covers = self.changes.load(Ordering::SeqCst);
        let json = {
            let t = table.lock();
            let saved = Saved { format: FORMAT, host_id, guests: t.guests.values().cloned().collect(), disks: t.disks.values().cloned().collect(), pending: t.pending.values().cloned().collect(), declared: t.declared.values().cloned().collect() };
            serde_json::to_vec(&saved).expect("the table serialises")
        };
        match std::fs::write(&self.tmp, json).and_then(|()| std::fs::rename(&self.tmp, &self.file)) {
            Ok(()) => *on_disk = covers,
            Err(e) => log::error!("{}: cannot save guests: {e}; a daemon restart now would lose track of them", self.file.display()),
        }
    }
}
