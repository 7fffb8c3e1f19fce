//! This thread's mounts (/proc/thread-self/mountinfo) and which one a path
//! is on.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// This thread's view: the kernel's statx mount ids refer to the caller's
/// mount namespace, which a thread may have unshared.
pub(crate) const MOUNTINFO: &str = "/proc/thread-self/mountinfo";

/// One line of /proc/<pid>/mountinfo, the fields used here.
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    /// major:minor of the filesystem (st_dev of its files, except btrfs).
    pub dev: (u32, u32),
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options.
    pub options: String,
}

#[doc(hidden)]
pub fn parse_mountinfo(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n').filter_map(parse_mount_line).collect()
}

/// `36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/sda1 rw,errors=continue`:
/// id, parent, major:minor, root, mount point, options, optional fields up
/// to "-", type, source, superblock options (proc_pid_mountinfo(5)).
pub(crate) fn parse_mount_line(line: &[u8]) -> Option<Mount> {
    let mut fields = line.split(|&b| b == b' ').map(unescape);
    let mut text = || fields.next().map(|f| String::from_utf8_lossy(&f).into_owned());
    let id = text()?.parse().ok()?;
    let _parent = text()?;
    let dev = text()?;
    let (major, minor) = dev.split_once(':')?;
    let dev = (major.parse().ok()?, minor.parse().ok()?);
    let _root = text()?;
    let mount_point = PathBuf::from(OsString::from_vec(fields.next()?));
    let _options = fields.next()?;
    fields.by_ref().find(|f| f == b"-")?;
    let mut text = || fields.next().map(|f| String::from_utf8_lossy(&f).into_owned());
    Some(Mount { id, dev, mount_point, fstype: text()?, source: text()?, options: text().unwrap_or_default() })
}

/// Undoes the kernel's `\ooo` octal escapes (space, tab, newline, backslash).
pub(crate) fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mount `path` lies on: by statx mount id, else (kernels before 5.8)
/// the deepest mount of its device that contains the path.
#[doc(hidden)]
pub fn find_mount<'a>(mounts: &'a [Mount], mnt_id: Option<u64>, dev: (u32, u32), path: &Path) -> Option<&'a Mount> {
    match mnt_id {
        Some(id) => mounts.iter().find(|m| m.id == id),
        None => mounts.iter().filter(|m| m.dev == dev && path.starts_with(&m.mount_point)).max_by_key(|m| m.mount_point.as_os_str().len()),
    }
}

/// The mount id (Linux 5.8) and subvolume (6.10) of `path`, where the kernel reports them.
pub(crate) fn statx_ids(path: &Path) -> (Option<u64>, Option<u64>) {
    let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else { return (None, None) };
    // SAFETY: statx is plain integers; all zeroes is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `cpath` is NUL-terminated and `stx` is a statx the kernel fills.
    if unsafe { libc::statx(libc::AT_FDCWD, cpath.as_ptr(), 0, libc::STATX_MNT_ID | libc::STATX_SUBVOL, &mut stx) } != 0 {
        return (None, None);
    }
    let has = |bit: libc::c_uint| stx.stx_mask & bit != 0;
    (has(libc::STATX_MNT_ID).then_some(stx.stx_mnt_id), has(libc::STATX_SUBVOL).then_some(stx.stx_subvol))
}

/// The mount `canonical` lies on (from this thread's mountinfo), and its btrfs subvolume.
pub(crate) fn mount_of(canonical: &Path, meta: &std::fs::Metadata) -> std::io::Result<(Option<Mount>, Option<u64>)> {
    let (mnt_id, subvol) = statx_ids(canonical);
    let dev = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let mut mounts = parse_mountinfo(&std::fs::read(MOUNTINFO)?);
    let found = find_mount(&mounts, mnt_id, dev, canonical).map(|m| m.id);
    Ok((found.and_then(|id| mounts.iter().position(|m| m.id == id)).map(|i| mounts.swap_remove(i)), subvol))
}

/// The filesystem a path is on, as mountinfo names it.
pub struct Filesystem {
    pub fstype: String,
    pub mount_point: PathBuf,
    pub source: String,
}

/// The filesystem `path` is on, None when mountinfo has no entry for it.
pub fn filesystem_of(path: &Path) -> std::io::Result<Option<Filesystem>> {
    let canonical = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&canonical)?;
    Ok(mount_of(&canonical, &meta)?.0.map(|m| Filesystem { fstype: m.fstype, mount_point: m.mount_point, source: m.source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
63 27 7:0 /vms /srv/my\\040images rw,relatime shared:40 master:3 - ext4 /dev/loop0 rw
70 27 0:53 / /mnt/nfs rw,relatime shared:50 - nfs4 192.168.1.10:/export/vms rw,vers=4.2,addr=192.168.1.10
71 27 0:53 / /var/lib/libvirt/images rw,relatime - nfs4 192.168.1.10:/export rw,vers=4.2
80 27 0:60 / /mnt/ceph rw,relatime - ceph admin@b3acfc0d-575f-41d3-9c91-0e7ed3dbb3fa.cephfs=/vms rw,name=admin,secret=<hidden>,acl
";

    fn mounts() -> Vec<Mount> {
        parse_mountinfo(MOUNTINFO_SAMPLE.as_bytes())
    }

    #[test]
    fn mountinfo_lines_are_parsed_with_escapes_and_optional_fields() {
        let m = mounts();
        assert_eq!(m.len(), 6);
        assert_eq!(
            m[2],
            Mount { id: 63, dev: (7, 0), mount_point: "/srv/my images".into(), fstype: "ext4".into(), source: "/dev/loop0".into(), options: "rw".into() }
        );
        assert_eq!((m[3].fstype.as_str(), m[3].source.as_str(), m[3].dev), ("nfs4", "192.168.1.10:/export/vms", (0, 53)));
        assert_eq!(m[5].options, "rw,name=admin,secret=<hidden>,acl");
        // Lines cut short or garbled are skipped, not misread.
        assert!(parse_mountinfo(b"63 27 7:0 /vms /srv rw shared:40\nx y z\n\n").is_empty());
        assert_eq!(unescape(br"a\134b\011c\0"), b"a\\b\tc\\0");
    }

    #[test]
    fn the_mount_is_found_by_id_else_by_device_and_deepest_mount_point() {
        let m = mounts();
        assert_eq!(find_mount(&m, Some(71), (0, 53), Path::new("/mnt/nfs/disk.img")).unwrap().id, 71);
        assert!(find_mount(&m, Some(99), (254, 0), Path::new("/x")).is_none());
        assert_eq!(find_mount(&m, None, (0, 53), Path::new("/var/lib/libvirt/images/a.img")).unwrap().id, 71);
        assert_eq!(find_mount(&m, None, (0, 53), Path::new("/mnt/nfs/a.img")).unwrap().id, 70);
        assert_eq!(find_mount(&m, None, (254, 0), Path::new("/srv/a.img")).unwrap().id, 27);
        assert!(find_mount(&m, None, (0, 99), Path::new("/srv/a.img")).is_none());
    }
}
