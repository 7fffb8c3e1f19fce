//! The local lease table: which registered guest holds which disk, and the
//! operations on it (register, acquire, release, inquire, guest exit,
//! re-adoption after a restart, status, who).
//!
//! The engine's leases belong to this *host*; guests are the daemon's
//! business. So the table is where two guests on this host are kept apart
//! (the engine would happily tell both "you hold it"), and where a shared
//! lease is counted per guest and released on storage with its last holder.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::guest::{self, Guest};
use proto::lock_state::{self, Entry};
use proto::protocol::*;
use crate::{Daemon, Space};
use engine::clock::unix_now;
use engine::delta_lease::HostState;
use engine::error::Error;
use engine::format::{Header, IDENTITY_LEN, NAME_LEN};
use engine::lockspace::{JoinOptions, Lockspace};
use engine::resource::{AcquireRequest, Busy, Lease, LeaseInfo, Mode, SharedHolder};

pub use crate::DiskKey;
pub use crate::table::{Disk, Table};
use crate::table::view;

/// Who is asking, from SO_PEERCRED.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

fn err(code: Code, message: impl Into<String>) -> WireError {
    WireError::new(code, message)
}

/// Maps an engine error for one disk to a wire error.
fn engine_error(path: &str, guest: &Guest, e: Error) -> WireError {
    let code = match &e {
        Error::Busy(_) => Code::Busy,
        Error::VersionMismatch { .. } => Code::VersionMismatch,
        Error::Full { .. } => Code::Full,
        _ => Code::Unavailable,
    };
    err(code, format!("cannot lock {path} for {guest}: {e}"))
}

/// A resource of a request, resolved.
pub(crate) struct Wanted {
    pub(crate) key: DiskKey,
    pub(crate) path: String,
    pub(crate) mode: Mode,
}

/// Joins a lockspace. When the saved table holds leases in it, the host
/// lease must be resumed; if that is no longer possible, the guests
/// holding those leases are fenced and their leases dropped from `saved`
/// before joining afresh.
pub fn join_resuming(join: &JoinOptions, header: &Header, saved: &mut Table, cfg: &crate::Config) -> engine::Result<Lockspace> {
    let name = header.name.as_str();
    let holders: BTreeSet<u32> = saved.disks.iter().filter(|(k, _)| k.lockspace == name).flat_map(|(_, d)| d.holders.iter().copied()).collect();
    if holders.is_empty() {
        return Lockspace::join(join.clone());
    }
    let resume = JoinOptions { require_resume: true, ..join.clone() };
    match Lockspace::join(resume) {
        Err(Error::ResumeExpired { .. }) => {
            log::error!("lockspace \"{name}\": the previous daemon's host lease can no longer be resumed; fencing the {} guest(s) that held leases in it", holders.len());
            let io_timeout = std::time::Duration::from_millis(header.io_timeout_ms as u64);
            for pid in holders {
                if let Some(g) = saved.guests.get_mut(&pid) {
                    if let Some((pidfd, _)) = guest::track(g.pid, Some(g.start_time)) {
                        crate::fence::escalate::fence_before_rejoin(cfg, g, &pidfd, name, io_timeout);
                    }
                }
            }
            saved.disks.retain(|k, _| k.lockspace != name);
            Lockspace::join(join.clone())
        }
        other => other,
    }
}

