//! Typed errors of the lease engine. Each names the failing thing (path,
//! sector, host id, resource) and, where the user can act, what to do.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::format::FormatError;
use crate::format::RecordKind;
use crate::timing::TimingError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} is {what}, not a lockspace device or file; name a block device or a file on shared storage")]
    NotStorage { path: PathBuf, what: &'static str },
    #[error("{path}: is {size} bytes, too small to be a highlander lockspace (the smallest takes {need} bytes); create one with `highlander lockspace init {path} --name NAME`")]
    TooSmall { path: PathBuf, size: u64, need: u64 },
    #[error("{path}: {op} of {count} sector(s) at sector {sector} failed: {source}")]
    Io { path: PathBuf, op: IoOp, sector: u64, count: u64, source: std::io::Error },
    #[error("{path}: {op} at sector {sector} did not complete within {deadline:?}; storage is hung or too slow for io_timeout")]
    IoTimeout { path: PathBuf, op: IoOp, sector: u64, deadline: Duration },
    #[error("{path}: {op} at sector {sector} refused: an earlier write to it has not completed yet")]
    IoOutstanding { path: PathBuf, op: IoOp, sector: u64 },
    #[error("lockspace storage {path} and its other members: {op} at sector {sector} reached {reached} of {members} members, and a majority is {majority}: {why}. Run `highlander status` to see each member's state; the lockspace works again once a majority answers")]
    NoMajority { path: PathBuf, op: IoOp, sector: u64, reached: usize, members: usize, majority: usize, why: String },
    #[error("{path}: this lockspace member could not be opened ({why})")]
    MemberMissing { path: PathBuf, why: String },
    #[error("{path}: {what}")]
    BadMemberSet { path: PathBuf, what: String },
    #[error("{path}: {op} at sector {sector}: injected fault")]
    IoInjected { path: PathBuf, op: IoOp, sector: u64 },
    #[error("{path}: is not a highlander lockspace ({source}); create one with `highlander lockspace init {path} --name NAME`")]
    NotALockspace { path: PathBuf, source: FormatError },
    #[error("{path}: sector {sector} ({kind}{detail}) is corrupt: {source}; the record is not trusted. Run `highlander dump {path}` to inspect")]
    Corrupt { path: PathBuf, sector: u64, kind: RecordKind, detail: String, source: FormatError },
    #[error("{path}: the lockspace header (sector 0) is corrupt: {source}; without it nothing in the lockspace can be read or trusted. Once no host uses this lockspace, re-create it with `highlander lockspace init {path} --name NAME --force` (its leases are lost)")]
    CorruptHeader { path: PathBuf, source: FormatError },
    #[error("{path}: the slot of host id {host_id} (sector {host_id}) is corrupt: {source}; it is not trusted or overwritten. Once no machine runs with host id {host_id}, free it with `highlander lockspace clear-host {path} --host-id {host_id}`")]
    CorruptOwnSlot { path: PathBuf, host_id: u32, source: FormatError },
    #[error("{path}: record at sector {sector} belongs to another lockspace (uuid {found}, expected {expected}); was the file copied or overwritten?")]
    Foreign { path: PathBuf, sector: u64, found: String, expected: String },
    #[error("{path}: lockspace was formatted with {header}-byte sectors but the device uses {device}-byte logical sectors")]
    WrongSectorSize { path: PathBuf, header: u32, device: u32 },
    #[error("{path}: sector size {wanted} is smaller than the device's {device}-byte logical sectors; pass --sector-size {device} or leave it out")]
    SectorSizeTooSmall { path: PathBuf, wanted: u32, device: u32 },
    #[error("{path}: sector size {0} is not supported (use 512 or 4096)", .size)]
    UnsupportedSectorSize { path: PathBuf, size: u32 },
    #[error("{path}: is {size} bytes but the lockspace needs {need} bytes; it was truncated or is the wrong device")]
    Truncated { path: PathBuf, size: u64, need: u64 },
    #[error("{path}: is {size} bytes, too small for this lockspace ({need} bytes: {max_hosts} host ids and {resource_slots} resource slots of {sector_size}-byte sectors); use a larger device, or fewer --max-hosts or --resources")]
    TooSmallForInit { path: PathBuf, size: u64, need: u64, max_hosts: u32, resource_slots: u32, sector_size: u32 },
    #[error("{path} holds a highlander lockspace \"{name}\"; refusing to format it. Pass --force to destroy it (every lease in it is lost: stop every host using it first)")]
    AlreadyFormatted { path: PathBuf, name: String },
    #[error("{path} holds {what}; refusing to format it. Pass --force to destroy it")]
    HoldsData { path: PathBuf, what: String },
    #[error("{path}: cannot check what it holds before formatting it ({source}); refusing to format it unchecked. Pass --force to format it anyway")]
    Unchecked { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    InvalidInit { path: PathBuf, what: String },
    #[error("host id {host_id} is out of range: lockspace \"{lockspace}\" has host ids 1..={max_hosts}")]
    HostIdOutOfRange { host_id: u32, max_hosts: u32, lockspace: String },
    #[error("host id {host_id} in lockspace \"{lockspace}\" is in use by host \"{holder}\" (machine id {machine_id}, generation {generation}): its slot changed while we watched it{}. Host ids must be unique: give every host a unique host_id", if *.same_machine { "; that is this machine's id, so it is another highlanderd on this machine or a clone of this machine (same /etc/machine-id)" } else { "" })]
    HostIdBusy { host_id: u32, lockspace: String, holder: String, machine_id: String, generation: u64, same_machine: bool },
    #[error("lockspace \"{lockspace}\": join of host id {host_id} was not confirmed ({why}); retry")]
    JoinUnconfirmed { host_id: u32, lockspace: String, why: &'static str },
    #[error(transparent)]
    Timing(#[from] TimingError),
    #[error("lockspace \"{lockspace}\": this host's lease was lost ({why}); its resource leases are void")]
    HostLeaseLost { lockspace: String, why: String },
    #[error("lockspace \"{lockspace}\": the saved host lease can no longer be resumed (fencing time has passed); its guests are fenced before this host joins afresh")]
    ResumeExpired { lockspace: String },
    #[error("{0}")]
    Busy(Box<crate::lease_info::Busy>),
    /// A hand-over (migration, restore) whose lease was taken in between.
    #[error("disk {identity} changed hands since this guest released it (lease version {found}, expected {expected}; last taken by {taker}): its contents may have changed, so the guest must not resume; destroy it and start it afresh")]
    VersionMismatch { identity: String, expected: u64, found: u64, taker: String },
    #[error("resource {identity}: not acquired after {attempts} contended ballots; retry")]
    Contended { identity: String, attempts: u32 },
    #[error("lockspace \"{lockspace}\": all {slots} resource slots are in use; re-initialise a larger lockspace (--resources)")]
    Full { lockspace: String, slots: u32 },
    #[error("resource {identity}: not held by this host (lease version {lver})")]
    NotHeld { identity: String, lver: u64 },
    /// Storage whose reads may miss another host's writes (GlusterFS options).
    #[error(transparent)]
    UnsafeStorage(#[from] identity::gluster::Refusal),
    #[error("lockspace \"{lockspace}\": cannot start its renewal thread: {source}; the host is short of memory or of threads")]
    RenewalThread { lockspace: String, source: std::io::Error },
}

impl Error {
    /// `Foreign` unless a record at `sector` names the lockspace `expected`.
    pub(crate) fn unless_same_lockspace(path: &std::path::Path, sector: u64, found: &[u8; 16], expected: &[u8; 16]) -> Result<()> {
        if found == expected {
            return Ok(());
        }
        Err(Error::Foreign { path: path.to_owned(), sector, found: proto::uuid::format(found), expected: proto::uuid::format(expected) })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
