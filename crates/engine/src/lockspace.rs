//! A lockspace this host has joined: the renewal thread, this host's lease
//! health, and the API the daemon and tests use (acquire, release, who,
//! hosts, leave). `open` reads an existing lockspace's header.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Mono;
use crate::delta_lease::{self, HostIdentity, HostView, Peers};
use crate::error::{Error, FormatError, Result};
use crate::format::{Header, HostSlot, Layout};
use crate::resource::{self, AcquireRequest, Ctx, Lease, LeaseInfo};
use crate::device::Device;
use crate::storage::{FaultHook, MemberState, Storage};
use crate::timing::Timeouts;

/// Opens an existing lockspace on one device (for a member of a set: that
/// member alone) and checks its header against the device.
pub fn open(path: &Path, writable: bool) -> Result<(Storage, Header)> {
    open_device(path, writable).map(|(device, header)| (Storage::single(device), header))
}

fn open_device(path: &Path, writable: bool) -> Result<(Device, Header)> {
    let probe = Device::open(path, writable, None)?;
    if probe.size_bytes() < probe.sector_size() as u64 {
        let smallest = Layout { max_hosts: 1, resource_slots: 1 }.total_sectors() * probe.sector_size() as u64;
        return Err(Error::TooSmall { path: path.to_owned(), size: probe.size_bytes(), need: smallest });
    }
    let first = probe.read(0, 1)?;
    let header = Header::decode(&first).map_err(|source| match source {
        FormatError::BadChecksum { .. } | FormatError::BadField { .. } => Error::CorruptHeader { path: path.to_owned(), source },
        _ => Error::NotALockspace { path: path.to_owned(), source },
    })?;
    let device = if header.sector_size == probe.sector_size() {
        probe
    } else {
        Device::open(path, writable, Some(header.sector_size)).map_err(|e| match e {
            Error::SectorSizeTooSmall { device, .. } => Error::WrongSectorSize { path: path.to_owned(), header: header.sector_size, device },
            e => e,
        })?
    };
    let need = header.layout().total_sectors() * header.sector_size as u64;
    if device.size_bytes() < need {
        return Err(Error::Truncated { path: path.to_owned(), size: device.size_bytes(), need });
    }
    Ok((device, header))
}

/// Opens a lockspace named by all its devices (one path, or every member
/// of a set). Members that cannot be opened are left out while the rest
/// are a majority (the set runs degraded); members that belong to another
/// lockspace, repeat an index, or are missing from the list are refused.
pub fn open_members(paths: &[PathBuf], writable: bool) -> Result<(Storage, Header)> {
    let [only] = paths else { return open_set(paths, writable) };
    let (storage, header) = open(only, writable)?;
    if header.members > 1 {
        return Err(Error::BadMemberSet {
            path: only.clone(),
            what: format!("is member {} of the {} devices of lockspace \"{}\"; name all of them (`lockspace = PATH1 PATH2 PATH3` in highlanderd.conf, every path on the command line)", header.member_index + 1, header.members, header.name),
        });
    }
    Ok((storage, header))
}

