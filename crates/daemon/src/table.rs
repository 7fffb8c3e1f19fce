//! The local lease table: registered guests, the disks this host holds
//! leases on and for which guests, releases still to land. Plain data,
//! saved by `persist`; the operations on it are in `leases`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::declared::Declaration;
use crate::guest::Guest;
use crate::DiskKey;
use engine::resource::{Lease, Mode};
use proto::lock_state::{self, Entry};
use proto::protocol::LeaseView;

/// A disk this host holds a lease on, for one or more local guests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub lease: Lease,
    /// The path the first holder named (display only).
    pub path: String,
    pub holders: BTreeSet<u32>,
    pub since_unix: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub guests: BTreeMap<u32, Guest>,
    pub disks: BTreeMap<DiskKey, Disk>,
    /// Leases no guest holds any more whose release on storage failed: they
    /// stay held on storage until a retry lands (`retry`). A key is never
    /// both here and in `disks`.
    pub pending: BTreeMap<DiskKey, Lease>,
    /// The state of each guest's last release of all its leases, until its
    /// next acquire or exit (see `release`). Not persisted.
    pub released_state: BTreeMap<u32, String>,
    /// Network disks the qemu hook declared, by domain UUID (`declared`).
    pub declared: BTreeMap<[u8; 16], Declaration>,
}

impl Table {
    /// Disk leases held in lockspace `name`.
    pub fn held_in(&self, name: &str) -> usize {
        self.disks.keys().filter(|k| k.lockspace == name).count()
    }

    pub fn held_by(&self, pid: u32) -> impl Iterator<Item = (&DiskKey, &Disk)> {
        self.disks.iter().filter(move |(_, d)| d.holders.contains(&pid))
    }

    pub fn views_of(&self, pid: u32) -> Vec<LeaseView> {
        self.held_by(pid).map(|(_, d)| view(d)).collect()
    }

    /// The state string of `disks`, in a canonical order.
    pub fn state_of<'a>(disks: impl Iterator<Item = &'a Disk>) -> Option<String> {
        let mut entries: Vec<Entry> = disks
            .map(|d| Entry { lockspace: d.lease.lockspace.clone(), identity: d.lease.identity.clone(), lver: (d.lease.mode == Mode::Exclusive).then_some(d.lease.lver) })
            .collect();
        entries.sort_by(|a, b| (&a.lockspace, &a.identity).cmp(&(&b.lockspace, &b.identity)));
        lock_state::encode(&entries)
    }
}

pub fn view(d: &Disk) -> LeaseView {
    LeaseView { identity: d.lease.identity.clone(), path: d.path.clone(), lockspace: d.lease.lockspace.clone(), mode: d.lease.mode, lver: d.lease.lver, since_unix: d.since_unix }
}