impl Daemon {
    pub(crate) fn space_for(&self, name: Option<&str>) -> Result<&Space, WireError> {
        match name {
            None => Ok(&self.spaces[0]),
            Some(n) => self.space(n).ok_or_else(|| {
                err(Code::NoSuchLockspace, format!("no lockspace \"{n}\" on this host (configured: {})", self.spaces.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")))
            }),
        }
    }

    /// Resolves a request's disk to (lockspace, identity) and a display path.
    fn resolve(&self, lockspace: Option<&str>, path: Option<&str>, identity: Option<&str>) -> Result<(DiskKey, String), WireError> {
        let space = self.space_for(lockspace)?;
        let identity = match (identity, path) {
            (Some(id), _) => {
                if id.is_empty() || id.len() > IDENTITY_LEN || id.chars().any(char::is_control) {
                    return Err(err(Code::BadRequest, format!("identity {id:?} must be 1..={IDENTITY_LEN} bytes without control characters")));
                }
                id.to_owned()
            }
            (None, Some(p)) => identity::of_path(Path::new(p)).map_err(|e| err(Code::BadDisk, e.to_string()))?,
            (None, None) => return Err(err(Code::BadRequest, "a resource needs a \"path\" or an \"identity\"")),
        };
        let shown = path.map_or_else(|| identity.clone(), str::to_owned);
        Ok((DiskKey::new(&space.name, identity), shown))
    }

    fn wanted(&self, resources: &[Resource]) -> Result<Vec<Wanted>, WireError> {
        let mut out: Vec<Wanted> = Vec::new();
        for r in resources {
            let (key, path) = self.resolve(r.lockspace.as_deref(), r.path.as_deref(), r.identity.as_deref())?;
            match out.iter().find(|w| w.key == key) {
                Some(w) if w.mode != r.mode => return Err(err(Code::BadRequest, format!("disk {} is requested both {} and {}", key.identity, w.mode, r.mode))),
                Some(_) => {}
                None => out.push(Wanted { key, path, mode: r.mode }),
            }
        }
        Ok(out)
    }

    /// Runs `f` holding the engine locks of `keys` (taken in sorted order).
    pub(super) fn with_disks<R>(&self, keys: impl IntoIterator<Item = DiskKey>, f: impl FnOnce() -> R) -> R {
        let keys: BTreeSet<DiskKey> = keys.into_iter().collect();
        let locks: Vec<Arc<Mutex<()>>> = {
            let mut map = self.disk_locks.lock();
            keys.iter().map(|k| map.entry(k.clone()).or_default().clone()).collect()
        };
        let result = {
            let _held: Vec<_> = locks.iter().map(|l| l.lock()).collect();
            f()
        };
        drop(locks);
        let mut map = self.disk_locks.lock();
        for k in &keys {
            if map.get(k).is_some_and(|l| Arc::strong_count(l) == 1) {
                map.remove(k);
            }
        }
        result
    }

    /// Only root gets here (server.rs), so it may name any process.
    pub fn register(&self, peer: Peer, req: Register) -> Result<LeasesResult, WireError> {
        let pid = req.pid.unwrap_or(peer.pid);
        let uuid = proto::uuid::parse(&req.uuid).ok_or_else(|| err(Code::BadRequest, format!("uuid {:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", req.uuid)))?;
        if req.name.is_empty() || req.name.len() > NAME_LEN || req.name.chars().any(char::is_control) {
            return Err(err(Code::BadRequest, format!("guest name {:?} must be 1..={NAME_LEN} bytes without control characters", req.name)));
        }
        if req.uri.len() > 1024 || req.uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(err(Code::BadRequest, "uri must be at most 1024 bytes without whitespace"));
        }
        let (pidfd, start_time) = guest::track(pid, None).ok_or_else(|| err(Code::BadRequest, format!("no process with pid {pid}")))?;
        let stale = self.table.lock().guests.get(&pid).filter(|g| g.start_time != start_time).map(|g| g.start_time);
        if let Some(old) = stale {
            // The pid was recycled before we noticed the old guest's exit.
            self.guest_exited(pid, old);
        }
        let action = match req.action {
            Action::Default => self.cfg.on_lockfailure,
            a => a,
        };
        let g = Guest { pid, start_time, uuid, name: req.name, uri: req.uri, action, registered_unix: unix_now(), fenced: false };
        log::info!("registered {g} uri {:?} on_lockfailure {action}", g.uri);
        self.table.lock().guests.insert(pid, g);
        self.watcher.track(pid, start_time, pidfd);
        self.persist();
        if req.resources.is_empty() {
            return Ok(LeasesResult { pid, leases: Vec::new(), state: None });
        }
        let acquired = self.acquire(Acquire { pid, resources: req.resources, state: req.state, action: None });
        if acquired.is_err() {
            // libvirt's child exits on failure: forget the guest with it.
            self.table.lock().guests.remove(&pid);
            self.watcher.untrack(pid);
            self.persist();
        }
        acquired
    }

    pub fn acquire(&self, req: Acquire) -> Result<LeasesResult, WireError> {
        let pid = req.pid;
        let g = {
            let mut table = self.table.lock();
            table.released_state.remove(&pid);
            table.guests.get(&pid).cloned()
        }
        .ok_or_else(|| err(Code::NotRegistered, format!("guest pid {pid} was not started under highlander (was it started before lock_manager = \"highlander\" was set, or before highlanderd restarted without its state?); restart the guest (virsh destroy + start) to protect its disks")))?;
        let mut wanted = self.wanted(&req.resources)?;
        self.add_declared(&g.uuid, &mut wanted)?;
        let expected: Vec<Entry> = match req.state.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => lock_state::decode(s).map_err(|e| err(Code::BadState, format!("{g}: {e}")))?,
            None => Vec::new(),
        };
        let expect_lver = |key: &DiskKey| expected.iter().find(|e| e.lockspace == key.lockspace && e.identity == key.identity).and_then(|e| e.lver);
        let result = self.with_disks(wanted.iter().map(|w| w.key.clone()), || {
            // Local decisions first, under the table lock.
            let mut engine: Vec<&Wanted> = Vec::new();
            {
                let table = self.table.lock();
                for w in &wanted {
                    let Some(d) = table.disks.get(&w.key) else {
                        engine.push(w);
                        continue;
                    };
                    if d.holders.contains(&pid) {
                        if d.lease.mode != w.mode {
                            return Err(err(Code::BadRequest, format!("{g} already holds {} {}; release it before taking it {}", w.path, d.lease.mode, w.mode)));
                        }
                        continue;
                    }
                    if d.lease.mode == Mode::Exclusive || w.mode == Mode::Exclusive {
                        let e = self.local_busy(&table, d);
                        self.log_refused(&g, w, &e);
                        return Err(err(Code::Busy, format!("cannot lock {} for {g}: {e}", w.path)));
                    }
                }
            }
            // Every disk at once: each is its own resource (the engine
            // orders I/O per slot), so a guest with 8 disks waits about as
            // long as one with 1. All or nothing: on any refusal, what was
            // won is released and the first refusal in request order told.
            let outcomes: Vec<Result<Lease, WireError>> = match engine.as_slice() {
                [one] => vec![self.acquire_on_storage(&g, one, expect_lver(&one.key))],
                many => std::thread::scope(|scope| {
                    let running: Vec<_> = many.iter().map(|w| scope.spawn(|| self.acquire_on_storage(&g, w, expect_lver(&w.key)))).collect();
                    running.into_iter().map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
                }),
            };
            let (won, refused): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
            let won: Vec<Lease> = won.into_iter().map(Result::unwrap).collect();
            if let Some(Err(e)) = refused.into_iter().next() {
                self.release_on_storage(&won);
                return Err(e);
            }
            let mut table = self.table.lock();
            if table.guests.get(&pid).map(|x| x.start_time) != Some(g.start_time) {
                drop(table);
                self.release_on_storage(&won);
                return Err(err(Code::NotRegistered, format!("{g} exited while its leases were being acquired")));
            }
            let now = unix_now();
            for w in &wanted {
                let lease = won.iter().find(|l| l.lockspace == w.key.lockspace && l.identity == w.key.identity);
                let d = table.disks.entry(w.key.clone()).or_insert_with(|| Disk {
                    lease: lease.cloned().expect("a disk not in the table was acquired on storage"),
                    path: w.path.clone(),
                    holders: BTreeSet::new(),
                    since_unix: now,
                });
                if d.holders.insert(pid) {
                    log::info!("lease acquired: {g} disk {} ({}) {} lver {} lockspace \"{}\" host {} \"{}\"", w.key.identity, w.path, w.mode, d.lease.lver, w.key.lockspace, self.cfg.host_id, self.cfg.host_name);
                }
            }
            let guest = table.guests.get_mut(&pid).expect("checked above");
            guest.fenced = false;
            if let Some(a) = req.action {
                guest.action = if a == Action::Default { self.cfg.on_lockfailure } else { a };
            }
            let leases = wanted.iter().map(|w| view(&table.disks[&w.key])).collect();
            let state = Table::state_of(wanted.iter().map(|w| &table.disks[&w.key]));
            Ok(LeasesResult { pid, leases, state })
        });
        if result.is_ok() {
            self.persist();
        }
        result
    }