fn open_set(paths: &[PathBuf], writable: bool) -> Result<(Storage, Header)> {
    let first = paths.first().cloned().unwrap_or_default();
    let bad = |what: String| Error::BadMemberSet { path: first.clone(), what };
    if !crate::format::MEMBER_COUNTS.contains(&(paths.len() as u32)) {
        return Err(bad(format!("names {} devices; a lockspace has 1, 3 or 5", paths.len())));
    }
    let opened: Vec<Result<(Device, Header)>> = paths.iter().map(|p| open_device(p, writable)).collect();
    let Some(header) = opened.iter().find_map(|o| o.as_ref().ok().map(|(_, h)| h.clone())) else {
        return Err(opened.into_iter().find_map(|o| o.err()).expect("no member opened"));
    };
    if header.members as usize != paths.len() {
        return Err(bad(format!("lockspace \"{}\" has {} devices, but {} are named", header.name, header.members, paths.len())));
    }
    // Slot i of the storage is member index i, whatever order they are named in.
    let mut members: Vec<Option<(PathBuf, std::result::Result<Device, String>)>> = (0..paths.len()).map(|_| None).collect();
    let mut unopened = Vec::new();
    for (path, o) in paths.iter().zip(opened) {
        match o {
            Ok((device, h)) => {
                if !h.same_lockspace(&header) {
                    return Err(bad(format!("{} is not a member of lockspace \"{}\" (the lockspace on {}); `highlander dump {}` shows what it holds", path.display(), header.name, paths[0].display(), path.display())));
                }
                let i = h.member_index as usize;
                if let Some((other, _)) = &members[i] {
                    return Err(bad(format!("{} and {} are both member {}: one device named twice, under two names; name each device of the set once", other.display(), path.display(), i + 1)));
                }
                members[i] = Some((path.clone(), Ok(device)));
            }
            Err(e) => unopened.push((path.clone(), e.to_string())),
        }
    }
    // An unopened path takes a free index: which one it is cannot be read.
    for (slot, (path, why)) in members.iter_mut().filter(|m| m.is_none()).zip(unopened) {
        *slot = Some((path, Err(why)));
    }
    let members: Vec<_> = members.into_iter().map(|m| m.expect("every index filled")).collect();
    let open = members.iter().filter(|(_, d)| d.is_ok()).count();
    let storage = Storage::set(members);
    if open < storage.majority() {
        let why = storage.member_states().iter().filter_map(|m| m.error.as_ref().map(|e| format!("{}: {e}", m.path))).collect::<Vec<_>>().join("; ");
        return Err(bad(format!("only {open} of the {} devices of lockspace \"{}\" could be opened, and a majority is {}: {why}", paths.len(), header.name, storage.majority())));
    }
    Ok((storage, header))
}

/// Frees host id `host_id`'s slot (corrupt, or to be given to another
/// machine) once no host has changed it for host_dead; see
/// `delta_lease::clear_slot`. `paths`: the lockspace's device, or every
/// member of its set (the watch must see every member a live host may
/// write). Returns false when the slot was never used.
pub fn clear_host(paths: &[PathBuf], host_id: u32) -> Result<bool> {
    let (storage, header) = open_members(paths, true)?;
    let timeouts = Timeouts::new(Duration::from_millis(header.io_timeout_ms as u64))?;
    let storage = storage.configured(timeouts.io_deadline, None, host_id);
    delta_lease::clear_slot(&storage, &header, &timeouts, host_id, || resource::highest_generation_of(&storage, &header, host_id))
}

#[derive(Clone)]
pub struct JoinOptions {
    /// The lockspace's device, or every member of its set of devices.
    pub paths: Vec<PathBuf>,
    pub host_id: u32,
    pub host_name: String,
    pub fault: Option<Arc<dyn FaultHook>>,
    /// Where to keep the resume state that lets a restarted daemon carry on
    /// with the same host lease (e.g. /run/highlander).
    pub state_dir: Option<PathBuf>,
    /// Fail with `Error::ResumeExpired` rather than join with a new generation.
    pub require_resume: bool,
    /// The last write of this process's previous `Lockspace` on this id
    /// (`Lockspace::incarnation`): if the slot still holds exactly it, the
    /// join may take the fast path. The resume state in `state_dir` gives
    /// the same proof across a restart; the caller must hold `state_dir`
    /// exclusively (highlanderd does, with its lock file).
    pub predecessor: Option<delta_lease::Incarnation>,
    /// The id was picked automatically as unused (`host_claim`): refuse it
    /// at once if the slot turns out to be in use.
    pub claim: bool,
}

impl JoinOptions {
    /// A lockspace on a set of devices: all of them.
    pub fn members(paths: Vec<PathBuf>, host_id: u32, host_name: &str) -> JoinOptions {
        JoinOptions { paths, ..JoinOptions::new(PathBuf::new(), host_id, host_name) }
    }

    pub fn new(path: impl Into<PathBuf>, host_id: u32, host_name: &str) -> JoinOptions {
        JoinOptions { paths: vec![path.into()], host_id, host_name: host_name.to_owned(), fault: None, state_dir: None, require_resume: false, predecessor: None, claim: false }
    }
}

