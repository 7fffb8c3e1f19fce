//! The disk identity rules (docs/IDENTITY.md) on real files, loop devices
//! and mounts. Needs root for losetup and mount, as CI runs: a test that
//! cannot attach or mount fails naming the command; none skips. Mounts are
//! made in a mount namespace of the test's own thread, so the host never
//! sees them and none outlives the test.
//!
//! Device-mapper (multipath maps, their kpartx partitions, LVM) is not
//! tested here: the test sandbox's kernel has no device-mapper driver
//! (/dev/mapper/control, where present, fails with ENODEV), so no map can
//! be made. The multipath rule is a pure function over the dm uuid and the
//! identities of the devices under the map, unit-tested in
//! crates/identity/src/lib.rs together with its reading of a sysfs-like tree.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use identity::{of_path, IdentityError};

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("hl-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(std::fs::canonicalize(dir).unwrap())
    }
    fn join(&self, path: &str) -> PathBuf {
        self.0.join(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command and returns its output; panics naming it when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: cannot run ({e}); these tests need util-linux and e2fsprogs"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {}: {}; these tests need root", args.join(" "), stderr.trim());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A loop device over a file, detached at the end.
struct Loop(PathBuf);

impl Loop {
    fn attach(file: &Path) -> Loop {
        Loop(run("losetup", &["--find", "--show", text(file)]).into())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("--detach").arg(&self.0).status();
    }
}

/// A mount at `target` (created), unmounted at the end.
struct Mounted(PathBuf);

fn mount(args: &[&str], target: &Path) -> Mounted {
    std::fs::create_dir_all(target).unwrap();
    run("mount", &[args, &[text(target)]].concat());
    Mounted(target.to_owned())
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs `f` on a thread of its own in a new mount namespace in which
/// nothing propagates to the host's; the namespace, and whatever is still
/// mounted in it, ends with the thread.
fn in_private_mount_namespace<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare touches no memory; CLONE_NEWNS moves only the
            // calling thread (this one, made for it) to a new namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
            assert_eq!(rc, 0, "unshare(CLONE_NEWNS): {}; these tests need root", std::io::Error::last_os_error());
            run("mount", &["--make-rprivate", "/"]);
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A fresh ext4 image with a known UUID, attached to a loop device.
fn ext4_image(scratch: &Scratch, test: u32) -> (String, PathBuf, Loop) {
    let uuid = format!("{:08x}-1d4e-4a2b-8c3d-{test:012x}", std::process::id());
    let image = scratch.join("fs.img");
    std::fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
    run("mkfs.ext4", &["-q", "-F", "-U", &uuid, text(&image)]);
    let dev = Loop::attach(&image);
    // Where udev runs, let it make the /dev/disk/by-uuid link first.
    let _ = Command::new("udevadm").args(["settle", "--timeout=10"]).status();
    (uuid, image, dev)
}

/// Why a UUID filesystem might come out as `file:` on a test host.
const NO_UUID: &str = "fs:uuid needs udev's /dev/disk/by-uuid links or Linux 6.9 (FS_IOC_GETFSUUID); see docs/IDENTITY.md";

fn write_disk(path: &Path) -> u64 {
    std::fs::write(path, b"disk").unwrap();
    std::fs::metadata(path).unwrap().ino()
}

fn identity(path: &Path) -> String {
    of_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_symlink_or_dotdot_path_is_the_disk_it_leads_to() {
    let dir = Scratch::new("link");
    let disk = dir.join("disk.img");
    write_disk(&disk);
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(&disk, dir.join("link.img")).unwrap();
    std::os::unix::fs::symlink(&dir.0, dir.join("dirlink")).unwrap();
    let want = identity(&disk);
    for path in ["link.img", "dirlink/disk.img", "dirlink/link.img", "sub/../disk.img"] {
        assert_eq!(identity(&dir.join(path)), want, "{path}");
    }
    // Whatever rule the scratch directory's filesystem gets: its own, or the path.
    assert!(want.starts_with("fs:") || want == format!("file:{}", disk.display()), "{want}");
}

#[test]
fn a_missing_disk_is_a_clear_error() {
    let err = of_path(Path::new("/nonexistent/highlander/disk.img")).unwrap_err();
    assert!(matches!(err, IdentityError::Resolve { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/highlander/disk.img") && msg.contains("does not exist"), "{msg}");
    // `..` is taken after symlinks, as the kernel does: a missing `sub` is an error.
    let dir = Scratch::new("missing");
    write_disk(&dir.join("disk.img"));
    assert!(of_path(&dir.join("sub/../disk.img")).unwrap_err().to_string().contains("does not exist"));
}

#[test]
fn a_filesystem_is_one_disk_through_every_mount_symlink_and_its_loop_device() {
    let dir = Scratch::new("fs");
    in_private_mount_namespace(|| {
        let (uuid, image, dev) = ext4_image(&dir, 1);
        let _a = mount(&[text(&dev.0)], &dir.join("a"));
        let _b = mount(&[text(&dev.0)], &dir.join("b"));
        std::fs::create_dir(dir.join("a/vms")).unwrap();
        let ino = write_disk(&dir.join("a/vms/disk.img"));
        std::os::unix::fs::symlink(dir.join("b/vms/disk.img"), dir.join("link.img")).unwrap();

        let want = format!("fs:uuid:{uuid}:ino:{ino}");
        for path in ["a/vms/disk.img", "b/vms/disk.img", "link.img", "b/vms/../vms/disk.img"] {
            assert_eq!(identity(&dir.join(path)), want, "{path} ({NO_UUID})");
        }
        // A directory disk (<disk type='dir'>) is named the same way.
        let vms = std::fs::metadata(dir.join("a/vms")).unwrap().ino();
        assert_eq!(identity(&dir.join("b/vms")), format!("fs:uuid:{uuid}:ino:{vms}"));
        // The loop device holding the filesystem is its image file.
        assert_eq!(identity(&dev.0), identity(&image));
    });
}

#[test]
fn a_bind_mounted_directory_is_one_disk_at_both_paths() {
    let dir = Scratch::new("bind");
    in_private_mount_namespace(|| {
        let (uuid, _image, dev) = ext4_image(&dir, 2);
        let _fs = mount(&[text(&dev.0)], &dir.join("fs"));
        std::fs::create_dir_all(dir.join("fs/pool/vms")).unwrap();
        let ino = write_disk(&dir.join("fs/pool/vms/disk.img"));
        let _p = mount(&["--bind", text(&dir.join("fs/pool/vms"))], &dir.join("p"));
        let _q = mount(&["--bind", text(&dir.join("fs/pool"))], &dir.join("elsewhere/q"));

        let want = format!("fs:uuid:{uuid}:ino:{ino}");
        for path in ["fs/pool/vms/disk.img", "p/disk.img", "elsewhere/q/vms/disk.img"] {
            assert_eq!(identity(&dir.join(path)), want, "{path} ({NO_UUID})");
        }
    });
}

#[test]
fn two_loop_devices_over_one_file_are_that_file() {
    let dir = Scratch::new("loop");
    let file = dir.join("backing.img");
    std::fs::File::create(&file).unwrap().set_len(1 << 20).unwrap();
    let a = Loop::attach(&file);
    let b = Loop::attach(&file);
    assert_ne!(a.0, b.0);
    let want = identity(&file);
    assert_eq!(identity(&a.0), want);
    assert_eq!(identity(&b.0), want);
    assert!(!want.contains("/dev/loop"), "{want}");
}

#[test]
fn a_loop_device_over_a_deleted_or_replaced_file_is_refused() {
    let dir = Scratch::new("loopgone");
    let file = dir.join("backing.img");
    std::fs::File::create(&file).unwrap().set_len(1 << 20).unwrap();
    let dev = Loop::attach(&file);
    std::fs::remove_file(&file).unwrap();
    let refused = |what: &str| match of_path(&dev.0) {
        Err(e @ IdentityError::LoopBacking { .. }) => assert!(e.to_string().contains(text(&file)), "{e}"),
        other => panic!("{what}: {other:?}"),
    };
    refused("deleted");
    // Another file now has the name: it is not the disk the loop device holds.
    std::fs::File::create(&file).unwrap().set_len(1 << 20).unwrap();
    refused("replaced");
}

#[test]
fn a_file_on_tmpfs_is_this_machine_s_filesystem_and_inode_through_every_mount() {
    let dir = Scratch::new("tmpfs");
    in_private_mount_namespace(|| {
        let _t = mount(&["-t", "tmpfs", "tmpfs"], &dir.join("t"));
        let disk = dir.join("t/disk.img");
        let ino = write_disk(&disk);
        std::fs::create_dir(dir.join("t/sub")).unwrap();
        std::os::unix::fs::symlink(&disk, dir.join("link.img")).unwrap();
        let want = identity(&disk);
        assert!(want.starts_with("fs:local:") && want.ends_with(&format!(":ino:{ino}")), "{want}");
        // A bind mount is the same filesystem (it was another disk by path).
        let _u = mount(&["--bind", text(&dir.join("t"))], &dir.join("u"));
        for path in ["t/disk.img", "link.img", "t/sub/../disk.img", "u/disk.img"] {
            assert_eq!(identity(&dir.join(path)), want, "{path}");
        }
        // Another tmpfs is another filesystem, whatever its inode numbers.
        let _v = mount(&["-t", "tmpfs", "tmpfs"], &dir.join("v"));
        write_disk(&dir.join("v/disk.img"));
        assert_ne!(identity(&dir.join("v/disk.img")), want);
    });
}

#[test]
fn a_filesystem_without_a_uuid_is_named_by_its_device_through_every_mount() {
    let dir = Scratch::new("niluuid");
    in_private_mount_namespace(|| {
        let image = dir.join("fs.img");
        std::fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", "-U", "clear", text(&image)]);
        let dev = Loop::attach(&image);
        let _a = mount(&[text(&dev.0)], &dir.join("a"));
        let _b = mount(&["--bind", text(&dir.join("a"))], &dir.join("b"));
        let ino = write_disk(&dir.join("a/disk.img"));
        // (it was `file:<path>`: two paths, two disks)
        let want = format!("fs:dev:{}:ino:{ino}", identity(&image));
        assert_eq!(identity(&dir.join("a/disk.img")), want);
        assert_eq!(identity(&dir.join("b/disk.img")), want, "bind mount");
    });
}
