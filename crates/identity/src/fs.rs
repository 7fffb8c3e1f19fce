//! What names a filesystem the same on every host: its UUID, an NFS
//! server's fsid, a Ceph cluster and fs name, a GlusterFS volume and GFID.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{inspect, IdentityError};
use crate::gluster;
use crate::mountinfo::Mount;

pub(crate) const NFS_VOLUMES: &str = "/proc/fs/nfsfs/volumes";

pub(crate) const BY_UUID: &str = "/dev/disk/by-uuid";

/// Filesystems whose inode numbers are stored on disk, so a file keeps its
/// number across mounts, reboots and hosts.
pub(crate) const ON_DISK_INODES: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "gfs2", "ocfs2", "f2fs", "jfs"];

/// `struct fsuuid2` from linux/fs.h.
#[repr(C)]
pub(crate) struct FsUuid2 {
    len: u8,
    uuid: [u8; 16],
}

/// `_IOR(0x15, 0, struct fsuuid2)`
pub(crate) const FS_IOC_GETFSUUID: libc::c_ulong = 0x8011_1500;

/// The filesystem's UUID as udev names it under /dev/disk/by-uuid, else as
/// the kernel reports it (FS_IOC_GETFSUUID, Linux 6.9; not btrfs): both are
/// the UUID blkid shows. A nil UUID (some images are made with one) is none.
pub(crate) fn fs_uuid(path: &Path, canonical: &Path, mount: &Mount) -> Result<Option<String>, IdentityError> {
    // btrfs shows an anonymous device number in mountinfo: its source names the disk.
    let source = || {
        let meta = std::fs::metadata(mount.source.strip_prefix('/').map(|_| &mount.source)?).ok()?;
        meta.file_type().is_block_device().then(|| (libc::major(meta.rdev()), libc::minor(meta.rdev())))
    };
    if let Some(uuid) = by_uuid(mount.dev).or_else(|| source().and_then(by_uuid)) {
        return Ok(Some(uuid));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(canonical)
        .map_err(inspect(path, "open it to read its filesystem's UUID"))?;
    let mut u = FsUuid2 { len: 0, uuid: [0; 16] };
    // SAFETY: FS_IOC_GETFSUUID writes one struct fsuuid2, which FsUuid2 matches.
    if unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_GETFSUUID, &mut u) } != 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            // Older kernel, or a filesystem that keeps no UUID.
            Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP) => Ok(None),
            _ => Err(inspect(path, "read its filesystem's UUID")(e)),
        };
    }
    let bytes = &u.uuid[..usize::from(u.len).min(u.uuid.len())];
    Ok((bytes.iter().any(|&b| b != 0)).then(|| format_uuid(bytes)))
}

/// The /dev/disk/by-uuid name of block device `dev`, lower-cased.
pub(crate) fn by_uuid(dev: (u32, u32)) -> Option<String> {
    std::fs::read_dir(BY_UUID).ok()?.flatten().find_map(|entry| {
        let meta = std::fs::metadata(entry.path()).ok()?;
        let name = entry.file_name().to_str()?.to_ascii_lowercase();
        (meta.file_type().is_block_device() && (libc::major(meta.rdev()), libc::minor(meta.rdev())) == dev && name.bytes().any(|b| b != b'0' && b != b'-')).then_some(name)
    })
}

/// A filesystem UUID as blkid shows it (hex for an odd-sized one).
pub(crate) fn format_uuid(bytes: &[u8]) -> String {
    match <&[u8; 16]>::try_from(bytes) {
        Ok(b) => proto::uuid::format(b),
        Err(_) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// `nfs<version>:<server address>:<fsid>` from /proc/fs/nfsfs/volumes
/// (`NV SERVER PORT DEV FSID FSC`): the fsid is the server's own name for
/// the exported filesystem (the scope of its inode numbers), the same
/// whichever directory of it a host mounts, and where.
#[doc(hidden)]
pub fn nfs_filesystem(volumes: &str, dev: (u32, u32)) -> Option<String> {
    let dev = format!("{}:{}", dev.0, dev.1);
    volumes.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let version = f.first()?.strip_prefix('v')?;
        (f.len() >= 5 && f[3] == dev).then(|| format!("nfs{version}:{}:{}", server_address(f[1]), f[4]))
    })
}

/// The kernel prints the server's address in hex: 8 digits IPv4, 32 IPv6.
pub(crate) fn server_address(hex: &str) -> String {
    match hex.len() {
        8 => u32::from_str_radix(hex, 16).map(|a| std::net::Ipv4Addr::from(a).to_string()).ok(),
        32 => u128::from_str_radix(hex, 16).map(|a| format!("[{}]", std::net::Ipv6Addr::from(a))).ok(),
        _ => None,
    }
    .unwrap_or_else(|| hex.to_owned())
}

/// `ceph:<cluster>:<fs name>`. The cluster is its fsid, from the new device
/// syntax `<user>@<fsid>.<fs name>=<path>` (Linux 5.17), the `fsid=` option
/// or the client (`cluster_fsid`); failing all, the old syntax's monitors
/// `<mon>[,<mon>...]:<path>`, sorted. The fs name (a cluster may hold
/// several, each numbering its inodes) is `-` when the mount took the default.
#[doc(hidden)]
pub fn ceph_filesystem(source: &str, options: &str, cluster_fsid: impl FnOnce() -> Option<String>) -> Option<String> {
    let option = |key: &str| options.split(',').find_map(|o| o.strip_prefix(key)?.strip_prefix('=').filter(|v| !v.is_empty()));
    let new_syntax = source.rsplit_once('@').and_then(|(_, rest)| {
        let (fsid, rest) = rest.split_once('.')?;
        Some((fsid, rest.split_once('=')?.0))
    });
    let name = new_syntax.map(|(_, name)| name).or_else(|| option("mds_namespace")).or_else(|| option("fs")).unwrap_or("-");
    let fsid = new_syntax.map(|(fsid, _)| fsid.to_owned()).or_else(|| option("fsid").map(str::to_owned)).or_else(cluster_fsid);
    let cluster = match fsid {
        Some(fsid) => fsid.to_ascii_lowercase(),
        None => {
            let (mons, _) = source.split_once(":/")?;
            let mut mons: Vec<&str> = mons.split(',').filter(|m| !m.is_empty()).collect();
            if mons.is_empty() {
                return None;
            }
            mons.sort_unstable();
            mons.join(",")
        }
    };
    Some(format!("ceph:{cluster}:{name}"))
}

