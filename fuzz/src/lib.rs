//! What the record targets share: whole sectors from fuzz input, fuzzed
//! bytes sealed into a checksum-valid record (so the decoding of the fields
//! behind the checksum is reached), and the properties every sector must
//! have when decoded as each record kind.

use engine::crc32c;
use engine::format::FormatError;
use engine::format::{self, Dblock, Header, HostSlot, Leader, LeaseValue, RecordKind, FORMAT_MAJOR, IDENTITY_LEN, NAME_LEN, RECORD_LEN};

pub const KINDS: [RecordKind; 4] = [RecordKind::Header, RecordKind::HostSlot, RecordKind::Leader, RecordKind::Dblock];

/// Where every record keeps its checksum (docs/FORMAT.md: magic, version, CRC-32C).
const OFF_VERSION: usize = 4;
const OFF_CRC: usize = 8;

/// The first RECORD_LEN bytes of `data`, zero-padded: decoders take a whole sector.
pub fn sector(data: &[u8]) -> [u8; RECORD_LEN] {
    let mut s = [0; RECORD_LEN];
    let n = data.len().min(RECORD_LEN);
    s[..n].copy_from_slice(&data[..n]);
    s
}

fn magic(kind: RecordKind) -> u32 {
    match kind {
        RecordKind::Header => format::MAGIC_HEADER,
        RecordKind::HostSlot => format::MAGIC_HOST,
        RecordKind::Leader => format::MAGIC_LEADER,
        RecordKind::Dblock => format::MAGIC_DBLOCK,
    }
}

/// `rec` made a record of `kind` that passes verification: its magic, this
/// format's major version (the fuzzed minor kept) and a CRC-32C over the
/// fuzzed rest. Every other byte (flags, fields, padding) stays as fuzzed.
pub fn seal(kind: RecordKind, mut rec: [u8; RECORD_LEN]) -> [u8; RECORD_LEN] {
    rec[..4].copy_from_slice(&magic(kind).to_le_bytes());
    rec[OFF_VERSION + 2..OFF_VERSION + 4].copy_from_slice(&(FORMAT_MAJOR as u16).to_le_bytes());
    rec[OFF_CRC..OFF_CRC + 4].fill(0);
    let crc = crc32c::checksum(&rec);
    rec[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    rec
}

/// What an encoder keeps of a string: at most `len` bytes, cut on a char boundary.
fn fit(s: &str, len: usize) -> String {
    format::truncate_utf8(s, len).to_owned()
}

fn fit_value(v: &LeaseValue) -> LeaseValue {
    let mut v = v.clone();
    v.identity = fit(&v.identity, IDENTITY_LEN);
    v.holder.name = fit(&v.holder.name, NAME_LEN);
    v
}

/// Decodes `s` as every record kind and checks what holds of any sector:
/// all zeros is "never written" to every kind; any other sector is taken
/// by at most one kind (each has its own magic); and whatever decodes
/// encodes again into a record that decodes to the same value, strings cut
/// to their on-disk fields (a name read back lossily from invalid UTF-8
/// may be longer than the field). Returns how many kinds accepted it.
pub fn check_sector(s: &[u8; RECORD_LEN]) -> usize {
    let header = Header::decode(s);
    let slot = HostSlot::decode(s);
    let leader = Leader::decode(s);
    let dblock = Dblock::decode(s);
    if s.iter().all(|&b| b == 0) {
        assert_eq!(header, Err(FormatError::NotFormatted));
        assert_eq!(slot, Ok(None));
        assert_eq!(leader, Ok(None));
        assert_eq!(dblock, Ok(Dblock::default()));
        return 0;
    }
    let accepted = [header.is_ok(), slot.is_ok(), leader.is_ok(), dblock.is_ok()].iter().filter(|&&ok| ok).count();
    assert!(accepted <= 1, "one sector decodes as {accepted} record kinds");
    if let Ok(h) = header {
        let want = Header { name: fit(&h.name, NAME_LEN), ..h.clone() };
        assert_eq!(Header::decode(&h.encode()), Ok(want));
        assert_eq!(Header::decode(&h.encode_incomplete()), Err(FormatError::IncompleteInit));
    }
    if let Ok(Some(h)) = slot {
        let want = HostSlot { host_name: fit(&h.host_name, NAME_LEN), ..h.clone() };
        assert_eq!(HostSlot::decode(&h.encode()), Ok(Some(want)));
    }
    if let Ok(Some(l)) = leader {
        let want = Leader { value: fit_value(&l.value), ..l.clone() };
        assert_eq!(Leader::decode(&l.encode()), Ok(Some(want)));
    }
    if let Ok(d) = dblock {
        let want = Dblock { inp: fit_value(&d.inp), ..d.clone() };
        assert_eq!(Dblock::decode(&d.encode()), Ok(want));
    }
    accepted
}
