//! A lockspace's storage: one device, or a set of N = 3 or 5 member
//! devices of which a majority must answer (docs/SAFETY.md, "A lockspace
//! on several devices").
//!
//! A write goes to every member at once and has succeeded when a majority
//! has it; a read asks every member and returns what each member of a
//! majority holds, for the caller to merge record by record (each record
//! kind knows which copy is the newest). A slow or hung member never holds
//! up the majority: its I/O carries on in the background, tracked by its
//! device (device.rs) as any timed-out I/O is, and while one of its I/Os is
//! past its deadline the member is not asked again, so a hung member costs
//! one stuck thread, not one per I/O. A one-device lockspace does its I/O
//! on the caller's behalf with no fan-out at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

pub use proto::protocol::MemberHealth;

use crate::clock::Mono;
use crate::device::{Device, Started};
use crate::error::{Error, IoOp, Result};
use crate::format::RECORD_LEN;

/// What a fault hook asks the storage layer to do with one I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Proceed,
    /// Fail the I/O without issuing it.
    Fail,
    /// Hold the I/O this long before issuing it (past the deadline it times out
    /// for the caller, and still lands later, as a hung device's would).
    Delay(Duration),
}

/// Test hook consulted before every I/O; `member` is the device's index in
/// the lockspace (0 for a one-device lockspace).
pub trait FaultHook: Send + Sync {
    fn on_io(&self, member: usize, op: IoOp, sector: u64, count: u64) -> Fault;
}

/// The most I/Os one member of a set may have running at once.
const MAX_IN_FLIGHT: usize = 64;

struct Member {
    path: PathBuf,
    /// Err: the member could not be opened; the set runs without it.
    device: std::result::Result<Device, String>,
}

#[derive(Clone)]
pub struct Storage {
    members: Arc<[Member]>,
    /// Sector ranges whose last write on a set failed as a whole (no
    /// majority) while some member may still land it: until a later write
    /// to them succeeds, what a read shows there may be about to change.
    /// (A write that succeeded may still be running on a lagging member,
    /// but its outcome is known: every majority read merges it in.)
    doubtful: Arc<Mutex<Vec<(u64, u64)>>>,
}

/// What one member returned.
#[derive(Clone, Debug)]
pub struct MemberRead {
    pub member: usize,
    pub data: Vec<u8>,
}

