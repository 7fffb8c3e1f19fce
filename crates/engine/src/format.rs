//! On-disk format v1: byte layout of every record (docs/FORMAT.md is the
//! reference; keep the two in step).
//!
//! Every record fills the first `RECORD_LEN` bytes of its own sector and
//! starts with the same 12 bytes: magic (u32), format version (u32) and a
//! CRC-32C (u32) of the whole 512-byte record computed with the checksum
//! field zeroed. Integers are little-endian. A sector of all zero bytes is
//! "never written" and decodes as such; anything else must verify fully or
//! it is reported as corrupt and never trusted.

use crate::crc32c;

pub const RECORD_LEN: usize = 512;
pub const FORMAT_MAJOR: u32 = 1;
/// 1.1 added the member fields of the header and the dblock's write
/// sequence; 1.0 records read as a one-device lockspace's.
pub const FORMAT_MINOR: u32 = 1;
pub const FORMAT_VERSION: u32 = (FORMAT_MAJOR << 16) | FORMAT_MINOR;

pub const MAGIC_HEADER: u32 = 0x484C_5331; // "HLS1"
pub const MAGIC_HOST: u32 = 0x484C_4831; // "HLH1"
pub const MAGIC_LEADER: u32 = 0x484C_4C31; // "HLL1"
pub const MAGIC_DBLOCK: u32 = 0x484C_4431; // "HLD1"
/// Written into the header while `lockspace init` is in progress, so a torn
/// init never looks like a lockspace.
pub const MAGIC_HEADER_INCOMPLETE: u32 = 0x484C_5330; // "HLS0"

pub const NAME_LEN: usize = 64;
pub const IDENTITY_LEN: usize = identity::IDENTITY_LEN;
pub const KEY_LEN: usize = 32;

pub const MAX_HOSTS_LIMIT: u32 = 2000;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_CRC: usize = 8;
const OFF_FLAGS: usize = 12;

/// What kind of record a sector holds; used in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Header,
    HostSlot,
    Leader,
    Dblock,
}

impl RecordKind {
    fn magic(self) -> u32 {
        match self {
            RecordKind::Header => MAGIC_HEADER,
            RecordKind::HostSlot => MAGIC_HOST,
            RecordKind::Leader => MAGIC_LEADER,
            RecordKind::Dblock => MAGIC_DBLOCK,
        }
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordKind::Header => "lockspace header",
            RecordKind::HostSlot => "host lease slot",
            RecordKind::Leader => "resource leader",
            RecordKind::Dblock => "resource ballot block",
        })
    }
}

/// A 512-byte record under construction or being decoded.
struct Rec([u8; RECORD_LEN]);

impl Rec {
    fn new(kind: RecordKind, flags: u32) -> Rec {
        let mut r = Rec([0; RECORD_LEN]);
        r.put_u32(OFF_MAGIC, kind.magic());
        r.put_u32(OFF_VERSION, FORMAT_VERSION);
        r.put_u32(OFF_FLAGS, flags);
        r
    }
    fn put_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn put_bytes(&mut self, off: usize, v: &[u8]) {
        self.0[off..off + v.len()].copy_from_slice(v);
    }
    /// A string in a fixed field, NUL-padded; truncated on a char boundary.
    fn put_str(&mut self, off: usize, len: usize, s: &str) {
        let s = truncate_utf8(s, len);
        self.0[off..off + s.len()].copy_from_slice(s.as_bytes());
    }
    fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.0[off..off + 2].try_into().unwrap())
    }
    fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.0[off..off + 4].try_into().unwrap())
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.0[off..off + 8].try_into().unwrap())
    }
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        self.0[off..off + N].try_into().unwrap()
    }
    fn str(&self, off: usize, len: usize) -> String {
        let field = &self.0[off..off + len];
        let end = field.iter().position(|&b| b == 0).unwrap_or(len);
        String::from_utf8_lossy(&field[..end]).into_owned()
    }
    fn seal(mut self) -> [u8; RECORD_LEN] {
        self.put_u32(OFF_CRC, 0);
        let crc = crc32c::checksum(&self.0);
        self.put_u32(OFF_CRC, crc);
        self.0
    }
    /// Verifies magic, version and checksum. `Ok(None)`: never written.
    fn open(kind: RecordKind, sector: &[u8]) -> Result<Option<Rec>, FormatError> {
        let mut r = Rec(sector[..RECORD_LEN].try_into().unwrap());
        if r.0.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let magic = r.u32(OFF_MAGIC);
        if magic != kind.magic() {
            return Err(FormatError::BadMagic { kind, found: magic });
        }
        let version = r.u32(OFF_VERSION);
        if version >> 16 != FORMAT_MAJOR {
            return Err(FormatError::UnsupportedVersion { kind, found: version });
        }
        let stored = r.u32(OFF_CRC);
        r.put_u32(OFF_CRC, 0);
        let computed = crc32c::checksum(&r.0);
        if stored != computed {
            return Err(FormatError::BadChecksum { kind, stored, computed });
        }
        r.put_u32(OFF_CRC, stored);
        Ok(Some(r))
    }
    fn flags(&self) -> u32 {
        self.u32(OFF_FLAGS)
    }
}

pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------- header ---

/// Sector 0: what this lockspace is and how it is laid out.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    pub name: String,
    pub uuid: [u8; 16],
    pub sector_size: u32,
    pub max_hosts: u32,
    pub resource_slots: u32,
    pub io_timeout_ms: u32,
    pub created_unix: u64,
    /// This device's index in the lockspace's set of devices (0-based).
    pub member_index: u32,
    /// How many devices the lockspace has: 1, 3 or 5 (0 on disk in 1.0: 1).
    pub members: u32,
}

pub const MEMBER_COUNTS: [u32; 3] = [1, 3, 5];

impl Header {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        self.encode_with_magic(MAGIC_HEADER)
    }

    /// The header as written first during init, with a magic no reader accepts.
    pub fn encode_incomplete(&self) -> [u8; RECORD_LEN] {
        self.encode_with_magic(MAGIC_HEADER_INCOMPLETE)
    }

    fn encode_with_magic(&self, magic: u32) -> [u8; RECORD_LEN] {
        let mut r = Rec::new(RecordKind::Header, 0);
        r.put_u32(OFF_MAGIC, magic);
        r.put_u32(16, self.sector_size);
        r.put_u32(20, self.max_hosts);
        r.put_u32(24, self.resource_slots);
        r.put_u32(28, self.io_timeout_ms);
        r.put_bytes(32, &self.uuid);
        r.put_u64(48, self.created_unix);
        r.put_str(56, NAME_LEN, &self.name);
        r.put_u32(120, self.member_index);
        r.put_u32(124, self.members);
        r.seal()
    }

    pub fn decode(sector: &[u8]) -> Result<Header, FormatError> {
        if sector[..4] == MAGIC_HEADER_INCOMPLETE.to_le_bytes() {
            return Err(FormatError::IncompleteInit);
        }
        let r = Rec::open(RecordKind::Header, sector)?.ok_or(FormatError::NotFormatted)?;
        let h = Header {
            sector_size: r.u32(16),
            max_hosts: r.u32(20),
            resource_slots: r.u32(24),
            io_timeout_ms: r.u32(28),
            uuid: r.bytes(32),
            created_unix: r.u64(48),
            name: r.str(56, NAME_LEN),
            member_index: r.u32(120),
            members: r.u32(124).max(1),
        };
        h.validate()?;
        Ok(h)
    }

    pub fn validate(&self) -> Result<(), FormatError> {
        if self.sector_size != 512 && self.sector_size != 4096 {
            return Err(FormatError::BadField { kind: RecordKind::Header, field: "sector_size", value: self.sector_size as u64 });
        }
        if self.max_hosts == 0 || self.max_hosts > MAX_HOSTS_LIMIT {
            return Err(FormatError::BadField { kind: RecordKind::Header, field: "max_hosts", value: self.max_hosts as u64 });
        }
        if self.resource_slots == 0 {
            return Err(FormatError::BadField { kind: RecordKind::Header, field: "resource_slots", value: 0 });
        }
        if !MEMBER_COUNTS.contains(&self.members) {
            return Err(FormatError::BadField { kind: RecordKind::Header, field: "members", value: self.members as u64 });
        }
        if self.member_index >= self.members {
            return Err(FormatError::BadField { kind: RecordKind::Header, field: "member_index", value: self.member_index as u64 });
        }
        Ok(())
    }

    /// Both headers describe one lockspace (members of one set, or the same
    /// device twice): everything but the member index agrees.
    pub fn same_lockspace(&self, other: &Header) -> bool {
        Header { member_index: other.member_index, ..self.clone() } == *other
    }

    pub fn layout(&self) -> Layout {
        Layout { max_hosts: self.max_hosts as u64, resource_slots: self.resource_slots as u64 }
    }
}

/// Where each record lives, in sectors.
///
/// ```text
/// sector 0                      header
/// sector h (1..=max_hosts)      host lease slot of host id h
/// resource r (0..slots):        base(r) = 1 + max_hosts + r * (1 + max_hosts)
///   base(r)                     leader
///   base(r) + h                 ballot block (dblock + mode) of host id h
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub max_hosts: u64,
    pub resource_slots: u64,
}

