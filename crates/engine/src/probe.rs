//! What a device or file already holds, asked before `lockspace init`
//! overwrites it: libblkid's signature probe (the one `blkid -p` and
//! `wipefs` use: filesystems, partition tables, LVM physical volumes, RAID
//! members, LUKS, swap), plus sanlock's lease records, which libblkid does
//! not know.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

#[allow(non_camel_case_types, non_upper_case_globals)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/blkid.rs"));
}

/// One libblkid probe of one path; freed on drop.
struct Probe(NonNull<sys::blkid_struct_probe>);

impl Probe {
    fn new(path: &Path) -> std::io::Result<Probe> {
        let name = CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: `name` is a valid NUL-terminated string for the call; the
        // probe returned (or NULL, with errno set) is owned by us.
        let raw = unsafe { sys::blkid_new_probe_from_filename(name.as_ptr()) };
        NonNull::new(raw).map(Probe).ok_or_else(std::io::Error::last_os_error)
    }

    /// The value of result `name` (e.g. "TYPE") of the last probe.
    fn value(&self, name: &CStr) -> Option<String> {
        let mut data: *const std::os::raw::c_char = std::ptr::null();
        // SAFETY: the probe is live; on success libblkid points `data` at a
        // NUL-terminated string it owns until the next probe or free, and we
        // copy it before either (`&self` keeps the probe alive and unprobed).
        unsafe {
            if sys::blkid_probe_lookup_value(self.0.as_ptr(), name.as_ptr(), &mut data, std::ptr::null_mut()) != 0 || data.is_null() {
                return None;
            }
            Some(CStr::from_ptr(data).to_string_lossy().into_owned()).filter(|v| !v.is_empty())
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: the probe came from blkid_new_probe_from_filename and is freed once.
        unsafe { sys::blkid_free_probe(self.0.as_ptr()) }
    }
}

/// Describes the signature libblkid recognises on `path`, e.g. "an ext4
/// filesystem (UUID …, label …)"; None when it recognises none.
pub fn signature(path: &Path) -> std::io::Result<Option<String>> {
    let probe = Probe::new(path)?;
    let flags = sys::BLKID_SUBLKS_LABEL | sys::BLKID_SUBLKS_UUID | sys::BLKID_SUBLKS_TYPE | sys::BLKID_SUBLKS_USAGE | sys::BLKID_SUBLKS_BADCSUM;
    // SAFETY: the probe is live and owned by us; these calls only set its options and run it.
    let found = unsafe {
        let pr = probe.0.as_ptr();
        sys::blkid_probe_enable_superblocks(pr, 1);
        sys::blkid_probe_set_superblocks_flags(pr, flags as i32);
        sys::blkid_probe_enable_partitions(pr, 1);
        sys::blkid_do_safeprobe(pr)
    };
    match found {
        0 => Ok(Some(describe(&probe))),
        1 => Ok(None),
        // Ambivalent: signatures of several kinds at once (blkid -p says the same).
        -2 => Ok(Some(format!("more than one signature (libblkid's probe is ambivalent; `wipefs {}` lists them)", path.display()))),
        _ => Err(std::io::Error::other("libblkid's probe failed")),
    }
}

fn describe(probe: &Probe) -> String {
    let value = |name: &CStr| probe.value(name);
    let mut details = Vec::new();
    let what = if let Some(table) = value(c"PTTYPE") {
        details.extend(value(c"PTUUID").map(|u| format!("UUID {u}")));
        if table == "dos" { "an MBR (dos) partition table".into() } else { format!("a {table} partition table") }
    } else {
        let kind = value(c"TYPE").unwrap_or_else(|| "unknown".into());
        details.extend(value(c"UUID").map(|u| format!("UUID {u}")));
        details.extend(value(c"LABEL").map(|l| format!("label {l:?}")));
        if value(c"SBBADCSUM").is_some() {
            details.push("its checksum does not verify".into());
        }
        match (kind.as_str(), value(c"USAGE").as_deref()) {
            ("swap", _) => "a swap area".into(),
            ("LVM2_member", _) => "an LVM2 physical volume".into(),
            ("crypto_LUKS", _) => "a LUKS encrypted volume".into(),
            ("linux_raid_member", _) => "a Linux RAID (md) member".into(),
            (kind, Some("filesystem")) => format!("{} {kind} filesystem", article(kind)),
            (kind, Some("raid")) => format!("{} {kind} RAID member", article(kind)),
            (kind, Some("crypto")) => format!("{} {kind} encrypted volume", article(kind)),
            (kind, _) => format!("{} {kind} signature", article(kind)),
        }
    };
    if details.is_empty() {
        what
    } else {
        format!("{what} ({})", details.join(", "))
    }
}

/// "an" before a name read with a vowel sound (ext4, xfs), else "a".
fn article(name: &str) -> &'static str {
    if name.starts_with(['a', 'e', 'i', 'o', 'u', 'x', 'A', 'E', 'I', 'O', 'U', 'X']) {
        "an"
    } else {
        "a"
    }
}

/// sanlock's record magics (its src/leader.h), at the start of a
/// lockspace's first sector (host id 1's delta lease) or of a resource lease.
const SANLOCK_DELTA_MAGIC: u32 = 0x1221_2010;
const SANLOCK_PAXOS_MAGIC: u32 = 0x0615_2010;
const SANLOCK_PAXOS_CLEAR: u32 = 0x1128_2016;

/// Describes the sanlock record `first` (a device's first bytes) starts with.
pub fn sanlock(first: &[u8]) -> Option<String> {
    let magic = u32::from_le_bytes(first.get(..4)?.try_into().ok()?);
    // leader_record: space_name at 56 and resource_name at 104, 48 bytes each, NUL-padded.
    let name = |at: usize| first.get(at..at + 48).map(|b| String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or_default()).into_owned()).unwrap_or_default();
    match magic {
        SANLOCK_DELTA_MAGIC => Some(format!("a sanlock lockspace \"{}\"", name(56))),
        SANLOCK_PAXOS_MAGIC => Some(format!("a sanlock resource lease \"{}:{}\"", name(56), name(104))),
        SANLOCK_PAXOS_CLEAR => Some(format!("a cleared sanlock resource lease \"{}:{}\"", name(56), name(104))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sanlock_records_are_named() {
        let mut first = vec![0u8; 512];
        first[..4].copy_from_slice(&0x1221_2010u32.to_le_bytes());
        first[56..61].copy_from_slice(b"space");
        assert_eq!(super::sanlock(&first).as_deref(), Some("a sanlock lockspace \"space\""));
        first[..4].copy_from_slice(&0x0615_2010u32.to_le_bytes());
        first[104..107].copy_from_slice(b"res");
        assert_eq!(super::sanlock(&first).as_deref(), Some("a sanlock resource lease \"space:res\""));
        assert_eq!(super::sanlock(&[0u8; 512]), None);
        assert_eq!(super::sanlock(&[0x10, 0x20]), None);
    }
}
