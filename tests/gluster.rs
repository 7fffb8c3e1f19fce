//! highlander on a real GlusterFS `replica 3 arbiter 1` volume (glusterd on
//! this machine, FUSE mounts at different paths standing in for hosts):
//! one identity per file on every mount, lockspaces refused on unsafe
//! volume options, and leases through brick failures.

use testkit::gluster;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gluster::Gluster;
use engine::clock::Mono;
use engine::{AcquireRequest, Health, Holder, JoinOptions, Lockspace, Mode};
use identity::netdisk::Identify;

fn scratch(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gluster-{name}-{}", std::process::id()))
}

/// A bed with the volume mounted at `<dir>/a` and `<dir>/b`.
fn bed(name: &str) -> (Gluster, PathBuf) {
    let dir = scratch(name);
    let mut g = Gluster::start(&dir.join("bed"), "hltest");
    g.mount(None, &dir.join("a"));
    g.mount(None, &dir.join("b"));
    (g, dir)
}

fn group_virt(g: &Gluster) {
    g.set(&["group", "virt"], |m| !gluster::volfile(m).contains("performance/quick-read") && gluster::direct_io(m));
}

#[test]
fn a_file_has_one_identity_through_every_mount_path_subdirectory_and_rename() {
    let (mut g, dir) = bed("identity");
    std::fs::create_dir(dir.join("a/vms")).unwrap();
    std::fs::write(dir.join("a/vms/disk.img"), b"guest").unwrap();
    std::fs::write(dir.join("a/vms/other.img"), b"other").unwrap();
    g.mount(Some("vms"), &dir.join("sub"));

    let id = identity::of_path(&dir.join("a/vms/disk.img")).unwrap();
    let volume_id = gluster_volume_id(&dir.join("a"));
    assert!(id.starts_with(&format!("gluster:{volume_id}:gfid:")), "{id}");
    assert_eq!(identity::of_path(&dir.join("b/vms/disk.img")).unwrap(), id, "second mount path");
    assert_eq!(identity::of_path(&dir.join("sub/disk.img")).unwrap(), id, "subdirectory mount");
    std::os::unix::fs::symlink(dir.join("b/vms/disk.img"), dir.join("link.img")).unwrap();
    assert_eq!(identity::of_path(&dir.join("link.img")).unwrap(), id, "symlink from outside the volume");
    std::fs::rename(dir.join("a/vms/disk.img"), dir.join("a/vms/renamed.img")).unwrap();
    assert_eq!(identity::of_path(&dir.join("sub/renamed.img")).unwrap(), id, "renamed");
    assert_ne!(identity::of_path(&dir.join("b/vms/other.img")).unwrap(), id, "another file");
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_gluster_url_disk_and_the_fuse_path_of_the_same_file_are_one_disk() {
    let (g, dir) = bed("gfapi");
    std::fs::create_dir(dir.join("a/vms")).unwrap();
    std::fs::write(dir.join("a/vms/web.qcow2"), b"guest").unwrap();
    let fuse = identity::of_path(&dir.join("b/vms/web.qcow2")).unwrap();
    let xml = format!("<domain><uuid>9e0beccb-857a-4154-8251-5df7cefef52a</uuid><devices><disk type='network' device='disk'><source protocol='gluster' name='{}/vms/web.qcow2'><host name='127.0.0.2' port='24007'/></source><target dev='vda'/></disk></devices></domain>", g.volume);
    let (_, disks) = identity::netdisk::from_domain_xml(&xml).unwrap();
    assert_eq!(disks[0].identity().unwrap(), fuse, "gluster:// and the FUSE path name the file differently");
    let missing = identity::netdisk::from_domain_xml(&xml.replace("web.qcow2", "absent.qcow2")).unwrap().1;
    let err = missing[0].identity().unwrap_err().to_string();
    assert!(err.contains("vda") && err.contains("looking up the file"), "{err}");
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What `gluster volume info` says the volume id is, to check the mount's own view.
fn gluster_volume_id(_mount: &Path) -> String {
    let out = std::process::Command::new("gluster").args(["--mode=script", "volume", "info", "hltest"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("Volume ID: ")).expect("gluster volume info names the volume id").trim().to_owned()
}

fn init(path: &Path, io_timeout: Duration) {
    let mut o = engine::InitOptions::new("gl");
    o.max_hosts = 4;
    o.resource_slots = 4;
    o.io_timeout = io_timeout;
    engine::init::init(path, &o).unwrap();
}

#[test]
fn a_lockspace_is_joined_only_once_the_volume_options_are_safe() {
    let (g, dir) = bed("options");
    let path = dir.join("a/lockspace");
    init(&path, Duration::from_secs(1));
    let refused = Lockspace::join(JoinOptions::new(&path, 1, "gl-a")).err().expect("joined a lockspace on default options");
    let text = refused.to_string();
    for needed in ["GlusterFS volume hltest", "performance.strict-o-direct must be on", "performance.quick-read is on (must be off)", "`gluster volume set hltest performance.strict-o-direct on`", "group virt"] {
        assert!(text.contains(needed), "missing {needed:?} in: {text}");
    }

    g.set(&["performance.strict-o-direct", "on"], gluster::direct_io);
    let text = Lockspace::join(JoinOptions::new(&path, 1, "gl-a")).err().expect("joined with quick-read on").to_string();
    assert!(text.contains("performance.quick-read is on") && !text.contains("strict-o-direct must"), "{text}");

    g.set(&["network.remote-dio", "enable"], |m| !gluster::direct_io(m));
    let text = Lockspace::join(JoinOptions::new(&path, 1, "gl-a")).err().expect("joined with remote-dio").to_string();
    assert!(text.contains("network.remote-dio must be disable") && text.contains("`gluster volume set hltest network.remote-dio disable`"), "{text}");

    group_virt(&g);
    let ls = join(JoinOptions::new(dir.join("b/lockspace"), 1, "gl-b"));
    ls.leave().unwrap();

    // group virt shards the volume; through a subdirectory mount of a
    // sharded volume, files read as zeros (the refusal's premise, checked).
    let mut g = g;
    std::fs::create_dir(dir.join("a/vms")).unwrap();
    init(&dir.join("a/vms/lockspace"), Duration::from_secs(1));
    g.mount(Some("vms"), &dir.join("sub"));
    let header = std::fs::read(dir.join("sub/lockspace")).unwrap();
    assert!(header[..512].iter().all(|&b| b == 0), "a sharded subdirectory mount read the header: the refusal below is needless");
    let text = Lockspace::join(JoinOptions::new(dir.join("sub/lockspace"), 1, "gl-sub")).err().expect("joined through a sharded subdirectory mount").to_string();
    assert!(text.contains("subdirectory 127.0.0.2:/hltest/vms of a sharded GlusterFS volume") && text.contains("Mount the volume itself"), "{text}");
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One writer on mount a, one reader on mount b, through the engine's own
/// O_DIRECT storage: how many of `rounds` reads miss the write just done.
fn stale_reads(dir: &Path, name: &str, rounds: u32) -> u32 {
    let a = dir.join("a").join(name);
    std::fs::write(&a, vec![0u8; 8192]).unwrap();
    let writer = engine::device::Device::open(&a, true, Some(512)).unwrap().configured(0, Duration::from_secs(10), None, 1);
    let reader = engine::device::Device::open(&dir.join("b").join(name), false, Some(512)).unwrap().configured(0, Duration::from_secs(10), None, 0);
    let mut stale = 0;
    for round in 0..rounds {
        let mut sector = vec![0u8; 512];
        sector[..4].copy_from_slice(&round.to_le_bytes());
        writer.write(1, &sector).unwrap();
        if reader.read(1, 1).unwrap()[..4] != round.to_le_bytes() {
            stale += 1;
        }
    }
    stale
}

#[test]
fn reads_across_mounts_are_stale_on_default_options_and_fresh_on_group_virt() {
    let (g, dir) = bed("stale");
    let rounds = 200;
    let default = stale_reads(&dir, "default", rounds);
    g.set(&["performance.strict-o-direct", "on"], gluster::direct_io);
    let strict_only = stale_reads(&dir, "strict", rounds);
    group_virt(&g);
    let virt = stale_reads(&dir, "virt", rounds);
    println!("stale O_DIRECT reads across two mounts, 8 KiB file, {rounds} rounds: default options {default}, strict-o-direct on {strict_only}, group virt {virt}");
    // The refusal's premise: the options it refuses do serve stale data here.
    assert!(default > 0, "default options gave no stale reads: the refusal would rest on nothing");
    assert!(strict_only > 0, "strict-o-direct alone gave no stale reads");
    assert_eq!(virt, 0, "group virt served stale reads");
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Joins as highlanderd does: a join the engine could not confirm on slow
/// storage (this machine is busy) is retried.
fn join(opts: JoinOptions) -> Lockspace {
    for _ in 0..5 {
        match Lockspace::join(opts.clone()) {
            Err(engine::Error::JoinUnconfirmed { .. }) => continue,
            other => return other.unwrap_or_else(|e| panic!("join {}: {e}", opts.paths[0].display())),
        }
    }
    panic!("join {}: unconfirmed five times", opts.paths[0].display())
}

fn exclusive(identity: &str) -> AcquireRequest {
    AcquireRequest { identity: identity.into(), mode: Mode::Exclusive, holder: Holder { uuid: [7; 16], name: "vm-1".into() }, expect_lver: None }
}

fn wait_health(ls: &Lockspace, what: &str, timeout: Duration, cond: impl Fn(&Health) -> bool) -> Health {
    let deadline = Instant::now() + timeout;
    loop {
        let h = ls.health();
        if cond(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "{what}: health still {h:?} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_brick_down_keeps_leases_and_two_down_fence_before_a_peer_takes_over() {
    let (g, dir) = bed("bricks");
    group_virt(&g);
    let io = Duration::from_secs(1);
    init(&dir.join("a/lockspace"), io);
    let t = engine::timing::Timeouts::new(io).unwrap();
    let a = join(JoinOptions::new(dir.join("a/lockspace"), 1, "gl-a"));
    let b = join(JoinOptions::new(dir.join("b/lockspace"), 2, "gl-b"));
    let lease = a.acquire(&exclusive("disk-1")).unwrap();

    // One data brick down: the two left are a majority; renewals go on.
    g.kill_brick(1);
    let since = Mono::now();
    while Mono::now().since(since) < t.host_dead {
        assert!(matches!(a.health(), Health::Healthy { .. }), "one brick down made host a {:?}", a.health());
        assert!(b.acquire(&exclusive("disk-1")).is_err(), "host b took disk-1 while host a held it");
        std::thread::sleep(t.renew_interval);
    }
    println!("one brick down for {:?}: host a stayed healthy, disk-1 stayed exclusive", t.host_dead);
    g.restart_bricks();
    let healing = Instant::now();
    g.wait_healed(Duration::from_secs(60));
    println!("brick 1 back: healed in {:.1} s, leases untouched", healing.elapsed().as_secs_f64());
    assert_eq!(a.who("disk-1").unwrap().map(|i| i.lver), Some(lease.lver), "disk-1's lease changed across the heal");

    // Two bricks down: no majority, no writes. Host a must fence its guests
    // before host b could take the disk over.
    g.kill_brick(1);
    g.kill_brick(2);
    let down = Mono::now();
    let (fence_at, valid_until) = match wait_health(&a, "host a failing with two bricks down", t.host_dead, |h| !matches!(h, Health::Healthy { .. })) {
        Health::Failing { fence_at, valid_until, .. } => (fence_at, valid_until),
        other => panic!("expected Failing, got {other:?}"),
    };
    // Bricks back only once host a's leases are void, so b may take over.
    wait_health(&a, "host a's lease void", 2 * t.host_dead, |h| matches!(h, Health::Lost { .. }) || Mono::now() > valid_until);
    g.restart_bricks();
    // Host b lost its own lease in the outage too: it rejoins, as highlanderd would.
    let predecessor = b.incarnation();
    b.stop();
    let mut rejoin = JoinOptions::new(dir.join("b/lockspace"), 2, "gl-b");
    rejoin.predecessor = Some(predecessor);
    let b = join(rejoin);
    let taken = loop {
        match b.acquire(&exclusive("disk-1")) {
            Ok(_) => break Mono::now(),
            Err(e) => {
                assert!(Mono::now().since(down) < 6 * t.host_dead, "host b never took disk-1 over: {e}");
                std::thread::sleep(t.renew_interval);
            }
        }
    };
    println!(
        "two bricks down at 0 s: host a fencing at {:.1} s, its leases void at {:.1} s; host b took disk-1 over at {:.1} s",
        fence_at.since(down).as_secs_f64(),
        valid_until.since(down).as_secs_f64(),
        taken.since(down).as_secs_f64()
    );
    assert!(fence_at < valid_until && valid_until < taken, "host b took disk-1 over before host a's leases were void");
    drop(lease);
    a.stop();
    let _ = b.leave();
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}
