//! Block devices from sysfs: SCSI/NVMe WWIDs, device-mapper UUIDs and
//! multipath maps, a loop device's backing file.

use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::IdentityError;

/// A SCSI/NVMe disk's `wwid:<wwid>`, or a partition's: its disk's wwid
/// plus the partition number. `sys` is the device's directory in sysfs.
pub(crate) fn raw_identity(sys: &Path) -> Option<String> {
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
pub(crate) fn dm_device_identity(path: &Path, sys: &Path, uuid: &str) -> Result<String, IdentityError> {
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
pub(crate) struct Slave {
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
pub(crate) fn dm_identity(path: &Path, map: &str, uuid: &str, slaves: &[Slave]) -> Result<String, IdentityError> {
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

pub(crate) fn disk_wwid(sys: &Path) -> Option<String> {
    read_trimmed(&sys.join("device/wwid")).or_else(|| read_trimmed(&sys.join("wwid")))
}

pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

pub(crate) fn same_dev(a: u64, b: u64) -> bool {
    (libc::major(a), libc::minor(a)) == (libc::major(b), libc::minor(b))
}

/// `struct loop_info64` from linux/loop.h; only the first two fields are read.
#[repr(C)]
pub(crate) struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    _rest: [u8; 216],
}

pub(crate) const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;

/// The (device, inode) of the file behind a loop device.
pub(crate) fn loop_status(dev: &Path) -> std::io::Result<(u64, u64)> {
    let file = std::fs::File::open(dev)?;
    let mut info = LoopInfo64 { lo_device: 0, lo_inode: 0, _rest: [0; 216] };
    // SAFETY: LOOP_GET_STATUS64 writes one struct loop_info64 (232 bytes),
    // which LoopInfo64 matches in size, with the two fields read in place.
    if unsafe { libc::ioctl(file.as_raw_fd(), LOOP_GET_STATUS64, &mut info) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((info.lo_device, info.lo_inode))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
