//! A disk's stable identity: the same disk gets the same identity on every
//! host, whatever path each host uses to reach it. The rules, why each is
//! stable across hosts and their caveats: docs/IDENTITY.md.
//!
//! In order of preference:
//! - a multipath map: the identity its paths have as raw disks, so a host
//!   using the map and one using a raw path take one lease (`wwid:<wwid>`,
//!   a kpartx partition of it `wwid:<wwid>-part<N>`)
//! - other device-mapper devices (LVM, dm-crypt): `dm:<dm uuid>`
//! - SCSI/NVMe disks: `wwid:<wwid>` (a partition adds `-part<N>`)
//! - loop devices: the identity of the backing file
//! - a file or directory on a filesystem that is named the same on every
//!   host and keeps inode numbers: `fs:<filesystem>:ino:<inode>`, the
//!   filesystem being `uuid:<fs uuid>` (ext4, XFS, GFS2, OCFS2, ...; btrfs
//!   adds `:subvol:<id>`), `nfs<version>:<server address>:<server fsid>` or
//!   `ceph:<cluster fsid or monitors>:<fs name>`; a disk filesystem with no
//!   UUID is `dev:<its block device's identity>`, a tmpfs or ramfs
//!   `local:<machine id>:dev:<major>:<minor>`
//! - a file on a GlusterFS FUSE mount: `gluster:<volume id>:gfid:<gfid>`
//! - anything else: `file:<canonical path>`
//!
//! Network disks, which libvirt hands to no lock manager, are named from
//! the domain XML by the storage's own names (`netdisk`; a `gluster://`
//! file gets the FUSE rule's identity through `gfapi`).
//!
//! The parsers of /proc and /sys text are `#[doc(hidden)] pub` for the fuzz
//! targets in fuzz/; they are not a stable API.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

mod block;
mod error;
mod fs;
pub mod gfapi;
pub mod gluster;
mod machine;
mod mountinfo;
pub mod netdisk;

pub use error::{IdentityError, IDENTITY_LEN};
pub use machine::{machine_id, machine_uuid};
pub use mountinfo::{filesystem_of, Filesystem};
// For the fuzz targets (see above).
#[doc(hidden)]
pub use block::{multipath_kind, Multipath};
#[doc(hidden)]
pub use fs::{ceph_filesystem, nfs_filesystem};
#[doc(hidden)]
pub use mountinfo::{find_mount, parse_mountinfo, Mount};

use block::{loop_status, raw_identity, read_trimmed, same_dev, dm_device_identity};
use error::inspect;
use fs::{ceph_cluster_fsid, fs_uuid, gluster_identity, NFS_VOLUMES, ON_DISK_INODES};
use mountinfo::{mount_of, MOUNTINFO};

/// The identity of the disk at `path` (a file, directory or block device).
pub fn of_path(path: &Path) -> Result<String, IdentityError> {
    let resolve = |source| IdentityError::Resolve { path: path.to_owned(), source };
    let canonical = std::fs::canonicalize(path).map_err(resolve)?;
    let meta = std::fs::metadata(&canonical).map_err(resolve)?;
    let identity = if meta.file_type().is_block_device() {
        block_identity(path, &canonical, meta.rdev())?
    } else {
        fs_identity(path, &canonical, &meta)?
    }
    .unwrap_or_else(|| format!("file:{}", canonical.display()));
    if identity.len() > IDENTITY_LEN {
        return Err(IdentityError::TooLong { path: path.to_owned(), identity });
    }
    Ok(identity)
}

/// A block device's identity from sysfs; None when it has no stable one.
fn block_identity(path: &Path, canonical: &Path, rdev: u64) -> Result<Option<String>, IdentityError> {
    let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", libc::major(rdev), libc::minor(rdev)));
    if let Some(uuid) = read_trimmed(&sys.join("dm/uuid")) {
        return dm_device_identity(path, &sys, &uuid).map(Some);
    }
    if let Some(backing) = read_trimmed(&sys.join("loop/backing_file")) {
        return loop_backing(path, canonical, &backing).map(Some);
    }
    if let Some(identity) = raw_identity(&sys) {
        return Ok(Some(identity));
    }
    log::debug!("{}: block device without dm uuid, wwid or loop backing file; identified by path", canonical.display());
    Ok(None)
}