/// How a member is doing, for `status` and `dump`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemberState {
    pub member: usize,
    pub path: String,
    pub state: MemberHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hung_for_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Storage {
    pub fn single(device: Device) -> Storage {
        Storage { members: Arc::from(vec![Member { path: device.path().to_owned(), device: Ok(device) }]), doubtful: Arc::default() }
    }

    /// A set; members that could not be opened are given with why.
    pub fn set(members: Vec<(PathBuf, std::result::Result<Device, String>)>) -> Storage {
        Storage { members: members.into_iter().map(|(path, device)| Member { path, device }).collect(), doubtful: Arc::default() }
    }

    /// Opens one device as a one-member storage.
    pub fn open(path: &Path, writable: bool, wanted: Option<u32>) -> Result<Storage> {
        Device::open(path, writable, wanted).map(Storage::single)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }
    pub fn is_set(&self) -> bool {
        self.members.len() > 1
    }

    fn first(&self) -> &Device {
        self.members.iter().find_map(|m| m.device.as_ref().ok()).expect("a storage has an open member")
    }

    /// The first member's path: what messages name.
    pub fn path(&self) -> &Path {
        &self.members[0].path
    }
    pub fn paths(&self) -> Vec<PathBuf> {
        self.members.iter().map(|m| m.path.clone()).collect()
    }
    pub fn sector_size(&self) -> u32 {
        self.first().sector_size()
    }
    /// The smallest open member's size.
    pub fn size_bytes(&self) -> u64 {
        self.members.iter().filter_map(|m| m.device.as_ref().ok()).map(Device::size_bytes).min().unwrap_or(0)
    }
    pub fn deadline(&self) -> Duration {
        self.first().deadline()
    }

    /// (reads, writes) issued, summed over the members.
    pub fn io_counts(&self) -> (u64, u64) {
        self.members.iter().filter_map(|m| m.device.as_ref().ok()).map(Device::io_counts).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Per (reads, writes) of each member, in member order (None: missing).
    pub fn member_io_counts(&self) -> Vec<Option<(u64, u64)>> {
        self.members.iter().map(|m| m.device.as_ref().ok().map(Device::io_counts)).collect()
    }

    /// The same storage with another deadline and fault hook, writing as
    /// `writer` (a host id: one host's writes to a sector stay in order).
    pub fn configured(&self, deadline: Duration, fault: Option<Arc<dyn FaultHook>>, writer: u32) -> Storage {
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| Member { path: m.path.clone(), device: m.device.as_ref().map(|d| d.configured(i, deadline, fault.clone(), writer)).map_err(Clone::clone) })
            .collect();
        Storage { members, doubtful: Arc::default() }
    }

    pub fn member_states(&self) -> Vec<MemberState> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let path = m.path.display().to_string();
                match &m.device {
                    Err(e) => MemberState { member: i, path, state: MemberHealth::Missing, hung_for_ms: None, error: Some(e.clone()) },
                    Ok(d) => match (d.stuck_since(), d.failing()) {
                        (Some(since), _) => MemberState { member: i, path, state: MemberHealth::Hung, hung_for_ms: Some(Mono::now().since(since).as_millis() as u64), error: None },
                        (None, Some(error)) => MemberState { member: i, path, state: MemberHealth::Failing, hung_for_ms: None, error: Some(error) },
                        (None, None) => MemberState { member: i, path, state: MemberHealth::Ok, hung_for_ms: None, error: None },
                    },
                }
            })
            .collect()
    }

    /// True while a write of ours to `sector` on `member` may still land
    /// there and change what a read shows: on one device, a write that
    /// outlived its deadline; on a set, one whose write as a whole failed.
    pub fn write_in_flight(&self, member: usize, sector: u64) -> bool {
        let running = self.members.get(member).and_then(|m| m.device.as_ref().ok()).is_some_and(|d| d.write_in_flight(sector));
        running && (!self.is_set() || self.doubtful.lock().iter().any(|&(a, b)| a <= sector && sector < b))
    }

    /// Records how a set's write to `range` ended: a success settles it, a
    /// failure leaves it doubtful (`doubtful`).
    fn settle(&self, range: (u64, u64), succeeded: bool) {
        let mut doubtful = self.doubtful.lock();
        doubtful.retain(|&r| r != range);
        if !succeeded {
            doubtful.push(range);
        }
    }

    /// Writes whole sectors on a majority.
    pub fn write(&self, sector: u64, data: &[u8]) -> Result<()> {
        self.write_members(sector, data).map(drop)
    }

    /// Writes whole sectors; returns the members that had the write when a
    /// majority had it.
    pub fn write_members(&self, sector: u64, data: &[u8]) -> Result<Vec<usize>> {
        if let [only] = &*self.members {
            return only.open()?.write(sector, data).map(|()| vec![0]);
        }
        let steps = [Step::Write(sector, data)];
        let range = (sector, sector + (data.len() / self.sector_size() as usize) as u64);
        let result = self.fan_out(IoOp::Write, sector, &[], &steps);
        self.settle(range, result.is_ok());
        Ok(result?.into_iter().map(|(i, _)| i).collect())
    }

    /// Writes one record into one sector (the rest of the sector is zero).
    pub fn write_record(&self, sector: u64, record: &[u8; RECORD_LEN]) -> Result<()> {
        self.write(sector, &self.sector_of(record))
    }

    pub fn write_record_members(&self, sector: u64, record: &[u8; RECORD_LEN]) -> Result<Vec<usize>> {
        self.write_members(sector, &self.sector_of(record))
    }

    fn sector_of(&self, record: &[u8; RECORD_LEN]) -> Vec<u8> {
        let mut data = vec![0u8; self.sector_size() as usize];
        data[..RECORD_LEN].copy_from_slice(record);
        data
    }

    /// Reads `count` sectors from a majority (and from every member in
    /// `required`, which must all answer).
    pub fn read_from(&self, sector: u64, count: u64, required: &[usize]) -> Result<Vec<MemberRead>> {
        if let [only] = &*self.members {
            return only.open()?.read(sector, count).map(|data| vec![MemberRead { member: 0, data }]);
        }
        let done = self.fan_out(IoOp::Read, sector, required, &[Step::Read(sector, count)])?;
        Ok(done.into_iter().map(|(member, data)| MemberRead { member, data }).collect())
    }

    pub fn read(&self, sector: u64, count: u64) -> Result<Vec<MemberRead>> {
        self.read_from(sector, count, &[])
    }

    /// One Disk Paxos phase: on each member, write our record and then read
    /// `count` sectors from `read_at`; done when a majority of members did
    /// both (the write must precede the read *on the same member*: that is
    /// what makes two phases that both complete see each other).
    pub fn write_then_read(&self, sector: u64, record: &[u8; RECORD_LEN], read_at: u64, count: u64) -> Result<Vec<MemberRead>> {
        let data = self.sector_of(record);
        if let [only] = &*self.members {
            let d = only.open()?;
            d.write(sector, &data)?;
            return d.read(read_at, count).map(|data| vec![MemberRead { member: 0, data }]);
        }
        let result = self.fan_out(IoOp::Write, sector, &[], &[Step::Write(sector, &data), Step::Read(read_at, count)]);
        // A phase that failed may still have landed its write on a majority:
        // its outcome is as unknown as a failed write's.
        self.settle((sector, sector + 1), result.is_ok());
        let done = result?;
        Ok(done.into_iter().map(|(member, data)| MemberRead { member, data }).collect())
    }

    /// Runs `steps` in order on every usable member, all members at once;
    /// returns each member's last read (empty for a write) as soon as a
    /// majority (including all of `required`) completed every step. The
    /// others carry on in the background, unwaited for.
    fn fan_out(&self, op: IoOp, sector: u64, required: &[usize], steps: &[Step]) -> Result<Vec<(usize, Vec<u8>)>> {
        let mut failed: Vec<(usize, String)> = Vec::new();
        // Per member still running: (member, its device, next step, the I/O).
        let mut running: Vec<(usize, &Device, usize, Started)> = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let device = match &m.device {
                Err(e) => {
                    failed.push((i, format!("not opened: {e}")));
                    continue;
                }
                Ok(d) => d,
            };
            if let Some(since) = device.stuck_since() {
                failed.push((i, format!("hung: an I/O has been outstanding for {:.1} s", Mono::now().since(since).as_secs_f64())));
                continue;
            }
            // Before its first I/O passes the deadline, a member that has
            // just hung would take a thread per I/O (a boot storm issues
            // thousands): with many I/Os running and the oldest long past
            // what a working device takes, it is not asked either.
            let (in_flight, oldest) = device.in_flight();
            if in_flight >= MAX_IN_FLIGHT && oldest >= device.deadline() / 8 {
                failed.push((i, format!("{in_flight} I/Os outstanding, the oldest for {:.1} s: not answering", oldest.as_secs_f64())));
                continue;
            }
            match steps[0].start(device) {
                Ok(io) => running.push((i, device, 1, io)),
                Err(e) => failed.push((i, e.to_string())),
            }
        }
        let majority = self.majority();
        let mut done: Vec<(usize, Vec<u8>)> = Vec::new();
        let complete = |done: &Vec<(usize, Vec<u8>)>| done.len() >= majority && required.iter().all(|r| done.iter().any(|(i, _)| i == r));
        let hopeless = |failed: &Vec<(usize, String)>| self.members.len() - failed.len() < majority || failed.iter().any(|(i, _)| required.contains(i));
        while !complete(&done) && !hopeless(&failed) && !running.is_empty() {
            let mut select = crossbeam_channel::Select::new();
            for (_, _, _, io) in &running {
                select.recv(io.receiver());
            }
            let due = running.iter().map(|(_, _, _, io)| io.due()).min().expect("running is not empty");
            let (k, got) = match select.select_timeout(due.remaining()) {
                Ok(ready) => {
                    let k = ready.index();
                    let got = ready.recv(running[k].3.receiver()).ok();
                    (k, got)
                }
                // The earliest-due I/O has timed out.
                Err(_) => (running.iter().position(|(_, _, _, io)| io.due() == due).expect("the earliest is running"), None),
            };
            let (member, device, next, io) = running.swap_remove(k);
            match io.complete(got) {
                Err(e) => failed.push((member, e.to_string())),
                Ok(data) if next == steps.len() => done.push((member, data)),
                Ok(_) => match steps[next].start(device) {
                    Ok(io) => running.push((member, device, next + 1, io)),
                    Err(e) => failed.push((member, e.to_string())),
                },
            }
        }
        if complete(&done) {
            return Ok(done);
        }
        failed.sort();
        Err(Error::NoMajority {
            path: self.path().to_owned(),
            op,
            sector,
            reached: done.len(),
            members: self.members.len(),
            majority,
            why: failed.iter().map(|(i, e)| format!("member {} ({}): {e}", i + 1, self.members[*i].path.display())).collect::<Vec<_>>().join("; "),
        })
    }
}

/// One I/O of a member's part in `fan_out`.
enum Step<'a> {
    Read(u64, u64),
    Write(u64, &'a [u8]),
}

impl Step<'_> {
    fn start(&self, device: &Device) -> Result<Started> {
        match *self {
            Step::Read(sector, count) => device.start_read(sector, count),
            Step::Write(sector, data) => device.start_write(sector, data),
        }
    }
}

impl Member {
    fn open(&self) -> Result<&Device> {
        self.device.as_ref().map_err(|e| Error::MemberMissing { path: self.path.clone(), why: e.clone() })
    }
}

/// What a path that is neither a regular file nor a block device is, for
/// messages; None for the two that can hold a lockspace.
pub use crate::device::unusable_kind;
