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
//! The parsers of /proc and /sys text are `#[doc(hidden)] pub` for the fuzz
//! targets in fuzz/; they are not a stable API.

use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub mod gfapi;
pub mod gluster;
pub mod netdisk;

/// The longest identity a lease record holds (the engine's on-disk field).
pub const IDENTITY_LEN: usize = 192;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("disk {path}: does not exist or cannot be resolved ({source}); check the path in the domain XML")]
    Resolve { path: PathBuf, source: std::io::Error },
    #[error("disk {path}: cannot {what} ({source}); highlanderd must run as root with /proc and /sys mounted")]
    Inspect { path: PathBuf, what: String, source: std::io::Error },
    #[error("disk {path}: a loop device over {backing:?}, which is no longer that file here (deleted, replaced, or in another mount namespace); attach the loop device to a file this host can reach, or give the identity explicitly")]
    LoopBacking { path: PathBuf, backing: String },
    #[error("disk {path}: identity {identity:?} is longer than {IDENTITY_LEN} bytes; use a shorter path or give the identity explicitly (docs/IDENTITY.md)")]
    TooLong { path: PathBuf, identity: String },
    #[error("disk {path}: on the GlusterFS mount {mount}, {what}; highlander names such files by volume and GFID only (docs/IDENTITY.md): check that the mount is a FUSE mount of a GlusterFS ≥ 3.x volume with its .meta tree")]
    Gluster { path: PathBuf, mount: PathBuf, what: String },
    #[error("disk {path}: multipath map {map} (dm uuid {uuid}) has paths to different LUNs ({}), so it has no one identity; fix the multipath configuration (`multipath -ll {map}`, blacklist or wwids) so that the map holds paths to one LUN", paths_text(.paths))]
    MultipathPaths { path: PathBuf, map: String, uuid: String, paths: Vec<(String, String)> },
}

fn paths_text(paths: &[(String, String)]) -> String {
    paths.iter().map(|(name, identity)| format!("{name}: {identity}")).collect::<Vec<_>>().join(", ")
}

/// This thread's view: the kernel's statx mount ids refer to the caller's
/// mount namespace, which a thread may have unshared.
const MOUNTINFO: &str = "/proc/thread-self/mountinfo";
const NFS_VOLUMES: &str = "/proc/fs/nfsfs/volumes";
const BY_UUID: &str = "/dev/disk/by-uuid";

/// Filesystems whose inode numbers are stored on disk, so a file keeps its
/// number across mounts, reboots and hosts.
const ON_DISK_INODES: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "gfs2", "ocfs2", "f2fs", "jfs"];

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

fn inspect(path: &Path, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    let what = what.into();
    move |source| IdentityError::Inspect { path: path.to_owned(), what, source }
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

/// A SCSI/NVMe disk's `wwid:<wwid>`, or a partition's: its disk's wwid
/// plus the partition number. `sys` is the device's directory in sysfs.
fn raw_identity(sys: &Path) -> Option<String> {
    if let Some(wwid) = disk_wwid(sys) {
        return Some(format!("wwid:{wwid}"));
    }
    let part = read_trimmed(&sys.join("partition"))?;
    // `..` of a partition's directory is its disk's (sysfs paths are
    // symlinks; the kernel follows them before `..`).
    let wwid = disk_wwid(&sys.join(".."))?;
    Some(format!("wwid:{wwid}-part{part}"))
}

/// The identity of the device-mapper device at `sys` with dm uuid `uuid`:
/// reads what `dm_identity` needs (the map's name, and for a multipath map
/// or a kpartx partition of one the identities of the devices under it).
fn dm_device_identity(path: &Path, sys: &Path, uuid: &str) -> Result<String, IdentityError> {
    if multipath_kind(uuid).is_none() {
        return Ok(format!("dm:{uuid}"));
    }
    let map = read_trimmed(&sys.join("dm/name")).unwrap_or_else(|| sys.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let mut slaves = Vec::new();
    // A missing or unreadable slaves/ directory is no slave: the fallback.
    for entry in std::fs::read_dir(sys.join("slaves")).into_iter().flatten().flatten() {
        let dir = entry.path();
        let identity = match read_trimmed(&dir.join("dm/uuid")) {
            // A kpartx partition's slave is its map.
            Some(below) => Some(dm_device_identity(path, &dir, &below)?).filter(|id| id.starts_with("wwid:")),
            None => raw_identity(&dir),
        };
        slaves.push(Slave { name: entry.file_name().to_string_lossy().into_owned(), identity });
    }
    dm_identity(path, &map, uuid, &slaves)
}

/// A device under a device-mapper device (`/sys/dev/block/M:m/slaves/*`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slave {
    /// Its kernel name (`sdc`, `dm-3`).
    name: String,
    /// Its `wwid:` identity; None when it has none (no readable wwid).
    identity: Option<String>,
}

#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multipath<'a> {
    /// A multipath map: dm uuid `mpath-<wwid>`.
    Map,
    /// A kpartx partition of a multipath map: dm uuid `part<N>-mpath-<wwid>`.
    Partition(&'a str),
}

#[doc(hidden)]
pub fn multipath_kind(uuid: &str) -> Option<Multipath<'_>> {
    if uuid.starts_with("mpath-") {
        return Some(Multipath::Map);
    }
    let (part, rest) = uuid.strip_prefix("part")?.split_once('-')?;
    (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with("mpath-")).then_some(Multipath::Partition(part))
}