    /// One disk's lease on storage, for `acquire`; logs a refusal.
    fn acquire_on_storage(&self, g: &Guest, w: &Wanted, expect_lver: Option<u64>) -> Result<Lease, WireError> {
        let ar = AcquireRequest { identity: w.key.identity.clone(), mode: w.mode, holder: g.holder(), expect_lver: if w.mode == Mode::Exclusive { expect_lver } else { None } };
        let space = self.space(&w.key.lockspace).expect("resolved lockspaces exist");
        // Our earlier lease on this disk must be off storage first: the
        // engine would call it ours already, and the pending release (or a
        // late write of the failed one) would then free it under the new
        // holder.
        if let Err(e) = self.settle(&w.key) {
            log::warn!("lease refused: {g} disk {} ({}) {}: its previous release on storage is still pending: {e}", w.key.identity, w.path, w.mode);
            return Err(err(Code::Unavailable, format!("cannot lock {} for {g}: this host's previous lease on disk {} is still being released on storage ({e}); retry later", w.path, w.key.identity)));
        }
        let t0 = Instant::now();
        let acquired = space.ls().acquire(&ar);
        self.metrics.acquired(&space.name, t0.elapsed());
        acquired.map_err(|e| {
            let e = engine_error(&w.path, g, e);
            log::warn!("lease refused: {g} disk {} ({}) {}: {}", w.key.identity, w.path, w.mode, e.message);
            e
        })
    }

