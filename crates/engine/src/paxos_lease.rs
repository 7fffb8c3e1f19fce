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

use crate::error::{Error, Result};
use crate::format::{Dblock, Layout, Leader, LeaseValue, RecordKind, RECORD_LEN};
use crate::storage::Storage;

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
    fn corrupt(&self, sector: u64, kind: RecordKind, source: crate::error::FormatError) -> Error {
        Error::Corrupt { path: self.storage.path().to_owned(), sector, kind, detail: format!(" of resource slot {}", self.slot), source }
    }

    /// Reads the leader and all dblocks in one I/O.
    pub fn read_area(&self) -> Result<ResourceArea> {
        let base = self.layout.resource_base(self.slot);
        let ss = self.storage.sector_size() as usize;
        let own_write_in_flight = self.storage.write_in_flight(base) || self.storage.write_in_flight(self.layout.dblock(self.slot, self.host_id));
        let buf = self.storage.read(base, self.layout.sectors_per_resource())?;
        let mut sectors = buf.chunks(ss);
        let leader = Leader::decode(&sectors.next().unwrap()[..RECORD_LEN]).map_err(|e| self.corrupt(base, RecordKind::Leader, e))?;
        let dblocks = sectors
            .enumerate()
            .map(|(i, s)| Dblock::decode(&s[..RECORD_LEN]).map_err(|e| self.corrupt(base + 1 + i as u64, RecordKind::Dblock, e)))
            .collect::<Result<Vec<_>>>()?;
        if let Some(l) = &leader {
            Error::unless_same_lockspace(self.storage.path(), base, &l.lockspace_uuid, &self.lockspace_uuid)?;
        }
        for (i, d) in dblocks.iter().enumerate().filter(|(_, d)| d.lver != 0) {
            Error::unless_same_lockspace(self.storage.path(), base + 1 + i as u64, &d.lockspace_uuid, &self.lockspace_uuid)?;
        }
        Ok(ResourceArea { leader, dblocks, own_write_in_flight })
    }

    /// Reads only the dblocks.
    fn read_dblocks(&self) -> Result<Vec<Dblock>> {
        let first = self.layout.dblock(self.slot, 1);
        let ss = self.storage.sector_size() as usize;
        let buf = self.storage.read(first, self.layout.max_hosts)?;
        buf.chunks(ss)
            .enumerate()
            .map(|(i, s)| Dblock::decode(&s[..RECORD_LEN]).map_err(|e| self.corrupt(first + i as u64, RecordKind::Dblock, e)))
            .collect()
    }

    pub fn write_dblock(&self, dblock: &Dblock) -> Result<()> {
        self.storage.write_record(self.layout.dblock(self.slot, self.host_id), &dblock.encode())
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
        self.write_dblock(&dblock)?;
        area.dblocks = self.read_dblocks()?;
        if overtaken(&area.dblocks, self.host_id, lver, mbal) {
            return Ok(BallotOutcome::Aborted);
        }
        let chosen = adopted(&area.dblocks, lver).unwrap_or(value).clone();

        // Phase 2: accept the value under mbal.
        dblock.bal = mbal;
        dblock.inp = chosen.clone();
        self.write_dblock(&dblock)?;
        area.dblocks = self.read_dblocks()?;
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
