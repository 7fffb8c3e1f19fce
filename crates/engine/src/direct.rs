//! Direct access: read a lockspace straight from storage, with no daemon
//! and without joining (`highlander dump`, `highlander who`). Corrupt
//! records are reported in place and never stop the dump.

use std::path::Path;

use crate::delta_lease::HostState;
use crate::error::Result;
use crate::format::{Dblock, HostSlot, Leader, RECORD_LEN};
use crate::lockspace;
use crate::paxos_lease::ResourceArea;
use crate::resource::{self, LeaseInfo};
use crate::timing::Timeouts;

#[derive(Debug, serde::Serialize)]
pub struct DumpHost {
    pub host_id: u32,
    pub host_name: String,
    pub generation: u64,
    /// "free" (left cleanly), "held" (renewing or dead: one read cannot tell), or "corrupt".
    pub status: String,
    /// The holder's wall clock at its last renewal; display only.
    pub last_renewal_unix: u64,
    pub io_timeout_ms: u32,
}

#[derive(Debug, serde::Serialize)]
pub struct DumpResource {
    #[serde(flatten)]
    pub lease: LeaseInfo,
    /// "exclusive", "shared" or "free".
    pub mode: String,
}

#[derive(Debug, serde::Serialize)]
pub struct Dump {
    pub path: String,
    pub name: String,
    pub uuid: String,
    pub format_version: String,
    pub sector_size: u32,
    pub max_hosts: u32,
    pub resource_slots: u32,
    pub io_timeout_ms: u32,
    pub host_dead_ms: u64,
    pub bytes_per_resource: u64,
    pub created_unix: u64,
    /// This device's place in the lockspace's set of devices (1-based), of `members`.
    pub member: u32,
    pub members: u32,
    pub hosts: Vec<DumpHost>,
    pub resources: Vec<DumpResource>,
    /// Records that failed verification: "sector N (kind): reason".
    pub corrupt: Vec<String>,
}

pub fn dump(path: &Path) -> Result<Dump> {
    let (storage, header) = lockspace::open(path, false)?;
    let timeouts = Timeouts::new(std::time::Duration::from_millis(header.io_timeout_ms as u64))?;
    let layout = header.layout();
    let ss = header.sector_size as usize;
    let mut corrupt = Vec::new();

    let host_sectors = storage.read(1, header.max_hosts as u64)?.swap_remove(0).data;
    let mut slots: Vec<Option<HostSlot>> = Vec::new();
    let mut hosts = Vec::new();
    for (i, sector) in host_sectors.chunks(ss).enumerate() {
        let host_id = i as u32 + 1;
        match HostSlot::decode(&sector[..RECORD_LEN]) {
            Ok(None) => slots.push(None),
            Ok(Some(s)) => {
                hosts.push(DumpHost {
                    host_id,
                    host_name: s.host_name.clone(),
                    generation: s.generation,
                    status: if s.free { "free" } else { "held" }.into(),
                    last_renewal_unix: s.renewed_unix,
                    io_timeout_ms: s.io_timeout_ms,
                });
                slots.push(Some(s));
            }
            Err(e) => {
                corrupt.push(format!("sector {} (host slot of host id {host_id}): {e}", layout.host_slot(host_id)));
                hosts.push(DumpHost { host_id, host_name: String::new(), generation: 0, status: "corrupt".into(), last_renewal_unix: 0, io_timeout_ms: 0 });
                slots.push(None);
            }
        }
    }
    // One read judges only "held" or "free"; liveness needs watching over time.
    // Host ids come from records: id 0 wraps to no slot rather than panicking.
    let judge = |id: u32, generation: u64| match slots.get((id as usize).wrapping_sub(1)).cloned().flatten() {
        Some(s) if s.generation > generation || (s.free && s.generation == generation) => (s.host_name, HostState::Free),
        Some(s) => (s.host_name, HostState::Unknown),
        None => (String::new(), HostState::Unknown),
    };

    let mut resources = Vec::new();
    for slot in 0..header.resource_slots {
        let base = layout.resource_base(slot);
        let buf = storage.read(base, layout.sectors_per_resource())?.swap_remove(0).data;
        let mut sectors = buf.chunks(ss);
        let leader = match Leader::decode(&sectors.next().unwrap()[..RECORD_LEN]) {
            Ok(None) => continue,
            Ok(Some(l)) => l,
            Err(e) => {
                corrupt.push(format!("sector {base} (leader of resource slot {slot}): {e}"));
                continue;
            }
        };
        let dblocks = sectors
            .enumerate()
            .map(|(i, s)| {
                Dblock::decode(&s[..RECORD_LEN]).unwrap_or_else(|e| {
                    corrupt.push(format!("sector {} (ballot block of host id {} in resource slot {slot}): {e}", base + 1 + i as u64, i + 1));
                    Dblock::default()
                })
            })
            .collect();
        let lease = resource::describe(&header, slot, &ResourceArea { leader: Some(leader), dblocks, own_write_in_flight: false }, judge);
        let mode = if lease.held { "exclusive" } else if lease.shared.is_empty() { "free" } else { "shared" };
        resources.push(DumpResource { mode: mode.into(), lease });
    }
    Ok(Dump {
        path: path.display().to_string(),
        name: header.name.clone(),
        uuid: proto::uuid::format(&header.uuid),
        format_version: format!("{}.{}", crate::format::FORMAT_MAJOR, crate::format::FORMAT_MINOR),
        sector_size: header.sector_size,
        max_hosts: header.max_hosts,
        resource_slots: header.resource_slots,
        io_timeout_ms: header.io_timeout_ms,
        host_dead_ms: timeouts.host_dead.as_millis() as u64,
        bytes_per_resource: layout.sectors_per_resource() * header.sector_size as u64,
        created_unix: header.created_unix,
        member: header.member_index + 1,
        members: header.members,
        hosts,
        resources,
        corrupt,
    })
}