    fn log_refused(&self, g: &Guest, w: &Wanted, e: &Busy) {
        log::warn!("lease refused: {g} disk {} ({}) {}: {e}", w.key.identity, w.path, w.mode);
    }

    /// A refusal for a disk another guest on this host holds, worded like
    /// the engine's refusals for other hosts.
    fn local_busy(&self, table: &Table, d: &Disk) -> Busy {
        let space = self.space(&d.lease.lockspace).expect("held disks are in configured lockspaces");
        let generation = space.ls().generation();
        let holder = |pid: &u32| table.guests.get(pid).map(Guest::holder).unwrap_or_default();
        let exclusive = d.lease.mode == Mode::Exclusive;
        let info = LeaseInfo {
            identity: d.lease.identity.clone(),
            lockspace: d.lease.lockspace.clone(),
            slot: d.lease.slot,
            lver: d.lease.lver,
            held: exclusive,
            owner_id: self.cfg.host_id,
            owner_name: self.cfg.host_name.clone(),
            owner_generation: generation,
            owner_state: HostState::Live,
            holder: if exclusive { d.holders.iter().next().map(holder).unwrap_or_default() } else { Default::default() },
            since_unix: d.since_unix,
            shared: if exclusive {
                Vec::new()
            } else {
                d.holders
                    .iter()
                    .map(|p| SharedHolder { host_id: self.cfg.host_id, host_name: self.cfg.host_name.clone(), generation, holder: holder(p), host_state: HostState::Live })
                    .collect()
            },
        };
        Busy { info, takeover_in_ms: None }
    }