/// The identity of a device-mapper device from its dm uuid and the
/// identities of the devices under it (pure: the decision, for tests).
///
/// A multipath map is one LUN reached by several paths, each of which is a
/// raw disk with the LUN's wwid: the map takes the paths' identity, so a
/// host that uses the map and a host that uses a raw path (or whose
/// multipath is off) take one lease. A kpartx partition of a map (its only
/// slave) takes the map's identity plus `-part<N>`, the identity a raw
/// path's partition N has. Paths must agree: a map over two LUNs is
/// refused. With no readable wwid below, the map falls back to `dm:<uuid>`,
/// which is consistent only while every host uses the map, never a raw
/// path (docs/IDENTITY.md). Every other device-mapper device (LVM,
/// dm-crypt, kpartx over non-multipath maps) is `dm:<uuid>`.
fn dm_identity(path: &Path, map: &str, uuid: &str, slaves: &[Slave]) -> Result<String, IdentityError> {
    let Some(kind) = multipath_kind(uuid) else { return Ok(format!("dm:{uuid}")) };
    let known: Vec<(&str, &str)> = slaves.iter().filter_map(|s| Some((s.name.as_str(), s.identity.as_deref()?))).collect();
    let Some(&(_, first)) = known.first() else {
        log::warn!(
            "disk {}: multipath map {map} (dm uuid {uuid}): no path with a readable wwid; identified as dm:{uuid}, which is safe only if every host uses this map and none a raw path (docs/IDENTITY.md)",
            path.display()
        );
        return Ok(format!("dm:{uuid}"));
    };
    if known.iter().any(|&(_, id)| id != first) {
        let paths = known.iter().map(|&(name, id)| (name.to_owned(), id.to_owned())).collect();
        return Err(IdentityError::MultipathPaths { path: path.to_owned(), map: map.to_owned(), uuid: uuid.to_owned(), paths });
    }
    for s in slaves.iter().filter(|s| s.identity.is_none()) {
        log::debug!("disk {}: multipath map {map}: path {} has no readable wwid; identified by its other paths", path.display(), s.name);
    }
    Ok(match kind {
        Multipath::Map => first.to_owned(),
        Multipath::Partition(n) => format!("{first}-part{n}"),
    })
}

fn disk_wwid(sys: &Path) -> Option<String> {
    read_trimmed(&sys.join("device/wwid")).or_else(|| read_trimmed(&sys.join("wwid")))
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
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

fn same_dev(a: u64, b: u64) -> bool {
    (libc::major(a), libc::minor(a)) == (libc::major(b), libc::minor(b))
}

/// `struct loop_info64` from linux/loop.h; only the first two fields are read.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    _rest: [u8; 216],
}
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;

