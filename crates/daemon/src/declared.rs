//! Network disks declared by the qemu hook (`declare`, `undeclare`):
//! libvirt hands no `<disk type='network'>` to a lock manager, so the hook
//! sends them before the guest starts, keyed by the domain's UUID. Each
//! identity is computed here, at declare time, so an unnameable disk fails
//! the hook and with it the start; the guest's next acquire takes these
//! leases together with its file and block disks (all or nothing), and they
//! are released, reported in the lock state and re-adopted like those.

use serde::{Deserialize, Serialize};

use crate::guest::{self, Guest};
use crate::DiskKey;
use crate::leases::Wanted;
use crate::table::Table;
use crate::Daemon;
use engine::format::IDENTITY_LEN;
use engine::resource::Mode;
use identity::netdisk::{Identify, PROTOCOLS};
use proto::protocol::*;

/// A domain's declared network disks, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declaration {
    pub uuid: [u8; 16],
    pub name: String,
    pub lockspace: String,
    pub disks: Vec<Declared>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declared {
    pub target: String,
    pub protocol: String,
    pub source: String,
    /// None: a protocol without an identity rule (kept, reported, unleased).
    pub identity: Option<String>,
    pub mode: Mode,
    pub unleased_why: Option<String>,
}

impl Declared {
    /// How the disk is shown in messages and the lease table.
    fn shown(&self) -> String {
        format!("{} ({})", self.source, self.target)
    }
}

fn err(code: Code, message: impl Into<String>) -> WireError {
    WireError::new(code, message)
}

fn uuid_of(text: &str) -> Result<[u8; 16], WireError> {
    proto::uuid::parse(text).ok_or_else(|| err(Code::BadRequest, format!("uuid {text:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")))
}

/// A network disk's lease mode: readers and `<shareable/>` disks share.
fn mode_of(disk: &NetworkDisk) -> Mode {
    if disk.readonly || disk.shareable {
        Mode::Shared
    } else {
        Mode::Exclusive
    }
}

impl Daemon {
    /// Names every disk (an unnameable one of a known protocol refuses the
    /// whole declaration, naming it) and replaces the domain's declaration.
    pub fn declare(&self, req: Declare) -> Result<DeclaredView, WireError> {
        let uuid = uuid_of(&req.uuid)?;
        if req.name.is_empty() || req.name.chars().any(char::is_control) {
            return Err(err(Code::BadRequest, format!("domain name {:?} must be non-empty without control characters", req.name)));
        }
        let lockspace = self.space_for(req.lockspace.as_deref())?.name.clone();
        let mut disks = Vec::new();
        for d in &req.disks {
            let (identity, unleased_why) = if PROTOCOLS.contains(&d.protocol.as_str()) {
                let id = d.identity().map_err(|e| err(Code::BadDisk, format!("domain \"{}\": {e}; the guest cannot start with that disk unleased: fix its <source>, or remove the disk", req.name)))?;
                if id.len() > IDENTITY_LEN {
                    return Err(err(Code::BadDisk, format!("domain \"{}\": network disk {} ({}): its identity {id:?} is longer than {IDENTITY_LEN} bytes", req.name, d.target, d.source())));
                }
                (Some(id), None)
            } else {
                let why = format!("protocol {:?} has no identity rule (rbd, gluster, iscsi and nbd do); give the guest a <lease> element to protect it", d.protocol);
                log::warn!("domain \"{}\": network disk {} ({}) gets no lease: {why}", req.name, d.target, d.source());
                (None, Some(why))
            };
            disks.push(Declared { target: d.target.clone(), protocol: d.protocol.clone(), source: d.source(), identity, mode: mode_of(d), unleased_why });
        }
        let declaration = Declaration { uuid, name: req.name, lockspace, disks };
        log::info!(
            "declared domain \"{}\" (uuid {}): network disk(s) {}",
            declaration.name,
            req.uuid,
            if declaration.disks.is_empty() { "none".to_owned() } else { declaration.disks.iter().map(|d| format!("{} {}", d.shown(), d.identity.as_deref().unwrap_or("unleased"))).collect::<Vec<_>>().join(", ") }
        );
        let view = {
            let mut table = self.table.lock();
            table.declared.insert(uuid, declaration);
            declared_view(&table, &table.declared[&uuid])
        };
        self.persist();
        Ok(view)
    }