    /// Releases leases on storage. A release that fails is queued in the
    /// table's `pending` and retried in the background (`retry`), so it is
    /// logged, not returned.
    pub(super) fn release_on_storage(&self, leases: &[Lease]) {
        let mut queued = false;
        for lease in leases {
            let Some(space) = self.space(&lease.lockspace) else { continue };
            let t0 = Instant::now();
            let released = space.ls().release(lease);
            self.metrics.released(&space.name, t0.elapsed());
            if let Err(e) = released {
                // Queued before it is logged: whoever reads the log finds it pending.
                self.table.lock().pending.insert(DiskKey::of(lease), lease.clone());
                log::error!(
                    "lockspace \"{}\": release of disk {} lver {} on storage failed: {e}; other hosts see it held until a retry (every {:?}) lands",
                    lease.lockspace,
                    lease.identity,
                    lease.lver,
                    crate::retry::backoff(space)
                );
                queued = true;
            }
        }
        if queued {
            self.persist();
        }
    }

    /// Drops `pid`'s hold on the disks selected by `pick`; returns the state
    /// string of what it held.
    fn drop_holds(&self, pid: u32, who: &str, pick: impl Fn(&DiskKey, &Disk) -> bool) -> (Vec<LeaseView>, Option<String>) {
        let keys: Vec<DiskKey> = self.table.lock().held_by(pid).filter(|(k, d)| pick(k, d)).map(|(k, _)| k.clone()).collect();
        if keys.is_empty() {
            return (Vec::new(), None);
        }
        self.with_disks(keys.clone(), || {
            let mut to_release = Vec::new();
            let mut released = Vec::new();
            {
                let mut table = self.table.lock();
                for k in &keys {
                    let Some(d) = table.disks.get_mut(k) else { continue };
                    if !d.holders.remove(&pid) {
                        continue;
                    }
                    released.push(d.clone());
                    log::info!("lease released: {who} disk {} ({}) {} lver {} lockspace \"{}\" host {} \"{}\"", k.identity, d.path, d.lease.mode, d.lease.lver, k.lockspace, self.cfg.host_id, self.cfg.host_name);
                    if d.holders.is_empty() {
                        to_release.push(table.disks.remove(k).expect("present").lease);
                    }
                }
            }
            // Saved before the storage release: a crash in between leaves a
            // lease held with no guest (harmless), never a guest that a
            // restarted daemon thinks holds a lease it lost.
            self.persist();
            self.release_on_storage(&to_release);
            (released.iter().map(view).collect(), Table::state_of(released.iter()))
        })
    }

    pub fn release(&self, req: Release) -> Result<LeasesResult, WireError> {
        let pid = req.pid;
        let Some(g) = self.table.lock().guests.get(&pid).cloned() else {
            return Ok(LeasesResult { pid, leases: Vec::new(), state: None });
        };
        let (leases, state) = match &req.resources {
            None => self.drop_holds(pid, &g.to_string(), |_, _| true),
            Some(resources) => {
                // Match by the path the guest acquired with first: the disk
                // may be gone already (detached and deleted).
                let mut keys = BTreeSet::new();
                for r in resources {
                    let by_path = self.table.lock().held_by(pid).find(|(k, d)| r.path.as_deref() == Some(d.path.as_str()) && r.lockspace.as_deref().is_none_or(|l| l == k.lockspace)).map(|(k, _)| k.clone());
                    match by_path {
                        Some(k) => {
                            keys.insert(k);
                        }
                        // Never acquired, or unresolvable: nothing to release.
                        None => {
                            if let Ok((k, _)) = self.resolve(r.lockspace.as_deref(), r.path.as_deref(), r.identity.as_deref()) {
                                keys.insert(k);
                            }
                        }
                    }
                }
                self.drop_holds(pid, &g.to_string(), |k, _| keys.contains(k))
            }
        };
        // libvirt releases twice for one pause (its STOP event handler and
        // the API call) into the same saved state: the second call, which
        // finds nothing held, must hand back the first one's state, or the
        // resume would skip the version check.
        let mut table = self.table.lock();
        let state = match state {
            Some(s) => {
                table.released_state.insert(pid, s.clone());
                Some(s)
            }
            None => table.released_state.get(&pid).cloned(),
        };
        Ok(LeasesResult { pid, leases, state })
    }

