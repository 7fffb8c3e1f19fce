//! A disk's stable identity: the same disk gets the same identity on every
//! host, whatever path each host uses to reach it.
//!
//! In order of preference:
//! - device-mapper (LVM, multipath, dm-crypt): `dm:<dm uuid>`
//! - SCSI/NVMe disks: `wwid:<wwid>` (a partition adds `-part<N>`)
//! - loop devices: the identity of the backing file
//! - anything else: `file:<canonical path>` (stable across hosts on a
//!   shared filesystem; inode numbers are not, so they are not used)

use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::format::IDENTITY_LEN;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("disk {path}: does not exist or cannot be resolved ({source}); check the path in the domain XML")]
    Resolve { path: PathBuf, source: std::io::Error },
    #[error("disk {path}: identity {identity:?} is longer than {IDENTITY_LEN} bytes; use a shorter path or give the identity explicitly")]
    TooLong { path: PathBuf, identity: String },
}

/// The identity of the disk at `path` (a file or a block device).
pub fn of_path(path: &Path) -> Result<String, IdentityError> {
    let resolve = |source| IdentityError::Resolve { path: path.to_owned(), source };
    let canonical = std::fs::canonicalize(path).map_err(resolve)?;
    let meta = std::fs::metadata(&canonical).map_err(resolve)?;
    let identity = if meta.file_type().is_block_device() {
        block_identity(&canonical, meta.rdev())?
    } else {
        None
    }
    .unwrap_or_else(|| format!("file:{}", canonical.display()));
    if identity.len() > IDENTITY_LEN {
        return Err(IdentityError::TooLong { path: path.to_owned(), identity });
    }
    Ok(identity)
}

/// A block device's identity from sysfs; None when it has no stable one.
fn block_identity(canonical: &Path, rdev: u64) -> Result<Option<String>, IdentityError> {
    let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", libc::major(rdev), libc::minor(rdev)));
    if let Some(uuid) = read_trimmed(&sys.join("dm/uuid")) {
        return Ok(Some(format!("dm:{uuid}")));
    }
    if let Some(backing) = read_trimmed(&sys.join("loop/backing_file")) {
        // The kernel appends " (deleted)" once the backing file is unlinked.
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(&backing);
        return of_path(Path::new(backing)).map(Some);
    }
    if let Some(wwid) = disk_wwid(&sys) {
        return Ok(Some(format!("wwid:{wwid}")));
    }
    // A partition: its disk's wwid plus the partition number.
    if let (Some(part), Some(wwid)) = (read_trimmed(&sys.join("partition")), disk_wwid(&sys.join(".."))) {
        return Ok(Some(format!("wwid:{wwid}-part{part}")));
    }
    log::debug!("{}: block device without dm uuid, wwid or loop backing file; identified by path", canonical.display());
    Ok(None)
}

fn disk_wwid(sys: &Path) -> Option<String> {
    read_trimmed(&sys.join("device/wwid")).or_else(|| read_trimmed(&sys.join("wwid")))
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hl-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn files_are_named_by_canonical_path() {
        let dir = scratch("file");
        let disk = dir.join("disk.img");
        std::fs::write(&disk, b"x").unwrap();
        std::os::unix::fs::symlink(&disk, dir.join("link.img")).unwrap();
        let canonical = std::fs::canonicalize(&disk).unwrap();
        let want = format!("file:{}", canonical.display());
        assert_eq!(of_path(&disk).unwrap(), want);
        assert_eq!(of_path(&dir.join("link.img")).unwrap(), want);
        assert!(of_path(&dir.join("sub/../disk.img")).unwrap_err().to_string().contains("does not exist"));
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert_eq!(of_path(&dir.join("sub/../disk.img")).unwrap(), want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_disk_is_a_clear_error() {
        let err = of_path(Path::new("/nonexistent/highlander/disk.img")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/highlander/disk.img"), "{err}");
    }

    /// Attaches `file` to a free loop device; None when losetup is unusable
    /// here (not root, no loop support), so the test is skipped.
    fn attach(file: &Path) -> Option<String> {
        let out = Command::new("losetup").args(["--find", "--show"]).arg(file).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn detach(dev: &str) {
        let _ = Command::new("losetup").args(["--detach", dev]).status();
    }

    #[test]
    fn two_loop_devices_over_one_file_are_one_disk() {
        let dir = scratch("loop");
        let file = dir.join("backing.img");
        std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
        let Some(a) = attach(&file) else {
            eprintln!("skipped: losetup is not usable here");
            return;
        };
        let b = attach(&file);
        let result = std::panic::catch_unwind(|| {
            let b = b.as_deref().expect("second loop device");
            let want = format!("file:{}", std::fs::canonicalize(&file).unwrap().display());
            assert_ne!(a, b);
            assert_eq!(of_path(Path::new(&a)).unwrap(), want);
            assert_eq!(of_path(Path::new(b)).unwrap(), want);
        });
        detach(&a);
        if let Some(b) = &b {
            detach(b);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        result.unwrap();
    }
}