    /// Drops the domain's declaration unless a live guest of that UUID on
    /// this host still holds leases (e.g. libvirt's `release` for a failed
    /// incoming migration of a guest that runs here).
    pub fn undeclare(&self, req: Undeclare) -> Result<UndeclareResult, WireError> {
        let uuid = uuid_of(&req.uuid)?;
        let holders = |table: &Table| -> Vec<Guest> { table.guests.values().filter(|g| g.uuid == uuid && table.held_by(g.pid).next().is_some()).cloned().collect() };
        // libvirt runs `release` once the guest's process is gone, maybe
        // before the watcher has seen it exit: settle that first.
        let settled = holders(&self.table.lock());
        for g in settled.iter().filter(|g| guest::track(g.pid, Some(g.start_time)).is_none()) {
            self.guest_exited(g.pid, g.start_time);
        }
        let mut table = self.table.lock();
        let holding: Vec<String> = holders(&table).iter().map(ToString::to_string).collect();
        if !holding.is_empty() {
            let why = format!("{} still hold(s) leases on this host", holding.join(", "));
            log::info!("kept the declaration of domain uuid {}: {why}", req.uuid);
            return Ok(UndeclareResult { uuid: req.uuid, dropped: false, kept_why: Some(why) });
        }
        let dropped = table.declared.remove(&uuid).is_some();
        drop(table);
        if dropped {
            log::info!("undeclared domain uuid {}", req.uuid);
            self.persist();
        }
        Ok(UndeclareResult { uuid: req.uuid, dropped, kept_why: None })
    }

    /// Adds the guest's declared network disks to what it acquires.
    pub(crate) fn add_declared(&self, uuid: &[u8; 16], wanted: &mut Vec<Wanted>) -> Result<(), WireError> {
        let Some(declaration) = self.table.lock().declared.get(uuid).cloned() else { return Ok(()) };
        let lockspace = self.space_for(Some(&declaration.lockspace))?.name.clone();
        for d in &declaration.disks {
            let Some(identity) = &d.identity else { continue };
            let key = DiskKey::new(lockspace.clone(), identity.clone());
            match wanted.iter().find(|w| w.key == key) {
                Some(w) if w.mode != d.mode => {
                    return Err(err(Code::BadRequest, format!("disk {identity} is both {} ({}) and network disk {} ({})", w.path, w.mode, d.shown(), d.mode)));
                }
                Some(_) => {}
                None => wanted.push(Wanted { key, path: d.shown(), mode: d.mode }),
            }
        }
        Ok(())
    }
}

fn declared_view(table: &Table, d: &Declaration) -> DeclaredView {
    let held = |identity: &str| {
        let key = DiskKey::new(&d.lockspace, identity);
        table.disks.get(&key).is_some_and(|disk| disk.holders.iter().any(|p| table.guests.get(p).is_some_and(|g| g.uuid == d.uuid)))
    };
    DeclaredView {
        uuid: proto::uuid::format(&d.uuid),
        name: d.name.clone(),
        lockspace: d.lockspace.clone(),
        disks: d
            .disks
            .iter()
            .map(|x| DeclaredDiskView {
                target: x.target.clone(),
                protocol: x.protocol.clone(),
                source: x.source.clone(),
                identity: x.identity.clone(),
                mode: x.mode,
                unleased_why: x.unleased_why.clone(),
                leased: x.identity.as_deref().is_some_and(held),
            })
            .collect(),
    }
}

/// Every declaration, for `status`.
pub fn views(table: &Table) -> Vec<DeclaredView> {
    table.declared.values().map(|d| declared_view(table, d)).collect()
}