    pub fn inquire(&self, req: Inquire) -> LeasesResult {
        let table = self.table.lock();
        let leases = table.views_of(req.pid);
        let state = Table::state_of(table.held_by(req.pid).map(|(_, d)| d));
        LeasesResult { pid: req.pid, leases, state }
    }

    /// The guest's process exited (pidfd readable, or found dead after a
    /// restart): forget it and release everything it held.
    pub fn guest_exited(&self, pid: u32, start_time: u64) {
        let t0 = Instant::now();
        let g = {
            let mut table = self.table.lock();
            match table.guests.get(&pid) {
                Some(g) if g.start_time == start_time => {
                    table.released_state.remove(&pid);
                    table.guests.remove(&pid).expect("present")
                }
                _ => return,
            }
        };
        let (released, _) = self.drop_holds(pid, &g.to_string(), |_, _| true);
        self.persist();
        log::info!("{g} exited; released {} lease(s) in {:.1} ms", released.len(), t0.elapsed().as_secs_f64() * 1000.0);
    }

    /// After a restart: keep the saved guests that still run (re-adopting
    /// each lease on storage), release what dead guests held, and queue the
    /// saved pending releases that are still ours.
    pub(super) fn readopt(&self, saved: Table) {
        let mut dead = Vec::new();
        let mut lost: Vec<(u32, String, String)> = Vec::new();
        {
            let mut table = self.table.lock();
            table.declared = saved.declared;
            for (key, lease) in saved.pending {
                match self.space(&key.lockspace) {
                    Some(space) if space.ls().generation() == lease.generation => {
                        log::info!("pending release of disk {} lver {} lockspace \"{}\" carried over from before the restart; retrying it", key.identity, lease.lver, key.lockspace);
                        table.pending.insert(key, lease);
                    }
                    _ => log::info!("pending release of disk {} lver {} lockspace \"{}\" dropped: its generation {} is over, so the lease is void", key.identity, lease.lver, key.lockspace, lease.generation),
                }
            }
            for (pid, g) in saved.guests {
                match guest::track(pid, Some(g.start_time)) {
                    Some((pidfd, _)) => {
                        log::info!("re-adopted {g}");
                        self.watcher.track(pid, g.start_time, pidfd);
                        table.guests.insert(pid, g);
                    }
                    None => dead.push(g),
                }
            }
            for (key, mut d) in saved.disks {
                let Some(space) = self.space(&key.lockspace) else {
                    log::warn!("lockspace \"{}\" is no longer configured: dropping the saved lease on disk {}", key.lockspace, key.identity);
                    continue;
                };
                d.holders.retain(|p| table.guests.contains_key(p));
                if d.holders.is_empty() {
                    // Only dead guests held it: release it.
                    drop(table);
                    self.release_on_storage(std::slice::from_ref(&d.lease));
                    table = self.table.lock();
                    continue;
                }
                match space.ls().adopt(&d.lease) {
                    Ok(()) => {
                        log::info!("re-adopted lease on disk {} ({}) lver {} lockspace \"{}\"", key.identity, d.path, d.lease.lver, key.lockspace);
                        table.disks.insert(key, d);
                    }
                    Err(e) => lost.extend(d.holders.iter().map(|p| (*p, key.lockspace.clone(), format!("its lease on disk {} was lost while highlanderd restarted: {e}", key.identity)))),
                }
            }
        }
        for g in dead {
            log::info!("{g} {}", if g.fenced { "is gone (fenced)" } else { "exited while highlanderd was down" });
        }
        for (pid, space, why) in lost {
            self.fence_guest(pid, &space, &why);
        }
    }

