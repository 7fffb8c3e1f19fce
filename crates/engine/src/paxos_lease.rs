//! Disk Paxos (Gafni & Lamport) on one resource: a ballot that makes all
//! hosts agree on the owner of lease version `lver + 1`.
//!
//! Each host owns one dblock per resource and only ever writes its own; it
//! reads everyone's. A ballot is two phases of "write my dblock, read all
//! dblocks"; a phase aborts when it sees a higher ballot number for the same
//! lease version, or any dblock already at a later version. If phase 2
//! completes, the value is chosen: every later ballot for the same version
//! will choose it too, whatever the timing. docs/SAFETY.md ("Resource
//! leases") has the argument.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::{Dblock, Layout, Leader, LeaseValue, RecordKind, RECORD_LEN};
use crate::storage::{MemberRead, Storage};

/// One read of a whole resource area: its leader and every host's dblock.
#[derive(Clone, Debug)]
pub struct ResourceArea {
    pub leader: Option<Leader>,
    /// Index 0 is host id 1.
    pub dblocks: Vec<Dblock>,
    /// A write of ours to the leader or to our dblock was still in flight
    /// when the read started: it may land after the read, so what the read
    /// shows of our own lease may be about to change.
    pub own_write_in_flight: bool,
}

/// Where a ballot runs, and as whom.
pub struct BallotSite<'a> {
    pub storage: &'a Storage,
    pub layout: Layout,
    pub slot: u32,
    pub host_id: u32,
    pub lockspace_uuid: [u8; 16],
}

#[derive(Debug)]
pub enum BallotOutcome {
    /// Phase 2 completed: this value is chosen for the lease version.
    Chosen(LeaseValue),
    /// Another ballot overtook ours (higher number, or a later version exists).
    Aborted,
}