/// The identity of a loop device's backing file. sysfs gives the file's
/// name as it was when attached, seen from the reader's mount namespace,
/// with " (deleted)" once unlinked: that name may now lead to another file,
/// so it is used only if it still leads to the (device, inode) the loop
/// device really holds.
fn loop_backing(path: &Path, canonical: &Path, backing: &str) -> Result<String, IdentityError> {
    let (dev, ino) = loop_status(canonical).map_err(inspect(path, format!("query loop device {}", canonical.display())))?;
    for name in [Some(backing), backing.strip_suffix(" (deleted)")].into_iter().flatten() {
        if let Ok(meta) = std::fs::metadata(name) {
            if same_dev(meta.dev(), dev) && meta.ino() == ino {
                return of_path(Path::new(name));
            }
        }
    }
    Err(IdentityError::LoopBacking { path: path.to_owned(), backing: backing.to_owned() })
}

/// `fs:<filesystem>:ino:<inode>` for a file on a filesystem that every host
/// names alike and whose inode numbers every host sees alike; None, with
/// the reason logged, for the rest (identified by path).
fn fs_identity(path: &Path, canonical: &Path, meta: &std::fs::Metadata) -> Result<Option<String>, IdentityError> {
    let dev = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let (mount, subvol) = mount_of(canonical, meta).map_err(inspect(path, format!("read {MOUNTINFO}")))?;
    let Some(mount) = mount else {
        log::debug!("{}: no entry in {MOUNTINFO} for its filesystem (device {}:{}); identified by path", canonical.display(), dev.0, dev.1);
        return Ok(None);
    };
    let mount = &mount;
    if mount.fstype == gluster::FSTYPE {
        return gluster_identity(path, canonical, mount).map(Some);
    }
    let fs = match mount.fstype.as_str() {
        "nfs" | "nfs4" => match std::fs::read_to_string(NFS_VOLUMES) {
            Ok(volumes) => nfs_filesystem(&volumes, dev).ok_or_else(|| format!("NFS device {}:{} is not in {NFS_VOLUMES}", dev.0, dev.1)),
            Err(e) => Err(format!("NFS, and {NFS_VOLUMES} is unreadable ({e})")),
        },
        "ceph" => ceph_filesystem(&mount.source, &mount.options, || ceph_cluster_fsid(canonical))
            .ok_or_else(|| format!("CephFS source {:?} names neither a cluster fsid nor monitors", mount.source)),
        t if ON_DISK_INODES.contains(&t) => disk_filesystem(path, canonical, mount, subvol)?,
        // No other host sees these: this machine's instance of the filesystem will do.
        "tmpfs" | "ramfs" => Ok(format!("local:{}:dev:{}:{}", machine_uuid(), dev.0, dev.1)),
        t => Err(format!("{t} is not known to keep inode numbers across mounts and hosts")),
    };
    match fs {
        Ok(fs) => Ok(Some(format!("fs:{fs}:ino:{}", meta.ino()))),
        Err(why) => {
            log::debug!("{}: {why}; identified by path", canonical.display());
            Ok(None)
        }
    }
}

/// `uuid:<fs uuid>` for a disk filesystem; Ok(Err(reason)) when it has none.
fn disk_filesystem(path: &Path, canonical: &Path, mount: &Mount, subvol: Option<u64>) -> Result<Result<String, String>, IdentityError> {
    let btrfs = mount.fstype == "btrfs";
    if btrfs && subvol.is_none() {
        // Every btrfs subvolume numbers its inodes afresh.
        return Ok(Err("btrfs, and this kernel does not report the file's subvolume (statx STATX_SUBVOL, Linux 6.10)".into()));
    }
    let Some(uuid) = fs_uuid(path, canonical, mount)? else {
        // A nil UUID: the block device holding the filesystem names it, when
        // it has a name of its own (LUN, LV, a loop device's file).
        let device = Path::new(&mount.source);
        let rdev = libc::makedev(mount.dev.0, mount.dev.1);
        let is_the_device = std::fs::metadata(device).is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == rdev);
        if !btrfs && is_the_device {
            if let Some(device) = block_identity(path, device, rdev)? {
                return Ok(Ok(format!("dev:{device}")));
            }
        }
        return Ok(Err(format!("{} on {} has no filesystem UUID, and its device no identity", mount.fstype, mount.source)));
    };
    Ok(Ok(match subvol {
        Some(id) if btrfs => format!("uuid:{uuid}:subvol:{id}"),
        _ => format!("uuid:{uuid}"),
    }))
}