    /// After resuming `space`'s host lease: releases the leases storage says
    /// this host holds at this generation that no saved guest holds (the
    /// previous daemon died between winning them and saving its table).
    /// Costs one read per resource slot.
    pub(super) fn release_orphans(&self, space: &Space) {
        let on_storage = match space.ls().held_by_me() {
            Ok(leases) => leases,
            Err(e) => {
                log::error!("lockspace \"{}\": cannot scan storage for orphaned leases: {e}; any there stay held until this host's generation ends", space.name);
                return;
            }
        };
        let orphans: Vec<Lease> = {
            let table = self.table.lock();
            on_storage
                .into_iter()
                .filter(|l| {
                    let key = DiskKey::of(l);
                    !table.disks.get(&key).is_some_and(|d| d.lease.mode == l.mode) && !table.pending.contains_key(&key)
                })
                .collect()
        };
        for l in &orphans {
            log::warn!(
                "orphaned lease: disk {} {} lver {} lockspace \"{}\" is held on storage by host {} generation {} but by no guest (highlanderd stopped between winning it and saving its table); releasing it",
                l.identity,
                l.mode,
                l.lver,
                l.lockspace,
                self.cfg.host_id,
                l.generation
            );
        }
        self.release_on_storage(&orphans);
    }

    pub fn status(&self) -> Status {
        let escalations = crate::fence::escalate::recent(&self.cfg.state_dir);
        let table = self.table.lock();
        let lockspaces = self
            .spaces
            .iter()
            .map(|s| {
                let ls = s.ls();
                let now = engine::clock::Mono::now();
                let (health, valid_for_ms, fence_in_ms, error) = match ls.health() {
                    engine::Health::Healthy { valid_until } => (Health::Healthy, Some(valid_until.since(now).as_millis() as u64), None, None),
                    engine::Health::Failing { fence_at, valid_until, error } => {
                        (Health::Failing, Some(valid_until.since(now).as_millis() as u64), Some(fence_at.since(now).as_millis() as u64), Some(error))
                    }
                    engine::Health::Lost { why } => (Health::Lost, None, None, Some(why)),
                };
                LockspaceStatus {
                    name: s.name.clone(),
                    path: s.path.display().to_string(),
                    generation: ls.generation(),
                    resumed: ls.resumed(),
                    io_timeout_ms: ls.timeouts().io_timeout.as_millis() as u64,
                    health,
                    renewal_age_ms: Some(now.since(ls.renewed_at()).as_millis() as u64),
                    valid_for_ms,
                    fence_in_ms,
                    error,
                    hosts: ls
                        .hosts()
                        .into_iter()
                        .map(|h| HostStatus {
                            host_id: h.host_id,
                            host_name: h.host_name,
                            generation: h.generation,
                            state: host_state(h.state),
                            renewed_unix: h.renewed_unix,
                            last_change_ago_ms: h.last_change_ago_ms,
                        })
                        .collect(),
                    members: member_statuses(&ls),
                }
            })
            .collect();
        let guest_ref = |pid: &u32| {
            let g = table.guests.get(pid);
            GuestRef { pid: *pid, name: g.map(|g| g.name.clone()).unwrap_or_default(), uuid: g.map(Guest::uuid_string).unwrap_or_default() }
        };
        Status {
            daemon_version: env!("CARGO_PKG_VERSION").into(),
            daemon_pid: std::process::id(),
            host_id: self.cfg.host_id,
            host_id_auto: self.cfg.host_id_auto,
            host_name: self.cfg.host_name.clone(),
            lockspaces,
            leases: table.disks.values().map(|d| HeldView { lease: view(d), holders: d.holders.iter().map(guest_ref).collect() }).collect(),
            escalations,
            declared: crate::declared::views(&table),
            metrics_listen: self.metrics.listening().map(|a| a.to_string()),
            pending_releases: table.pending.iter().map(|(key, l)| PendingRelease { lockspace: key.lockspace.clone(), identity: key.identity.clone(), lver: l.lver }).collect(),
            guests: table
                .guests
                .values()
                .map(|g| GuestView {
                    pid: g.pid,
                    name: g.name.clone(),
                    uuid: g.uuid_string(),
                    uri: g.uri.clone(),
                    action: g.action,
                    registered_unix: g.registered_unix,
                    fenced: g.fenced,
                    leases: table.views_of(g.pid),
                })
                .collect(),
        }
    }