impl Layout {
    pub fn host_slot(&self, host_id: u32) -> u64 {
        host_id as u64
    }
    pub fn sectors_per_resource(&self) -> u64 {
        1 + self.max_hosts
    }
    pub fn resource_base(&self, slot: u32) -> u64 {
        1 + self.max_hosts + slot as u64 * self.sectors_per_resource()
    }
    pub fn dblock(&self, slot: u32, host_id: u32) -> u64 {
        self.resource_base(slot) + host_id as u64
    }
    pub fn total_sectors(&self) -> u64 {
        self.resource_base(self.resource_slots as u32)
    }
}

// ------------------------------------------------------------ host slot ---

pub const HOST_FLAG_FREE: u32 = 1;

/// A delta lease: one host id's sector, rewritten at every renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSlot {
    /// Set by a clean leave: the next joiner need not wait.
    pub free: bool,
    pub host_id: u32,
    pub io_timeout_ms: u32,
    pub generation: u64,
    /// Changes at every write; peers only ever compare it for change.
    pub renewal: u64,
    pub renewed_unix: u64,
    pub lockspace_uuid: [u8; 16],
    pub machine_id: [u8; 16],
    /// Random per join: tells two joins by the same host apart.
    pub nonce: [u8; 16],
    pub host_name: String,
}

impl HostSlot {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut r = Rec::new(RecordKind::HostSlot, if self.free { HOST_FLAG_FREE } else { 0 });
        r.put_u32(16, self.host_id);
        r.put_u32(20, self.io_timeout_ms);
        r.put_u64(24, self.generation);
        r.put_u64(32, self.renewal);
        r.put_u64(40, self.renewed_unix);
        r.put_bytes(48, &self.lockspace_uuid);
        r.put_bytes(64, &self.machine_id);
        r.put_bytes(80, &self.nonce);
        r.put_str(96, NAME_LEN, &self.host_name);
        r.seal()
    }

    /// `Ok(None)`: the slot was never written.
    pub fn decode(sector: &[u8]) -> Result<Option<HostSlot>, FormatError> {
        Ok(Rec::open(RecordKind::HostSlot, sector)?.map(|r| HostSlot {
            free: r.flags() & HOST_FLAG_FREE != 0,
            host_id: r.u32(16),
            io_timeout_ms: r.u32(20),
            generation: r.u64(24),
            renewal: r.u64(32),
            renewed_unix: r.u64(40),
            lockspace_uuid: r.bytes(48),
            machine_id: r.bytes(64),
            nonce: r.bytes(80),
            host_name: r.str(96, NAME_LEN),
        }))
    }
}

// ------------------------------------------------------- resource leases ---

/// Who holds a lease on behalf of whom: shown by `status`, `who` and refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// Guest UUID (zero when not a guest).
    pub uuid: [u8; 16],
    /// Guest name (or any label), at most 64 bytes on disk.
    pub name: String,
}

/// The value Disk Paxos chooses for one lease version: who owns it next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseValue {
    pub owner_id: u32,
    pub owner_generation: u64,
    pub acquired_unix: u64,
    /// Names the resource; fixed by the first ballot on a slot.
    pub key: [u8; KEY_LEN],
    pub identity: String,
    pub holder: Holder,
}

const VALUE_LEN: usize = 4 + 4 + 8 + 8 + KEY_LEN + 16 + NAME_LEN + 2 + IDENTITY_LEN;

impl LeaseValue {
    fn put(&self, r: &mut Rec, off: usize) {
        r.put_u32(off, self.owner_id);
        r.put_u64(off + 8, self.owner_generation);
        r.put_u64(off + 16, self.acquired_unix);
        r.put_bytes(off + 24, &self.key);
        r.put_bytes(off + 56, &self.holder.uuid);
        r.put_str(off + 72, NAME_LEN, &self.holder.name);
        let identity = truncate_utf8(&self.identity, IDENTITY_LEN);
        r.put_u16(off + 136, identity.len() as u16);
        r.put_str(off + 138, IDENTITY_LEN, identity);
    }
    fn get(r: &Rec, off: usize) -> LeaseValue {
        LeaseValue {
            owner_id: r.u32(off),
            owner_generation: r.u64(off + 8),
            acquired_unix: r.u64(off + 16),
            key: r.bytes(off + 24),
            holder: Holder { uuid: r.bytes(off + 56), name: r.str(off + 72, NAME_LEN) },
            identity: r.str(off + 138, (r.u16(off + 136) as usize).min(IDENTITY_LEN)),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.owner_id == 0
    }
}

pub const LEADER_FLAG_HELD: u32 = 1;
/// Held only for the moment a shared acquire registers its mode block.
pub const LEADER_FLAG_SHORT_HOLD: u32 = 2;

/// Sector 0 of a resource: the committed outcome of the last ballot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leader {
    pub held: bool,
    pub short_hold: bool,
    /// Lease version: +1 per successful acquisition.
    pub lver: u64,
    pub writer_id: u32,
    pub lockspace_uuid: [u8; 16],
    pub value: LeaseValue,
}