/// The CephFS client's `ceph.cluster_fsid` virtual xattr.
pub(crate) fn ceph_cluster_fsid(path: &Path) -> Option<String> {
    let cpath = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: both names are NUL-terminated; the kernel writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getxattr(cpath.as_ptr(), c"ceph.cluster_fsid".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let text = String::from_utf8_lossy(buf.get(..usize::try_from(n).ok()?)?).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_owned();
    (!text.is_empty()).then_some(text)
}

/// `gluster:<volume id>:gfid:<gfid>`. Never the path: a host that could not
/// read these and fell back to its mount path would split from one that could.
pub(crate) fn gluster_identity(path: &Path, canonical: &Path, mount: &Mount) -> Result<String, IdentityError> {
    let failed = |what: String| IdentityError::Gluster { path: path.to_owned(), mount: mount.mount_point.clone(), what };
    let graph = gluster::active_graph(&mount.mount_point)
        .map_err(|e| failed(format!("cannot read its client graph {} ({e})", gluster::volfile_path(&mount.mount_point).display())))?;
    let volume = graph.volume_id().ok_or_else(|| failed("its client graph names no single volume-id".into()))?;
    let gfid = gluster::gfid(canonical).map_err(|e| failed(format!("cannot read the file's GFID (xattr glusterfs.gfid.string: {e})")))?;
    Ok(format!("gluster:{volume}:gfid:{gfid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOLUMES: &str = "\
NV SERVER   PORT DEV          FSID                              FSC
v4 c0a8010a  801 0:53         5f0b1c2d3e4f5a6b:9a8b7c6d5e4f3a2b  no
v3 0a000005  801 0:54         1234abcd:0                        no
v4 20010db8000000000000000000000001  801 0:55         2:0                               no
";

    #[test]
    fn nfs_is_named_by_server_address_and_server_fsid() {
        // Both mounts of sample device 0:53 (different export paths) give one name.
        assert_eq!(nfs_filesystem(VOLUMES, (0, 53)).unwrap(), "nfs4:192.168.1.10:5f0b1c2d3e4f5a6b:9a8b7c6d5e4f3a2b");
        assert_eq!(nfs_filesystem(VOLUMES, (0, 54)).unwrap(), "nfs3:10.0.0.5:1234abcd:0");
        assert_eq!(nfs_filesystem(VOLUMES, (0, 55)).unwrap(), "nfs4:[2001:db8::1]:2:0");
        assert_eq!(nfs_filesystem(VOLUMES, (0, 5)), None);
        assert_eq!(nfs_filesystem("NV SERVER   PORT DEV          FSID                              FSC\n", (0, 53)), None);
    }

    #[test]
    fn cephfs_is_named_by_cluster_and_fs_name() {
        let none = || None;
        let fsid = "b3acfc0d-575f-41d3-9c91-0e7ed3dbb3fa";
        // New device syntax: fsid and fs name in the source, whatever subdirectory.
        assert_eq!(ceph_filesystem("admin@B3ACFC0D-575F-41D3-9C91-0E7ED3DBB3FA.cephfs=/vms", "rw,name=admin", none).unwrap(), format!("ceph:{fsid}:cephfs"));
        assert_eq!(ceph_filesystem("vm.host1@b3acfc0d-575f-41d3-9c91-0e7ed3dbb3fa.second=/", "rw", none).unwrap(), format!("ceph:{fsid}:second"));
        // Old syntax: fsid from the options or the client, fs name from the options.
        let old = "10.0.0.2:6789,10.0.0.1:6789:/vms";
        assert_eq!(ceph_filesystem(old, &format!("rw,fsid={fsid},mds_namespace=cephfs"), none).unwrap(), format!("ceph:{fsid}:cephfs"));
        assert_eq!(ceph_filesystem(old, "rw,fs=cephfs", || Some(fsid.to_owned())).unwrap(), format!("ceph:{fsid}:cephfs"));
        // Nothing names the cluster: its monitors, in an order every host agrees on.
        assert_eq!(ceph_filesystem(old, "rw,name=admin", none).unwrap(), "ceph:10.0.0.1:6789,10.0.0.2:6789:-");
        assert_eq!(ceph_filesystem("[2001:db8::2]:6789,[2001:db8::1]:6789:/", "rw", none).unwrap(), "ceph:[2001:db8::1]:6789,[2001:db8::2]:6789:-");
        assert_eq!(ceph_filesystem("ceph", "rw", none), None);
    }

    #[test]
    fn uuids_are_formatted_as_blkid_shows_them() {
        let bytes = [0x0b, 0x5c, 0x5d, 0x1e, 0x11, 0x11, 0x42, 0x22, 0x83, 0x33, 0x44, 0x44, 0x55, 0x55, 0x66, 0x66];
        assert_eq!(format_uuid(&bytes), "0b5c5d1e-1111-4222-8333-444455556666");
        assert_eq!(format_uuid(&[0xab, 0xcd]), "abcd");
        assert_eq!(server_address("zz"), "zz");
    }
}