/// The (device, inode) of the file behind a loop device.
fn loop_status(dev: &Path) -> std::io::Result<(u64, u64)> {
    let file = std::fs::File::open(dev)?;
    let mut info = LoopInfo64 { lo_device: 0, lo_inode: 0, _rest: [0; 216] };
    // SAFETY: LOOP_GET_STATUS64 writes one struct loop_info64 (232 bytes),
    // which LoopInfo64 matches in size, with the two fields read in place.
    if unsafe { libc::ioctl(file.as_raw_fd(), LOOP_GET_STATUS64, &mut info) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((info.lo_device, info.lo_inode))
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

/// The mount `canonical` lies on (from this thread's mountinfo), and its btrfs subvolume.
fn mount_of(canonical: &Path, meta: &std::fs::Metadata) -> std::io::Result<(Option<Mount>, Option<u64>)> {
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

/// `gluster:<volume id>:gfid:<gfid>`. Never the path: a host that could not
/// read these and fell back to its mount path would split from one that could.
fn gluster_identity(path: &Path, canonical: &Path, mount: &Mount) -> Result<String, IdentityError> {
    let failed = |what: String| IdentityError::Gluster { path: path.to_owned(), mount: mount.mount_point.clone(), what };
    let graph = gluster::active_graph(&mount.mount_point)
        .map_err(|e| failed(format!("cannot read its client graph {} ({e})", gluster::volfile_path(&mount.mount_point).display())))?;
    let volume = graph.volume_id().ok_or_else(|| failed("its client graph names no single volume-id".into()))?;
    let gfid = gluster::gfid(canonical).map_err(|e| failed(format!("cannot read the file's GFID (xattr glusterfs.gfid.string: {e})")))?;
    Ok(format!("gluster:{volume}:gfid:{gfid}"))
}

/// The mount id (Linux 5.8) and subvolume (6.10) of `path`, where the kernel reports them.
fn statx_ids(path: &Path) -> (Option<u64>, Option<u64>) {
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

/// `struct fsuuid2` from linux/fs.h.
#[repr(C)]
struct FsUuid2 {
    len: u8,
    uuid: [u8; 16],
}
/// `_IOR(0x15, 0, struct fsuuid2)`
const FS_IOC_GETFSUUID: libc::c_ulong = 0x8011_1500;

/// The filesystem's UUID as udev names it under /dev/disk/by-uuid, else as
/// the kernel reports it (FS_IOC_GETFSUUID, Linux 6.9; not btrfs): both are
/// the UUID blkid shows. A nil UUID (some images are made with one) is none.
fn fs_uuid(path: &Path, canonical: &Path, mount: &Mount) -> Result<Option<String>, IdentityError> {
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
fn by_uuid(dev: (u32, u32)) -> Option<String> {
    std::fs::read_dir(BY_UUID).ok()?.flatten().find_map(|entry| {
        let meta = std::fs::metadata(entry.path()).ok()?;
        let name = entry.file_name().to_str()?.to_ascii_lowercase();
        (meta.file_type().is_block_device() && (libc::major(meta.rdev()), libc::minor(meta.rdev())) == dev && name.bytes().any(|b| b != b'0' && b != b'-')).then_some(name)
    })
}

/// /etc/machine-id as bytes; zeros when it is missing.
pub fn machine_id() -> [u8; 16] {
    let text = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let mut id = [0u8; 16];
    for (i, chunk) in text.trim().as_bytes().chunks(2).take(16).enumerate() {
        id[i] = std::str::from_utf8(chunk).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
    }
    id
}

/// This machine's id as a UUID: names what only this host reaches.
pub fn machine_uuid() -> String {
    proto::uuid::format(&machine_id())
}

/// A filesystem UUID as blkid shows it (hex for an odd-sized one).
fn format_uuid(bytes: &[u8]) -> String {
    match <&[u8; 16]>::try_from(bytes) {
        Ok(b) => proto::uuid::format(b),
        Err(_) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

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
fn parse_mount_line(line: &[u8]) -> Option<Mount> {
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
fn unescape(field: &[u8]) -> Vec<u8> {
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
fn server_address(hex: &str) -> String {
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
fn ceph_cluster_fsid(path: &Path) -> Option<String> {
    let cpath = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: both names are NUL-terminated; the kernel writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getxattr(cpath.as_ptr(), c"ceph.cluster_fsid".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let text = String::from_utf8_lossy(buf.get(..usize::try_from(n).ok()?)?).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    //! Pure parsing and decisions, on sample lines and sample sysfs facts: no
    //! NFS server, Ceph cluster or device-mapper here. Files, loop devices
    //! and mounts are tested in crates/identity/tests/identity.rs.
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

    fn slave(name: &str, identity: Option<&str>) -> Slave {
        Slave { name: name.into(), identity: identity.map(Into::into) }
    }

    // The device-mapper rules as a pure decision over (dm uuid, identities
    // of the devices under it). The test sandbox has no device-mapper (its
    // kernel has no dm driver: /dev/mapper/control, where present, fails
    // with ENODEV; no multipathd), so no map can be made and the rules
    // cannot be tested end to end on real devices; the sysfs reading is
    // tested below on a copy of sysfs's layout.
    #[test]
    fn a_multipath_map_is_the_lun_its_paths_are() {
        let disk = Path::new("/dev/mapper/mpatha");
        let wwid = "wwid:naa.6001405abcdef0123456789abcdef012";
        let uuid = "mpath-36001405abcdef0123456789abcdef012";
        let paths = [slave("sdc", Some(wwid)), slave("sdd", Some(wwid))];
        // The map: what /dev/sdc and /dev/sdd get as raw disks.
        assert_eq!(dm_identity(disk, "mpatha", uuid, &paths).unwrap(), wwid);
        // A kpartx partition of it (its only slave is the map, whose identity
        // it was given): what /dev/sdc1 gets as a raw partition.
        let part = dm_identity(Path::new("/dev/mapper/mpatha1"), "mpatha1", &format!("part1-{uuid}"), &[slave("dm-3", Some(wwid))]).unwrap();
        assert_eq!(part, format!("{wwid}-part1"));
        assert_eq!(dm_identity(disk, "mpatha5", &format!("part5-{uuid}"), &[slave("dm-3", Some(wwid))]).unwrap(), format!("{wwid}-part5"));
        // A path whose wwid cannot be read (gone while failed) does not count.
        assert_eq!(dm_identity(disk, "mpatha", uuid, &[slave("sdc", None), slave("sdd", Some(wwid))]).unwrap(), wwid);
    }

    #[test]
    fn a_multipath_map_over_different_luns_is_refused() {
        let other = "wwid:naa.6001405ffffffffffffffffffffffff0";
        let paths = [slave("sdc", Some("wwid:naa.6001405abc")), slave("sdd", None), slave("sde", Some(other))];
        let err = dm_identity(Path::new("/dev/mapper/mpatha"), "mpatha", "mpath-36001405abc", &paths).unwrap_err();
        assert!(matches!(&err, IdentityError::MultipathPaths { map, paths, .. } if map == "mpatha" && paths.len() == 2), "{err:?}");
        let msg = err.to_string();
        for part in ["/dev/mapper/mpatha", "multipath map mpatha", "sdc: wwid:naa.6001405abc", &format!("sde: {other}")] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
        // A partition of such a map gets the map's refusal (reading the
        // map's identity fails first); one whose slaves disagree is refused too.
        let paths = [slave("dm-3", Some("wwid:a")), slave("dm-4", Some("wwid:b"))];
        assert!(dm_identity(Path::new("/dev/mapper/mpatha1"), "mpatha1", "part1-mpath-3a", &paths).is_err());
    }

    #[test]
    fn a_multipath_map_without_a_readable_wwid_keeps_its_dm_uuid() {
        let uuid = "mpath-36001405abc";
        assert_eq!(dm_identity(Path::new("/dev/dm-2"), "mpatha", uuid, &[]).unwrap(), format!("dm:{uuid}"));
        assert_eq!(dm_identity(Path::new("/dev/dm-2"), "mpatha", uuid, &[slave("sdc", None)]).unwrap(), format!("dm:{uuid}"));
        // Its partitions, whose map fell back (so no `wwid:` below), keep theirs.
        assert_eq!(dm_identity(Path::new("/dev/dm-3"), "mpatha1", "part1-mpath-36001405abc", &[slave("dm-2", None)]).unwrap(), "dm:part1-mpath-36001405abc");
    }

    #[test]
    fn other_device_mapper_devices_are_their_dm_uuid() {
        let below = [slave("sdc", Some("wwid:naa.6001405abc"))];
        for uuid in [
            "LVM-Xf3aBcDeFgHiJkLmNoPqRsTuVwXyZ0129kQaBcDeFgHiJkLmNoPqRsTuVwXyZ01",
            "CRYPT-LUKS2-0b5c5d1e11114222833344445555666-crypt1",
            "part1-LVM-Xf3aBcDeFg",
            "partx-mpath-3600",
            "part-mpath-3600",
            "mpathx",
        ] {
            assert_eq!(dm_identity(Path::new("/dev/dm-1"), "x", uuid, &below).unwrap(), format!("dm:{uuid}"), "{uuid}");
        }
        assert_eq!(multipath_kind("part12-mpath-3600"), Some(Multipath::Partition("12")));
        assert_eq!(multipath_kind("mpath-3600"), Some(Multipath::Map));
    }

    /// A sysfs-like tree in a scratch directory: two SCSI paths to one LUN
    /// (sdc with a partition sdc1, sdd), a multipath map dm-0 over them, a
    /// kpartx partition dm-1 of the map, and /dev/block/M:m links to all.
    fn fake_sysfs(root: &Path, wwid_sdd: &str) {
        let file = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{text}\n")).unwrap();
        };
        let link = |path: &str, target: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, path).unwrap();
        };
        file("devices/host0/block/sdc/device/wwid", "naa.6001405abc");
        file("devices/host0/block/sdc/sdc1/partition", "1");
        file("devices/host1/block/sdd/device/wwid", wwid_sdd);
        file("devices/virtual/block/dm-0/dm/uuid", "mpath-36001405abc");
        file("devices/virtual/block/dm-0/dm/name", "mpatha");
        link("devices/virtual/block/dm-0/slaves/sdc", "../../../../host0/block/sdc");
        link("devices/virtual/block/dm-0/slaves/sdd", "../../../../host1/block/sdd");
        file("devices/virtual/block/dm-1/dm/uuid", "part1-mpath-36001405abc");
        file("devices/virtual/block/dm-1/dm/name", "mpatha1");
        link("devices/virtual/block/dm-1/slaves/dm-0", "../../dm-0");
        for (dev, target) in [("8:32", "host0/block/sdc"), ("8:33", "host0/block/sdc/sdc1"), ("8:48", "host1/block/sdd"), ("253:0", "virtual/block/dm-0"), ("253:1", "virtual/block/dm-1")] {
            link(&format!("dev/block/{dev}"), &format!("../../devices/{target}"));
        }
    }

    #[test]
    fn a_multipath_map_and_its_partition_read_from_sysfs_are_their_raw_paths() {
        let root = std::env::temp_dir().join(format!("hl-identity-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        fake_sysfs(&root.join("same"), "naa.6001405abc");
        fake_sysfs(&root.join("split"), "naa.6001405fff");
        let sys = |tree: &str, dev: &str| root.join(tree).join("dev/block").join(dev);
        let dm = |tree: &str, dev: &str| {
            let uuid = read_trimmed(&sys(tree, dev).join("dm/uuid")).unwrap();
            dm_device_identity(Path::new("/dev/mapper/x"), &sys(tree, dev), &uuid)
        };

        assert_eq!(raw_identity(&sys("same", "8:32")).unwrap(), "wwid:naa.6001405abc");
        assert_eq!(raw_identity(&sys("same", "8:48")).unwrap(), "wwid:naa.6001405abc");
        assert_eq!(dm("same", "253:0").unwrap(), "wwid:naa.6001405abc");
        assert_eq!(raw_identity(&sys("same", "8:33")).unwrap(), "wwid:naa.6001405abc-part1");
        assert_eq!(dm("same", "253:1").unwrap(), "wwid:naa.6001405abc-part1");

        // sdd is another LUN: the map and its partition are refused, naming both paths.
        for dev in ["253:0", "253:1"] {
            let msg = dm("split", dev).unwrap_err().to_string();
            assert!(msg.contains("multipath map mpatha ") && msg.contains("sdc: wwid:naa.6001405abc") && msg.contains("sdd: wwid:naa.6001405fff"), "{msg}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn uuids_are_formatted_as_blkid_shows_them() {
        let bytes = [0x0b, 0x5c, 0x5d, 0x1e, 0x11, 0x11, 0x42, 0x22, 0x83, 0x33, 0x44, 0x44, 0x55, 0x55, 0x66, 0x66];
        assert_eq!(format_uuid(&bytes), "0b5c5d1e-1111-4222-8333-444455556666");
        assert_eq!(format_uuid(&[0xab, 0xcd]), "abcd");
        assert_eq!(server_address("zz"), "zz");
    }
}