/// This host's lease in the lockspace, as the renewal thread sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Renewing; our leases are valid until `valid_until`.
    Healthy { valid_until: Mono },
    /// Renewals are failing. At `fence_at` lock-failure actions must start;
    /// at `valid_until` our leases are void.
    Failing { fence_at: Mono, valid_until: Mono, error: String },
    /// The host lease is gone; rejoin to get a new generation.
    Lost { why: String },
}

struct HostLease {
    slot: HostSlot,
    /// Start of the last renewal (or join) whose write completed.
    valid_from: Mono,
    /// Renewal counter of the last write attempted, landed or not.
    last_attempt: u64,
    failing: Option<String>,
    lost: Option<String>,
    /// What each member last showed in our slot.
    own_memory: delta_lease::OwnMemory,
}

struct Shared {
    storage: Storage,
    header: Header,
    timeouts: Timeouts,
    host_name: String,
    host_id: u32,
    generation: u64,
    resumed: bool,
    state: Mutex<HostLease>,
    /// Renewals whose read or write failed, since the join (for monitoring).
    renewal_failures: AtomicU64,
    peers: Mutex<Peers>,
    slots: Mutex<resource::SlotNames>,
    slot_locks: Vec<Mutex<()>>,
    /// Per slot, the last version this generation released exclusively.
    released: Mutex<resource::Released>,
    state_file: Option<PathBuf>,
    stop: crossbeam_channel::Sender<()>,
}

/// A joined lockspace. Cheap to clone; the renewal thread runs until
/// `leave`, `stop`, or the host lease is lost.
#[derive(Clone)]
pub struct Lockspace {
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// What a daemon restart needs to carry on with the same host lease.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ResumeState {
    lockspace_uuid: String,
    host_id: u32,
    generation: u64,
    nonce: String,
    /// CLOCK_BOOTTIME ns of the start of the last successful renewal.
    valid_from: u64,
    /// That renewal's counter (absent in files of older versions).
    #[serde(default)]
    renewal: Option<u64>,
}

impl ResumeState {
    fn load(file: &Path) -> Option<ResumeState> {
        let text = std::fs::read(file).ok()?;
        let saved = serde_json::from_slice(&text);
        if saved.is_err() {
            log::warn!("{}: unreadable resume state ignored", file.display());
        }
        saved.ok()
    }

    fn is_for(&self, header: &Header, host_id: u32) -> bool {
        self.host_id == host_id && self.lockspace_uuid == hex(&header.uuid)
    }