    pub fn who(&self, req: WhoResource) -> Result<WhoResult, WireError> {
        let (key, _) = self.resolve(req.lockspace.as_deref(), req.path.as_deref(), req.identity.as_deref())?;
        let space = self.space(&key.lockspace).expect("resolved lockspaces exist");
        let info = space.ls().who(&key.identity).map_err(|e| err(Code::Unavailable, format!("lockspace \"{}\": cannot read disk {}: {e}", key.lockspace, key.identity)))?;
        let table = self.table.lock();
        let local_holders = table
            .disks
            .get(&key)
            .map(|d| d.holders.iter().filter_map(|p| table.guests.get(p)).map(|g| GuestRef { pid: g.pid, name: g.name.clone(), uuid: g.uuid_string() }).collect())
            .unwrap_or_default();
        Ok(who_result(&key.identity, req.path, &key.lockspace, info, local_holders))
    }
}

/// The engine's judgement of a host, as the protocol carries it.
pub fn host_state(s: HostState) -> proto::protocol::HostState {
    use proto::protocol::HostState as Wire;
    match s {
        HostState::Free => Wire::Free,
        HostState::Live => Wire::Live,
        HostState::Unknown => Wire::Unknown,
        HostState::Failing => Wire::Failing,
        HostState::Dead => Wire::Dead,
        HostState::Corrupt => Wire::Corrupt,
    }
}

/// A `who` answer from what storage says (shared with `highlander who --lockspace`).
pub fn who_result(identity: &str, path: Option<String>, lockspace: &str, info: Option<LeaseInfo>, local_holders: Vec<GuestRef>) -> WhoResult {
    let uuid = |h: &engine::Holder| if h.uuid == [0; 16] { String::new() } else { proto::uuid::format(&h.uuid) };
    let known = info.is_some();
    let i = info.unwrap_or(LeaseInfo {
        identity: identity.to_owned(),
        lockspace: lockspace.to_owned(),
        slot: 0,
        lver: 0,
        held: false,
        owner_id: 0,
        owner_name: String::new(),
        owner_generation: 0,
        owner_state: HostState::Free,
        holder: Default::default(),
        since_unix: 0,
        shared: Vec::new(),
    });
    WhoResult {
        identity: identity.to_owned(),
        path,
        lockspace: lockspace.to_owned(),
        known,
        lver: i.lver,
        held: i.held,
        owner_id: i.owner_id,
        owner_name: i.owner_name.clone(),
        owner_state: host_state(i.owner_state),
        guest: i.holder.name.clone(),
        uuid: uuid(&i.holder),
        since_unix: i.since_unix,
        shared: i
            .shared
            .iter()
            .map(|s| SharedView { host_id: s.host_id, host_name: s.host_name.clone(), guest: s.holder.name.clone(), uuid: uuid(&s.holder), host_state: host_state(s.host_state) })
            .collect(),
        local_holders,
    }
}

/// Each device of a lockspace on a set (none for a one-device lockspace).
fn member_statuses(ls: &engine::Lockspace) -> Vec<proto::protocol::MemberStatus> {
    use proto::protocol::MemberStatus;
    let members = ls.members();
    if members.len() < 2 {
        return Vec::new();
    }
    members
        .into_iter()
        .map(|m| MemberStatus {
            member: m.member as u32 + 1,
            path: m.path,
            state: m.state,
            hung_for_ms: m.hung_for_ms,
            error: m.error,
        })
        .collect()
}