/// Who holds `identity`, answered from storage alone. `paths`: the
/// lockspace's device, or every member of its set (the newest copies of
/// a majority decide).
pub fn who(paths: &[std::path::PathBuf], identity: &str) -> Result<Option<LeaseInfo>> {
    let (storage, header) = lockspace::open_members(paths, false)?;
    let Some((slot, area)) = resource::find(&storage, &header, identity)? else { return Ok(None) };
    let reads = crate::delta_lease::read_all(&storage, &header)?;
    let newest = |i: usize| crate::delta_lease::newest(reads.iter().filter_map(|r| r.slots.get(i)?.as_ref().ok()?.as_ref())).cloned();
    Ok(Some(resource::describe(&header, slot, &area, |id, generation| match newest((id as usize).wrapping_sub(1)) {
        Some(s) if s.generation > generation || (s.free && s.generation == generation) => (s.host_name, HostState::Free),
        Some(s) => (s.host_name, HostState::Unknown),
        None => (String::new(), HostState::Unknown),
    })))
}

impl std::fmt::Display for Dump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "lockspace \"{}\" at {}", self.name, self.path)?;
        writeln!(f, "  uuid {}  format v{}  created {}", self.uuid, self.format_version, crate::clock::format_unix(self.created_unix))?;
        writeln!(
            f,
            "  {}-byte sectors, {} host ids, {} resource slots of {} bytes, io_timeout {} ms (a silent host is dead after {} ms)",
            self.sector_size, self.max_hosts, self.resource_slots, self.bytes_per_resource, self.io_timeout_ms, self.host_dead_ms
        )?;
        if self.members > 1 {
            writeln!(f, "  device {} of the lockspace's {} (what follows is this device's copy; a majority decides)", self.member, self.members)?;
        }
        writeln!(f, "hosts:")?;
        if self.hosts.is_empty() {
            writeln!(f, "  (no host has ever joined)")?;
        }
        for h in &self.hosts {
            writeln!(f, "  {:>4}  {:<24} gen {:<6} {:<8} last renewal {}", h.host_id, h.host_name, h.generation, h.status, crate::clock::format_unix(h.last_renewal_unix))?;
        }
        writeln!(f, "resources:")?;
        if self.resources.is_empty() {
            writeln!(f, "  (none yet; they are created on first acquire)")?;
        }
        for r in &self.resources {
            let l = &r.lease;
            write!(f, "  slot {:<5} {}  lver {}  {}", l.slot, l.identity, l.lver, r.mode)?;
            if l.held {
                write!(f, " by host {} \"{}\" gen {} for {} since {}", l.owner_id, l.owner_name, l.owner_generation, resource::describe_holder(&l.holder), crate::clock::format_unix(l.since_unix))?;
            }
            for s in &l.shared {
                write!(f, "\n      shared by host {} \"{}\" gen {} for {}", s.host_id, s.host_name, s.generation, resource::describe_holder(&s.holder))?;
            }
            writeln!(f)?;
        }
        if !self.corrupt.is_empty() {
            writeln!(f, "CORRUPT records (not trusted):")?;
            for c in &self.corrupt {
                writeln!(f, "  {c}")?;
            }
        }
        Ok(())
    }
}