    /// The last write the saved process landed within its lease: proof for
    /// a fast join when the slot still holds exactly it.
    fn incarnation(&self, header: &Header, host_id: u32) -> Option<delta_lease::Incarnation> {
        let nonce = (0..16).map(|i| self.nonce.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect::<Option<Vec<u8>>>()?;
        let nonce: [u8; 16] = nonce.try_into().ok()?;
        (self.is_for(header, host_id) && self.nonce.len() == 32).then_some(delta_lease::Incarnation { generation: self.generation, nonce, renewal: self.renewal? })
    }
}

/// Where a lockspace's resume state lives in a daemon's state dir.
pub fn resume_file(state_dir: &Path, lockspace: &str) -> PathBuf {
    state_dir.join(format!("lockspace-{lockspace}.json"))
}

/// The host id, generation and start of the last successful renewal that a
/// resume state records (for the fence sentinel's deadline).
pub fn saved_renewal(file: &Path) -> std::result::Result<(u32, u64, Mono), String> {
    let text = std::fs::read(file).map_err(|e| e.to_string())?;
    let saved: ResumeState = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    Ok((saved.host_id, saved.generation, Mono(saved.valid_from)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Lockspace {
    /// Joins (or, with a valid resume state, rejoins without a new
    /// generation) and starts renewing.
    pub fn join(opts: JoinOptions) -> Result<Lockspace> {
        for path in &opts.paths {
            identity::gluster::check_lockspace(path)?;
        }
        let (storage, header) = open_members(&opts.paths, true)?;
        let timeouts = Timeouts::new(Duration::from_millis(header.io_timeout_ms as u64))?;
        let storage = storage.configured(timeouts.io_deadline, opts.fault.clone(), opts.host_id);
        let me = HostIdentity::local(&opts.host_name);
        let state_file = opts.state_dir.as_ref().map(|d| resume_file(d, &header.name));
        let saved = state_file.as_deref().and_then(ResumeState::load).filter(|s| s.is_for(&header, opts.host_id));
        let resumed = match &saved {
            Some(saved) => try_resume(&storage, &header, &timeouts, opts.host_id, saved)?,
            None => None,
        };
        let (joined, was_resumed) = match resumed {
            Some(j) => (j, true),
            None if opts.require_resume => {
                return Err(Error::ResumeExpired { lockspace: header.name.clone() });
            }
            None => {
                let predecessor = opts.predecessor.or_else(|| saved.as_ref().and_then(|s| s.incarnation(&header, opts.host_id)));
                (delta_lease::join(&storage, &header, &timeouts, opts.host_id, &me, predecessor, opts.claim)?, false)
            }
        };
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let own_memory = delta_lease::OwnMemory::after_join(storage.len(), &joined.copies, &joined.slot);
        let shared = Arc::new(Shared {
            peers: Mutex::new(Peers::with_members(header.max_hosts, storage.len(), timeouts)),
            storage,
            timeouts,
            host_name: me.name,
            host_id: opts.host_id,
            generation: joined.slot.generation,
            resumed: was_resumed,
            state: Mutex::new(HostLease {
                last_attempt: joined.slot.renewal,
                slot: joined.slot,
                valid_from: joined.valid_from,
                failing: None,
                lost: None,
                own_memory,
            }),
            renewal_failures: AtomicU64::new(0),
            slots: Mutex::new(resource::SlotNames::default()),
            slot_locks: (0..header.resource_slots).map(|_| Mutex::new(())).collect(),
            released: Mutex::new(resource::Released::default()),
            state_file,
            header,
            stop,
        });
        shared.persist();
        // Learn the peers before serving acquires: one read now.
        shared.observe_peers()?;
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hl-renew-{}", shared.header.name))
            .spawn(move || worker.renewal_loop(stopped))
            .map_err(|source| Error::RenewalThread { lockspace: shared.header.name.clone(), source })?;
        Ok(Lockspace { shared, thread: Arc::new(Mutex::new(Some(thread))) })
    }

    pub fn header(&self) -> &Header {
        &self.shared.header
    }
    pub fn name(&self) -> &str {
        &self.shared.header.name
    }
    pub fn path(&self) -> &Path {
        self.shared.storage.path()
    }
    /// Every device of the lockspace, in member order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.shared.storage.paths()
    }
    /// How each device of the lockspace is doing.
    pub fn members(&self) -> Vec<MemberState> {
        self.shared.storage.member_states()
    }
    /// (reads, writes) issued to each member (None: not opened).
    pub fn member_io_counts(&self) -> Vec<Option<(u64, u64)>> {
        self.shared.storage.member_io_counts()
    }
    pub fn timeouts(&self) -> Timeouts {
        self.shared.timeouts
    }
    pub fn host_id(&self) -> u32 {
        self.shared.host_id
    }
    pub fn host_name(&self) -> &str {
        &self.shared.host_name
    }
    pub fn generation(&self) -> u64 {
        self.shared.generation
    }
    /// True when `join` carried on a previous process's host lease.
    pub fn resumed(&self) -> bool {
        self.shared.resumed
    }
    /// Sector reads and writes issued so far (for benchmarks).
    pub fn io_counts(&self) -> (u64, u64) {
        self.shared.storage.io_counts()
    }

    pub fn health(&self) -> Health {
        self.shared.health()
    }

    /// The start of the last renewal (or join) whose write landed: every
    /// timeout of this host's lease counts from it.
    pub fn renewed_at(&self) -> Mono {
        self.shared.state.lock().valid_from
    }

    /// How many renewals failed (a read or write error) since the join.
    pub fn renewal_failures(&self) -> u64 {
        self.shared.renewal_failures.load(Ordering::Relaxed)
    }

    /// Our last write known to have landed within the lease: what the next
    /// `JoinOptions::predecessor` of this host id in this process should be.
    pub fn incarnation(&self) -> delta_lease::Incarnation {
        delta_lease::Incarnation::of(&self.shared.state.lock().slot)
    }

    /// Until when our leases are valid by our own clock; None once lost.
    pub fn valid_until(&self) -> Option<Mono> {
        match self.health() {
            Health::Healthy { valid_until } | Health::Failing { valid_until, .. } => Some(valid_until),
            Health::Lost { .. } => None,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        let s = &self.shared;
        Ctx {
            storage: &s.storage,
            header: &s.header,
            host_id: s.host_id,
            generation: s.generation,
            host_name: &s.host_name,
            peers: &s.peers,
            slots: &s.slots,
            slot_locks: &s.slot_locks,
            released: &s.released,
            backoff_max: s.timeouts.io_timeout / 10,
        }
    }

    /// Refuses when our host lease cannot back a new lease.
    fn usable(&self) -> Result<()> {
        match self.health() {
            Health::Healthy { .. } => Ok(()),
            Health::Failing { error, .. } => Err(Error::HostLeaseLost { lockspace: self.name().to_owned(), why: format!("renewals are failing: {error}") }),
            Health::Lost { why } => Err(Error::HostLeaseLost { lockspace: self.name().to_owned(), why }),
        }
    }

    pub fn acquire(&self, req: &AcquireRequest) -> Result<Lease> {
        self.usable()?;
        let lease = self.ctx().acquire(req)?;
        // A lease won after our host lease expired is worth nothing.
        if let Err(e) = self.usable() {
            let _ = self.ctx().release(&lease);
            return Err(e);
        }
        Ok(lease)
    }

    pub fn release(&self, lease: &Lease) -> Result<()> {
        self.ctx().release(lease)
    }

    /// Confirms on storage that a lease recorded before a restart is still ours.
    pub fn adopt(&self, lease: &Lease) -> Result<()> {
        if lease.generation != self.generation() {
            return Err(Error::NotHeld { identity: lease.identity.clone(), lver: lease.lver });
        }
        self.ctx().verify(lease)
    }

    /// The leases storage records as this host's at its current generation,
    /// read from every resource slot (read-only). After a resumed join they
    /// may include leases the previous process won but never recorded.
    pub fn held_by_me(&self) -> Result<Vec<Lease>> {
        self.ctx().held_by_me()
    }

    /// Every other host's slot, judged by our observations.
    pub fn hosts(&self) -> Vec<HostView> {
        let mut views = self.shared.peers.lock().views();
        if let Some(me) = views.iter_mut().find(|v| v.host_id == self.host_id()) {
            me.state = match self.health() {
                Health::Healthy { .. } => delta_lease::HostState::Live,
                Health::Failing { .. } => delta_lease::HostState::Failing,
                Health::Lost { .. } => delta_lease::HostState::Dead,
            };
        }
        views
    }

    /// Who holds `identity`, read from storage now.
    pub fn who(&self, identity: &str) -> Result<Option<LeaseInfo>> {
        let ctx = self.ctx();
        let Some((slot, area)) = resource::find(&self.shared.storage, &self.shared.header, identity)? else { return Ok(None) };
        let peers = self.shared.peers.lock();
        Ok(Some(resource::describe(ctx.header, slot, &area, |id, generation| {
            if id == ctx.host_id && generation == ctx.generation {
                return (ctx.host_name.to_owned(), delta_lease::HostState::Live);
            }
            let name = peers.record(id).map(|r| r.host_name.clone()).unwrap_or_default();
            let state = if peers.owner_gone(id, generation) { delta_lease::HostState::Dead } else { peers.state(id) };
            (name, state)
        })))
    }

    /// Clean leave: stop renewing and mark our slot free. Only for a host
    /// with no leases in use: they become void for everyone at once.
    pub fn leave(self) -> Result<()> {
        self.join_thread();
        let s = &self.shared;
        let mut state = s.state.lock();
        if state.lost.is_some() || Mono::now() >= state.valid_from.add(s.timeouts.lease_expiry) {
            return Ok(());
        }
        // Marking free a slot another writer holds would hand it to a third.
        let reads = delta_lease::read_all(&s.storage, &s.header)?;
        let (slot, last_attempt) = (state.slot.clone(), state.last_attempt);
        if let delta_lease::OwnSlot::Taken(found) = delta_lease::check_own_members(&own_copies(&reads, s.host_id), &slot, last_attempt, &mut state.own_memory) {
            let why = delta_lease::taken_why(s.host_id, found.as_ref());
            log::error!("lockspace {}: not leaving: {why}", s.header.name);
            return Ok(());
        }
        delta_lease::leave(&s.storage, &s.header, &HostSlot { renewal: state.last_attempt, ..state.slot.clone() })?;
        if let Some(f) = &s.state_file {
            let _ = std::fs::remove_file(f);
        }
        Ok(())
    }

    /// Stops renewing but leaves the slot held and the resume state in
    /// place: a restarted daemon carries on with the same leases if it
    /// comes back before `fence_begin`.
    pub fn stop(self) {
        self.join_thread();
    }

    fn join_thread(&self) {
        let _ = self.shared.stop.try_send(());
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn health(&self) -> Health {
        let state = self.state.lock();
        if let Some(why) = &state.lost {
            return Health::Lost { why: why.clone() };
        }
        let valid_until = state.valid_from.add(self.timeouts.lease_expiry);
        if Mono::now() >= valid_until {
            return Health::Lost { why: format!("no successful renewal for {:?}", self.timeouts.lease_expiry) };
        }
        match &state.failing {
            None => Health::Healthy { valid_until },
            Some(error) => Health::Failing { fence_at: state.valid_from.add(self.timeouts.fence_begin), valid_until, error: error.clone() },
        }
    }

    fn renewal_loop(&self, stopped: crossbeam_channel::Receiver<()>) {
        let mut next = Mono::now().add(self.timeouts.renew_interval);
        loop {
            if stopped.recv_timeout(next.remaining()).is_ok() {
                return;
            }
            let start = Mono::now();
            if self.renew_once().is_err() {
                log::error!("lockspace {}: host lease lost: {}", self.header.name, self.health_why());
                return;
            }
            next = start.add(self.timeouts.renew_interval);
        }
    }

    fn health_why(&self) -> String {
        let secs = |at: Mono| format!("{:.1} s", at.remaining().as_secs_f64());
        match self.health() {
            Health::Lost { why } => why,
            Health::Failing { fence_at, valid_until, error } => {
                format!("renewals are failing ({error}); guests are fenced in {} and this host's leases are void in {}", secs(fence_at), secs(valid_until))
            }
            Health::Healthy { valid_until } => format!("renewing; this host's leases are valid for another {}", secs(valid_until)),
        }
    }

    /// One renewal: read every slot (observing the peers, and checking that
    /// ours still holds our own write), then rewrite ours. Reading first is
    /// what catches another writer of our host id: its write lands in the
    /// interval between our renewals, where our read finds it
    /// (docs/SAFETY.md, "Renewal checks ownership"). Err(()) once lost.
    fn renew_once(&self) -> std::result::Result<(), ()> {
        let slots = match self.observe_peers() {
            Ok(slots) => slots,
            Err(e) => {
                log::warn!("lockspace {}: renewal failed: cannot read the host slots: {e}", self.header.name);
                self.renewal_failures.fetch_add(1, Ordering::Relaxed);
                self.state.lock().failing = Some(e.to_string());
                return self.lapsed(Mono::now());
            }
        };
        let (current, valid_until, start) = {
            let mut state = self.state.lock();
            let (slot, last_attempt) = (state.slot.clone(), state.last_attempt);
            match delta_lease::check_own_members(&own_copies(&slots, self.host_id), &slot, last_attempt, &mut state.own_memory) {
                delta_lease::OwnSlot::Ours => {}
                delta_lease::OwnSlot::Corrupt(e) => {
                    log::error!("lockspace {}: our slot (host id {}) was found corrupt ({e}); rewriting it with our renewal", self.header.name, self.host_id);
                }
                delta_lease::OwnSlot::Taken(found) => {
                    let why = delta_lease::taken_why(self.host_id, found.as_ref());
                    log::error!("lockspace {}: {why}; this host's leases are void and its guests are fenced now", self.header.name);
                    state.lost = Some(why);
                    return Err(());
                }
            }
            let start = Mono::now();
            let valid_until = state.valid_from.add(self.timeouts.lease_expiry);
            if start >= valid_until {
                state.lost.get_or_insert_with(|| format!("no successful renewal for {:?}", self.timeouts.lease_expiry));
                return Err(());
            }
            state.last_attempt += 1;
            (HostSlot { renewal: state.last_attempt - 1, ..state.slot.clone() }, valid_until, start)
        };
        match delta_lease::renew(&self.storage, &self.header, &current) {
            Ok(written) if Mono::now() < valid_until => {
                let mut state = self.state.lock();
                if state.failing.take().is_some() {
                    log::warn!("lockspace {}: renewal recovered", self.header.name);
                }
                state.slot = written;
                state.valid_from = start;
                drop(state);
                self.persist();
                Ok(())
            }
            Ok(_) => {
                self.state.lock().lost = Some("renewal completed after our lease expired".into());
                Err(())
            }
            Err(e) => {
                log::warn!("lockspace {}: renewal failed: {e}", self.header.name);
                self.renewal_failures.fetch_add(1, Ordering::Relaxed);
                self.state.lock().failing = Some(e.to_string());
                Ok(())
            }
        }
    }

    /// Err(()) (and lost) once the lease has run out by `now`.
    fn lapsed(&self, now: Mono) -> std::result::Result<(), ()> {
        let mut state = self.state.lock();
        if now >= state.valid_from.add(self.timeouts.lease_expiry) {
            state.lost.get_or_insert_with(|| format!("no successful renewal for {:?}", self.timeouts.lease_expiry));
            return Err(());
        }
        Ok(())
    }

    /// Reads all slots and feeds the observations (logging peers' slots
    /// that turn corrupt; our own is `renew_once`'s business).
    fn observe_peers(&self) -> Result<Vec<delta_lease::MemberSlots>> {
        let start = Mono::now();
        let slots = delta_lease::read_all(&self.storage, &self.header)?;
        let done = Mono::now();
        for c in self.peers.lock().observe_members(start, done, &slots) {
            if c.host_id != self.host_id {
                let path = self.storage.paths().get(c.member).cloned().unwrap_or_default();
                log::error!(
                    "lockspace {}: the slot of host id {} is corrupt on {} ({}); that host counts as live until its slot is readable again or freed with `highlander lockspace clear-host {} --host-id {}`",
                    self.header.name,
                    c.host_id,
                    path.display(),
                    c.error,
                    self.storage.path().display(),
                    c.host_id
                );
            }
        }
        Ok(slots)
    }

    fn persist(&self) {
        let Some(file) = &self.state_file else { return };
        let state = self.state.lock();
        let resume = ResumeState {
            lockspace_uuid: hex(&self.header.uuid),
            host_id: self.host_id,
            generation: state.slot.generation,
            nonce: hex(&state.slot.nonce),
            valid_from: state.valid_from.0,
            renewal: Some(state.slot.renewal),
        };
        drop(state);
        let tmp = file.with_extension("tmp");
        let written = serde_json::to_vec(&resume).map_err(std::io::Error::from).and_then(|json| std::fs::write(&tmp, json)).and_then(|()| std::fs::rename(&tmp, file));
        if let Err(e) = written {
            log::warn!("{}: cannot save resume state: {e}", file.display());
        }
    }
}

/// Carries on a previous process's host lease if the saved state matches
/// our slot on storage and there is time left before fencing would begin.
fn try_resume(storage: &Storage, header: &Header, timeouts: &Timeouts, host_id: u32, saved: &ResumeState) -> Result<Option<delta_lease::Joined>> {
    let valid_from = Mono(saved.valid_from);
    if Mono::now() >= valid_from.add(timeouts.fence_begin) {
        return Ok(None);
    }
    match delta_lease::read_own_newest(storage, header, host_id)? {
        Some(slot) if !slot.free && slot.generation == saved.generation && hex(&slot.nonce) == saved.nonce => {
            Ok(Some(delta_lease::Joined { slot, valid_from, copies: Vec::new() }))
        }
        _ => Ok(None),
    }
}

/// Each member's copy of host id `host_id`'s slot.
fn own_copies(reads: &[delta_lease::MemberSlots], host_id: u32) -> Vec<(usize, &delta_lease::SlotRead)> {
    reads.iter().map(|r| (r.member, &r.slots[host_id as usize - 1])).collect()
}