impl Leader {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let flags = (if self.held { LEADER_FLAG_HELD } else { 0 }) | (if self.short_hold { LEADER_FLAG_SHORT_HOLD } else { 0 });
        let mut r = Rec::new(RecordKind::Leader, flags);
        r.put_u32(16, self.writer_id);
        r.put_u64(24, self.lver);
        r.put_bytes(32, &self.lockspace_uuid);
        self.value.put(&mut r, 48);
        r.seal()
    }

    /// `Ok(None)`: no ballot ever completed on this slot (it has no name yet).
    pub fn decode(sector: &[u8]) -> Result<Option<Leader>, FormatError> {
        Ok(Rec::open(RecordKind::Leader, sector)?.map(|r| Leader {
            held: r.flags() & LEADER_FLAG_HELD != 0,
            short_hold: r.flags() & LEADER_FLAG_SHORT_HOLD != 0,
            writer_id: r.u32(16),
            lver: r.u64(24),
            lockspace_uuid: r.bytes(32),
            value: LeaseValue::get(&r, 48),
        }))
    }
}

pub const DBLOCK_FLAG_RELEASED: u32 = 1;
pub const DBLOCK_FLAG_SHARED: u32 = 2;

/// One host's block in one resource: its Disk Paxos state for lease version
/// `lver`, and its shared-mode registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dblock {
    pub host_id: u32,
    /// The owner this dblock chose has released the lease (for `lver`).
    pub released: bool,
    /// Mode block: this host holds the resource shared, at `shared_generation`.
    pub shared: bool,
    pub shared_generation: u64,
    pub lver: u64,
    pub mbal: u64,
    pub bal: u64,
    pub lockspace_uuid: [u8; 16],
    pub inp: LeaseValue,
    /// Rises with every write of this dblock by its host: of the copies on
    /// several members, the highest is the newest (0 in format 1.0).
    pub seq: u64,
}

const DBLOCK_OFF_SEQ: usize = 408;

impl Dblock {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let flags = (if self.released { DBLOCK_FLAG_RELEASED } else { 0 }) | (if self.shared { DBLOCK_FLAG_SHARED } else { 0 });
        let mut r = Rec::new(RecordKind::Dblock, flags);
        r.put_u32(16, self.host_id);
        r.put_u64(24, self.lver);
        r.put_u64(32, self.mbal);
        r.put_u64(40, self.bal);
        r.put_u64(48, self.shared_generation);
        r.put_bytes(56, &self.lockspace_uuid);
        self.inp.put(&mut r, 72);
        r.put_u64(DBLOCK_OFF_SEQ, self.seq);
        r.seal()
    }

    /// A never-written dblock decodes as the default (all zero) one.
    pub fn decode(sector: &[u8]) -> Result<Dblock, FormatError> {
        Ok(Rec::open(RecordKind::Dblock, sector)?
            .map(|r| Dblock {
                released: r.flags() & DBLOCK_FLAG_RELEASED != 0,
                shared: r.flags() & DBLOCK_FLAG_SHARED != 0,
                host_id: r.u32(16),
                lver: r.u64(24),
                mbal: r.u64(32),
                bal: r.u64(40),
                shared_generation: r.u64(48),
                lockspace_uuid: r.bytes(56),
                inp: LeaseValue::get(&r, 72),
                seq: r.u64(DBLOCK_OFF_SEQ),
            })
            .unwrap_or_default())
    }
}

const _: () = assert!(48 + VALUE_LEN <= RECORD_LEN && 72 + VALUE_LEN <= DBLOCK_OFF_SEQ && DBLOCK_OFF_SEQ + 8 <= RECORD_LEN);