impl BallotSite<'_> {
    /// Reads the leader and all dblocks in one I/O per member, and merges
    /// the members' copies. Members where a write of ours to the leader or
    /// our dblock is still in flight are left out while the rest are a
    /// majority; when they are not, `own_write_in_flight` says so.
    pub fn read_area(&self) -> Result<ResourceArea> {
        let base = self.layout.resource_base(self.slot);
        let own = self.layout.dblock(self.slot, self.host_id);
        let in_flight: Vec<bool> = (0..self.storage.len()).map(|m| self.storage.write_in_flight(m, base) || self.storage.write_in_flight(m, own)).collect();
        let reads = self.storage.read(base, self.layout.sectors_per_resource())?;
        let areas = self.decode_each(&reads, base, true)?;
        let trusted: Vec<&(usize, Option<Leader>, Vec<Dblock>)> = areas.iter().filter(|(m, ..)| !in_flight[*m]).collect();
        let own_write_in_flight = trusted.len() < self.storage.majority();
        let used: Vec<&(usize, Option<Leader>, Vec<Dblock>)> = if own_write_in_flight { areas.iter().collect() } else { trusted };
        let leader = newest_leader(used.iter().filter_map(|(_, l, _)| l.as_ref())).cloned();
        let dblocks = merge_dblocks(used.iter().map(|(_, _, d)| d.as_slice()));
        Ok(ResourceArea { leader, dblocks, own_write_in_flight })
    }

    /// Decodes each member's read (the leader first when `with_leader`).
    /// A copy that does not decode makes its member count as not read while
    /// the other members are a majority; otherwise it is the error.
    #[allow(clippy::type_complexity)]
    fn decode_each(&self, reads: &[MemberRead], first: u64, with_leader: bool) -> Result<Vec<(usize, Option<Leader>, Vec<Dblock>)>> {
        let ss = self.storage.sector_size() as usize;
        let mut good = Vec::new();
        let mut first_error = None;
        for read in reads {
            let path = self.member_path(read.member);
            let decoded = (|| {
                let mut sectors = read.data.chunks(ss);
                let leader = if with_leader {
                    let l = Leader::decode(&sectors.next().unwrap()[..RECORD_LEN]).map_err(|e| self.corrupt(read.member, first, RecordKind::Leader, e))?;
                    if let Some(l) = &l {
                        Error::unless_same_lockspace(&path, first, &l.lockspace_uuid, &self.lockspace_uuid)?;
                    }
                    l
                } else {
                    None
                };
                let dblock_base = if with_leader { first + 1 } else { first };
                let dblocks = sectors
                    .enumerate()
                    .map(|(i, s)| Dblock::decode(&s[..RECORD_LEN]).map_err(|e| self.corrupt(read.member, dblock_base + i as u64, RecordKind::Dblock, e)))
                    .collect::<Result<Vec<_>>>()?;
                for (i, d) in dblocks.iter().enumerate().filter(|(_, d)| d.lver != 0) {
                    Error::unless_same_lockspace(&path, dblock_base + i as u64, &d.lockspace_uuid, &self.lockspace_uuid)?;
                }
                Ok((read.member, leader, dblocks))
            })();
            match decoded {
                Ok(area) => good.push(area),
                Err(e) => {
                    log::warn!("{e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if good.len() < self.storage.majority() => Err(e),
            _ => Ok(good),
        }
    }

    fn member_path(&self, member: usize) -> std::path::PathBuf {
        self.storage.paths().get(member).cloned().unwrap_or_else(|| self.storage.path().to_owned())
    }

    fn corrupt(&self, member: usize, sector: u64, kind: RecordKind, source: crate::error::FormatError) -> Error {
        Error::Corrupt { path: self.member_path(member), sector, kind, detail: format!(" of resource slot {}", self.slot), source }
    }

    /// One phase: writes our dblock and then reads every dblock, on each
    /// member; merged once a majority of members did both.
    fn phase(&self, dblock: &Dblock) -> Result<Vec<Dblock>> {
        let first = self.layout.dblock(self.slot, 1);
        let reads = self.storage.write_then_read(self.layout.dblock(self.slot, self.host_id), &self.sequenced(dblock).encode(), first, self.layout.max_hosts)?;
        let areas = self.decode_each(&reads, first, false)?;
        Ok(merge_dblocks(areas.iter().map(|(_, _, d)| d.as_slice())))
    }

    /// `dblock` with the next write sequence number (format.rs, `Dblock::seq`).
    fn sequenced(&self, dblock: &Dblock) -> Dblock {
        Dblock { seq: next_seq(dblock.seq), ..dblock.clone() }
    }

    pub fn write_dblock(&self, dblock: &Dblock) -> Result<()> {
        self.storage.write_record(self.layout.dblock(self.slot, self.host_id), &self.sequenced(dblock).encode())
    }

    pub fn write_leader(&self, leader: &Leader) -> Result<()> {
        self.storage.write_record(self.layout.resource_base(self.slot), &leader.encode())
    }

    /// Runs one ballot for `lver`, proposing `value` unless an earlier ballot
    /// for `lver` may already have chosen another. `area` is a recent read of
    /// the resource; on return `area.dblocks` holds the last phase's read
    /// (so callers can see shared-mode registrations).
    pub fn run(&self, lver: u64, value: &LeaseValue, area: &mut ResourceArea) -> Result<BallotOutcome> {
        let mine = &area.dblocks[self.host_id as usize - 1];
        let mbal = ballot_number(&area.dblocks, lver, self.host_id, self.layout.max_hosts);
        let mut dblock = Dblock { lockspace_uuid: self.lockspace_uuid, ..announce(mine, self.host_id, lver, mbal) };

        // Phase 1: announce mbal, learn any value a previous ballot may have chosen.
        area.dblocks = self.phase(&dblock)?;
        if overtaken(&area.dblocks, self.host_id, lver, mbal) {
            return Ok(BallotOutcome::Aborted);
        }
        let chosen = adopted(&area.dblocks, lver).unwrap_or(value).clone();

        // Phase 2: accept the value under mbal.
        dblock.bal = mbal;
        dblock.inp = chosen.clone();
        area.dblocks = self.phase(&dblock)?;
        if overtaken(&area.dblocks, self.host_id, lver, mbal) {
            return Ok(BallotOutcome::Aborted);
        }
        Ok(BallotOutcome::Chosen(chosen))
    }
}

// The ballot's decisions, as pure functions of what it read (model/ checks
// them exhaustively).

/// A ballot number for `lver` above every one seen for it, ≡ host_id (mod
/// max_hosts), so no two hosts ever use the same number.
pub fn ballot_number(dblocks: &[Dblock], lver: u64, host_id: u32, max_hosts: u64) -> u64 {
    let highest = dblocks.iter().filter(|d| d.lver == lver).map(|d| d.mbal).max().unwrap_or(0);
    (highest / max_hosts + 1) * max_hosts + host_id as u64
}

/// Phase 1's dblock: `mbal` announced for `lver`, keeping what we accepted
/// for that same version (a dblock never forgets an accepted value), and
/// our RELEASED mark for it: a ballot re-run for a version we held and
/// released (a rolled-back leader) must not undo the release.
pub fn announce(mine: &Dblock, host_id: u32, lver: u64, mbal: u64) -> Dblock {
    let same_instance = mine.lver == lver;
    Dblock {
        host_id,
        released: same_instance && mine.released,
        lver,
        mbal,
        bal: if same_instance { mine.bal } else { 0 },
        inp: if same_instance { mine.inp.clone() } else { LeaseValue::default() },
        ..mine.clone()
    }
}

/// The value an earlier ballot for `lver` may have chosen: the one accepted
/// under the highest `bal`. None: we may propose our own.
pub fn adopted(dblocks: &[Dblock], lver: u64) -> Option<&LeaseValue> {
    dblocks.iter().filter(|d| d.lver == lver && d.bal > 0 && !d.inp.is_empty()).max_by_key(|d| d.bal).map(|d| &d.inp)
}

/// Another host's dblock shows a higher ballot for `lver`, or a later version.
pub fn overtaken(dblocks: &[Dblock], host_id: u32, lver: u64, mbal: u64) -> bool {
    dblocks.iter().filter(|d| d.host_id != host_id).any(|d| d.lver > lver || (d.lver == lver && d.mbal > mbal))
}

/// Of the members' copies of one leader, the latest: a higher version, and
/// at one version the end of a hold (a freed leader is never held again at
/// its version) and then a shared acquire's short hold.
pub fn newest_leader<'a>(copies: impl Iterator<Item = &'a Leader>) -> Option<&'a Leader> {
    copies.max_by_key(|l| (l.lver, !l.held, l.short_hold))
}

/// Per host, the newest of the members' copies of its dblock (highest
/// `seq`; each host writes only its own dblock). Index 0 is host id 1.
pub fn merge_dblocks<'a>(members: impl Iterator<Item = &'a [Dblock]>) -> Vec<Dblock> {
    let mut merged: Vec<Dblock> = Vec::new();
    for dblocks in members {
        if merged.is_empty() {
            merged = dblocks.to_vec();
            continue;
        }
        for (m, d) in merged.iter_mut().zip(dblocks) {
            if d.seq > m.seq {
                *m = d.clone();
            }
        }
    }
    merged
}

/// The sequence number of a dblock's next write: above `after` (the newest
/// copy read) and above every one this process has used, and starting from
/// the wall clock in microseconds, so a restarted process does not reuse
/// the numbers of writes of its predecessor that landed only on members it
/// has not read.
pub fn next_seq(after: u64) -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let floor = after.max(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = last.max(floor) + 1;
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(now) => last = now,
        }
    }
}