/// A record that does not decode. Wrapped with its location by `Error::Corrupt`.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum FormatError {
    #[error("no highlander lockspace header (all zeros)")]
    NotFormatted,
    #[error("a `highlander lockspace init` was interrupted before it finished")]
    IncompleteInit,
    #[error("{kind} has magic {found:#010x}, not a highlander v1 record")]
    BadMagic { kind: RecordKind, found: u32 },
    #[error("{kind} has format version {}.{}, this build reads only {}.x", found >> 16, found & 0xffff, FORMAT_MAJOR)]
    UnsupportedVersion { kind: RecordKind, found: u32 },
    #[error("{kind} checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): torn or corrupted write")]
    BadChecksum { kind: RecordKind, stored: u32, computed: u32 },
    #[error("{kind} field {field} has invalid value {value}")]
    BadField { kind: RecordKind, field: &'static str, value: u64 },
}


#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header { name: "ls1".into(), uuid: [7; 16], sector_size: 512, max_hosts: 8, resource_slots: 4, io_timeout_ms: 1000, created_unix: 1, member_index: 0, members: 1 }
    }

    fn value() -> LeaseValue {
        LeaseValue {
            owner_id: 3,
            owner_generation: 9,
            acquired_unix: 1234,
            key: [5; 32],
            identity: "wwid:naa.6001405abcdef".into(),
            holder: Holder { uuid: [1; 16], name: "vm-ünïcode".into() },
        }
    }

    #[test]
    fn records_round_trip() {
        assert_eq!(Header::decode(&header().encode()).unwrap(), header());
        let slot = HostSlot {
            free: false,
            host_id: 3,
            io_timeout_ms: 1000,
            generation: 4,
            renewal: 77,
            renewed_unix: 99,
            lockspace_uuid: [7; 16],
            machine_id: [8; 16],
            nonce: [9; 16],
            host_name: "host-a".into(),
        };
        assert_eq!(HostSlot::decode(&slot.encode()).unwrap(), Some(slot));
        let leader = Leader { held: true, short_hold: false, lver: 5, writer_id: 3, lockspace_uuid: [7; 16], value: value() };
        assert_eq!(Leader::decode(&leader.encode()).unwrap(), Some(leader));
        let d = Dblock { host_id: 3, released: true, shared: true, shared_generation: 4, lver: 6, mbal: 11, bal: 11, lockspace_uuid: [7; 16], inp: value(), seq: 1_700_000_000_000_001 };
        assert_eq!(Dblock::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn zero_sectors_are_never_written() {
        let zero = [0u8; RECORD_LEN];
        assert_eq!(Header::decode(&zero), Err(FormatError::NotFormatted));
        assert_eq!(HostSlot::decode(&zero).unwrap(), None);
        assert_eq!(Leader::decode(&zero).unwrap(), None);
        assert_eq!(Dblock::decode(&zero).unwrap(), Dblock::default());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let good = header().encode();
        for bit in 0..RECORD_LEN * 8 {
            let mut bad = good;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::decode(&bad).is_err(), "bit {bit} flip went unnoticed");
        }
        let good = Leader { held: true, lver: 1, value: value(), ..Default::default() }.encode();
        for bit in 0..RECORD_LEN * 8 {
            let mut bad = good;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Leader::decode(&bad).is_err(), "leader bit {bit} flip went unnoticed");
        }
    }

    #[test]
    fn other_versions_and_kinds_are_named() {
        let mut h = header().encode();
        h[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&(2u32 << 16).to_le_bytes());
        assert!(matches!(Header::decode(&h), Err(FormatError::UnsupportedVersion { found, .. }) if found == 2 << 16));
        let slot_bytes = HostSlot { free: true, host_id: 1, io_timeout_ms: 1, generation: 1, renewal: 1, renewed_unix: 0, lockspace_uuid: [0; 16], machine_id: [0; 16], nonce: [0; 16], host_name: String::new() }.encode();
        assert!(matches!(Leader::decode(&slot_bytes), Err(FormatError::BadMagic { kind: RecordKind::Leader, .. })));
        assert_eq!(Header::decode(&header().encode_incomplete()), Err(FormatError::IncompleteInit));
    }

    #[test]
    fn a_resource_costs_one_plus_max_hosts_sectors() {
        let l = Layout { max_hosts: 64, resource_slots: 10 };
        assert_eq!(l.resource_base(1) - l.resource_base(0), 65);
        assert_eq!(l.dblock(0, 64), l.resource_base(0) + 64);
        assert_eq!(l.total_sectors(), 1 + 64 + 10 * 65);
    }

    #[test]
    fn long_strings_are_cut_on_char_boundaries() {
        assert_eq!(truncate_utf8("aé", 2), "a");
        let mut v = value();
        v.identity = "é".repeat(200);
        let back = Leader::decode(&Leader { value: v, ..Default::default() }.encode()).unwrap().unwrap();
        assert_eq!(back.value.identity.len(), IDENTITY_LEN);
    }
}
