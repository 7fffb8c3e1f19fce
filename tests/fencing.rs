//! When fencing does not finish (issue 18), with real parts: a guest that
//! SIGKILL cannot end (its writes hang in D state on a loop device over a
//! file on a FUSE filesystem the test freezes), and a daemon that is alive
//! but hung (SIGSTOP). Real highlanderd processes as two hosts on one
//! lockspace file; timestamps are CLOCK_BOOTTIME, the clock of the lease
//! timeline, relative to host 1's last renewal. Needs root, /dev/fuse,
//! loop devices and python3-fusepy (scripts/setup.sh).

use testkit::daemon_harness as harness;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::*;
use engine::clock::Mono;
use proto::client::ClientError;
use daemon::guest::Pidfd;
use proto::protocol::{Acquire, Action, Code, LeasesResult, Request, Resource};
use engine::timing::Timeouts;
use proto::Mode;

/// Host `h`'s saved resume state: when its last successful renewal started.
fn last_renewal(h: &Host) -> Mono {
    engine::lockspace::saved_renewal(&engine::lockspace::resume_file(&h.state_dir(), "default")).expect("resume state").2
}

/// Acquires the disk by explicit identity: naming it by path would make the
/// daemon stat the loop device's backing file, on the frozen filesystem.
fn acquire(h: &Host, pid: u32, identity: &str, path: &str) -> Result<LeasesResult, ClientError> {
    let disk = Resource { path: Some(path.into()), identity: Some(identity.into()), mode: Mode::Exclusive, lockspace: None };
    h.try_call(&Request::Acquire(Acquire { pid, resources: vec![disk], state: None, action: None }))
}

/// The timeouts, a scratch directory and a lockspace file `ls` in it.
fn fresh(name: &str, io: Duration) -> (Timeouts, PathBuf, PathBuf) {
    let dir = scratch(name);
    let ls = dir.join("ls");
    init_lockspace(&ls, io.as_millis() as u64, 64);
    (Timeouts::new(io).unwrap(), dir, ls)
}

/// `now` once host 2's acquire succeeded; None while the disk is busy.
fn taken_at(acquired: Result<LeasesResult, ClientError>, now: Mono) -> Option<Mono> {
    match acquired {
        Ok(_) => Some(now),
        Err(ClientError::Refused(e)) if e.code == Code::Busy => None,
        Err(e) => panic!("host 2: {e}"),
    }
}

/// Whether SIGKILL is pending for `pid` (sent, not yet taken: the process
/// is stuck in the kernel).
fn sigkill_pending(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = status.lines().find_map(|l| l.strip_prefix("ShdPnd:")).and_then(|m| u64::from_str_radix(m.trim(), 16).ok()).unwrap_or(0);
    mask & (1 << (libc::SIGKILL - 1)) != 0
}

/// The process state letter of `pid` (R, S, D, Z, …).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()).unwrap_or('?')
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid this test started.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A guest whose disk is a loop device over a file on a FUSE filesystem
/// the test can freeze. Dropped in the order that leaves nothing stuck:
/// thaw, kill the guest, detach, unmount.
struct FrozenDisk {
    fuse: Child,
    mnt: PathBuf,
    dev: String,
    guest: Option<Child>,
}

impl FrozenDisk {
    fn new(dir: &Path) -> FrozenDisk {
        let (back, mnt) = (dir.join("back"), dir.join("mnt"));
        std::fs::create_dir_all(&back).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::File::create(back.join("disk.img")).unwrap().set_len(8 << 20).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/freezable_fs.py");
        let fuse = Command::new("/usr/bin/python3").arg(script).arg(&back).arg(&mnt).stdout(Stdio::null()).spawn().expect("start the FUSE filesystem");
        let mut disk = FrozenDisk { fuse, dev: String::new(), mnt: mnt.clone(), guest: None };
        let image = mnt.join("disk.img");
        wait_for("the FUSE filesystem to be mounted (needs python3-fusepy: scripts/setup.sh)", Duration::from_secs(10), || {
            assert!(disk.fuse.try_wait().unwrap().is_none(), "freezable_fs.py exited");
            image.exists().then_some(())
        });
        disk.dev = run(Command::new("losetup").args(["--find", "--show"]).arg(&image));
        // The guest: O_DIRECT writes to its disk, over and over, as QEMU's with cache=none.
        let writer = "import mmap, os, sys\n\
                      fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)\n\
                      buf = mmap.mmap(-1, 4096)\n\
                      i = 0\n\
                      while True:\n    os.pwrite(fd, buf, (i % 2048) * 4096)\n    i += 1\n";
        disk.guest = Some(Command::new("/usr/bin/python3").args(["-c", writer, &disk.dev]).spawn().expect("start the guest"));
        disk
    }

    fn guest_pid(&self) -> u32 {
        self.guest.as_ref().unwrap().id()
    }

    /// Stops the FUSE server: every I/O to the guest's disk now waits.
    fn freeze(&self) {
        signal(self.fuse.id(), libc::SIGSTOP);
    }

    fn thaw(&self) {
        signal(self.fuse.id(), libc::SIGCONT);
    }
}

impl Drop for FrozenDisk {
    fn drop(&mut self) {
        self.thaw();
        if let Some(mut g) = self.guest.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = self.fuse.kill();
        let _ = self.fuse.wait();
    }
}

/// Prints a timeline relative to `origin` (host 1's last renewal), in one
/// write to stdout itself: shown even when the test harness captures output.
fn timeline(title: &str, t: &Timeouts, origin: Mono, events: &[(&str, Mono)]) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let at = |m: Mono| format!("{:>+7.3} s = {:>5.2} T", (m.0 as f64 - origin.0 as f64) / 1e9, (m.0 as f64 - origin.0 as f64) / t.io_timeout.as_nanos() as f64);
    let mut text = format!("{title} (T = {:?}; 0 = host 1's last renewal):\n", t.io_timeout);
    let mut rows: Vec<(String, Mono)> = events.iter().map(|(what, m)| (what.to_string(), *m)).collect();
    for (what, d) in [("fence_begin", t.fence_begin), ("fence_deadline", t.fence_deadline), ("lease_expiry", t.lease_expiry), ("host_dead", t.host_dead)] {
        rows.push((format!("  ({what})"), origin.add(d)));
    }
    rows.sort_by_key(|(_, m)| *m);
    for (what, m) in rows {
        let _ = writeln!(text, "  {}  {what}", at(m));
    }
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

#[test]
fn a_guest_that_sigkill_cannot_end_makes_the_host_fence_itself_before_peers_take_over() {
    let io = Duration::from_millis(500);
    let (t, dir, ls) = fresh("fencing-stuck", io);
    let calls = dir.join("self-fence.calls");
    let recorder = fence_helper(&dir, &format!("echo \"$1\" >> {}", calls.display()));
    let a = Host::start(&dir, &ls, 1, &format!("self_fence = command {}", recorder.display()));
    let b = Host::start(&dir, &ls, 2, "");
    let mut disk = FrozenDisk::new(&dir);
    let guest = disk.guest_pid();
    let guest_fd = Pidfd::open(guest).unwrap();
    let taker = GuestProc::spawn();
    let _ha = a.register(guest, "stuck", Action::Poweroff);
    let _hb = b.register(taker.pid(), "taker", Action::Default);
    acquire(&a, guest, "frozen-disk", &disk.dev).unwrap();

    disk.freeze();
    let failed = Mono::now();
    std::fs::write(&a.fault, "fail").unwrap();
    // Last seen alive (by pidfd), SIGKILL first seen pending, self-fence run.
    let (mut alive, mut killed, mut fenced) = (Mono(0), None, None);
    let taken = wait_for("host 2 to take the disk over", Duration::from_secs(20), || {
        let now = Mono::now();
        if !guest_fd.exited() {
            alive = now;
        }
        if killed.is_none() && sigkill_pending(guest) {
            killed = Some(now);
        }
        if fenced.is_none() && std::fs::read_to_string(&calls).is_ok_and(|c| !c.is_empty()) {
            fenced = Some(now);
            assert!(!guest_fd.exited() && state(guest) == 'D', "the guest is no longer stuck when the host fences itself");
        }
        taken_at(acquire(&b, taker.pid(), "frozen-disk", &disk.dev), now)
    });
    let renewed = last_renewal(&a);
    let killed = killed.expect("host 1 sent the guest SIGKILL");
    let fenced = fenced.expect("host 1 ran its self_fence command before host 2 took the disk over");
    let at_deadline = renewed.add(t.fence_deadline);
    disk.thaw();
    let exited = wait_for("the guest to exit once its disk answers", Duration::from_secs(10), || guest_fd.exited().then(Mono::now));
    timeline(
        "stuck guest",
        &t,
        renewed,
        &[
            ("lockspace storage fails on host 1", failed),
            ("host 1: SIGKILL pending for the guest (stuck in D state)", killed),
            ("host 1: guest last seen alive (before the thaw)", alive),
            ("host 1: self_fence command ran", fenced),
            ("host 2: took the disk over", taken),
            ("guest exited after the FUSE filesystem thawed", exited),
        ],
    );
    let slack = io / 4;
    assert!(killed.add(slack) >= renewed.add(t.fence_begin) && killed < at_deadline, "SIGKILL at {:?} after the last renewal", killed.since(renewed));
    assert!(alive >= at_deadline, "the guest died before the deadline: nothing to test");
    assert!(fenced.add(slack) >= at_deadline && fenced < renewed.add(t.host_dead), "self-fence at {:?} after the last renewal", fenced.since(renewed));
    assert!(taken > fenced, "host 2 took the disk {:?} before host 1 fenced itself", fenced.since(taken));
    let code = disk.guest.take().unwrap().wait().unwrap();
    assert_eq!(code.signal(), Some(libc::SIGKILL), "{code}");
    let reason = std::fs::read_to_string(&calls).unwrap();
    assert!(reason.contains("guest \"stuck\"") && reason.contains("still alive at the fence deadline after SIGKILL"), "{reason}");
    // Logged, and shown by `status` of the daemon that did it.
    assert!(a.log_text().contains("ESCALATION on host 1 \"host-1\" by highlanderd"), "{}", a.log_text());
    let st = a.status();
    assert_eq!(st.escalations.len(), 1, "{st:?}");
    let e = &st.escalations[0];
    assert!(e.guests[0].contains("guest \"stuck\"") && e.action.contains("self_fence command") && e.action.ends_with("succeeded"), "{e:?}");
    let shown = run(Command::new(bin("highlander")).args(["status", "--socket"]).arg(&a.socket));
    assert!(shown.contains("ESCALATIONS") && shown.contains("self_fence command"), "{shown}");
    // The daemon, whose storage failed, was not mistaken for a hung one.
    assert!(!a.log_text().contains("alive but hung"), "{}", a.log_text());
}

#[test]
fn a_hung_daemon_is_killed_and_its_guests_fenced_by_the_sentinel_before_peers_take_over() {
    let io = Duration::from_millis(400);
    let (t, dir, ls) = fresh("fencing-hung", io);
    let mut a = Host::start(&dir, &ls, 1, "");
    let b = Host::start(&dir, &ls, 2, "");
    let d = dir.join("vm.img");
    std::fs::write(&d, b"disk").unwrap();
    let d = d.display().to_string();
    let (mut ga, gb) = (GuestProc::spawn(), GuestProc::spawn());
    let _ha = a.register(ga.pid(), "victim", Action::Poweroff);
    let _hb = b.register(gb.pid(), "taker", Action::Default);
    a.acquire(ga.pid(), &[(&d, Mode::Exclusive)], None).unwrap();
    let daemon = Pidfd::open(a.pid()).unwrap();

    let stopped = Mono::now();
    signal(a.pid(), libc::SIGSTOP);
    let (mut daemon_gone, mut guest_gone) = (None, None);
    let taken = wait_for("host 2 to take the disk over", Duration::from_secs(20), || {
        let now = Mono::now();
        if daemon_gone.is_none() && daemon.exited() {
            daemon_gone = Some(now);
        }
        if guest_gone.is_none() {
            if let Some(status) = ga.0.try_wait().unwrap() {
                assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
                guest_gone = Some(now);
            }
        }
        taken_at(b.acquire(gb.pid(), &[(&d, Mode::Exclusive)], None), now)
    });
    let renewed = last_renewal(&a);
    let daemon_gone = daemon_gone.expect("the sentinel killed the hung daemon before host 2 took the disk over");
    let guest_gone = guest_gone.expect("the guest was fenced before host 2 took its disk over");
    timeline(
        "hung daemon",
        &t,
        renewed,
        &[
            ("host 1: highlanderd SIGSTOPped", stopped),
            ("host 1: highlanderd gone (SIGKILL by its sentinel)", daemon_gone),
            ("host 1: guest gone (SIGKILL by the sentinel)", guest_gone),
            ("host 2: took the disk over", taken),
        ],
    );
    let slack = io / 4;
    assert!(daemon_gone.add(slack) >= renewed.add(t.fence_begin), "the daemon was killed {:?} before the fencing time", renewed.add(t.fence_begin).since(daemon_gone));
    assert!(daemon_gone <= guest_gone && guest_gone < renewed.add(t.lease_expiry), "guest gone {:?} after the last renewal", guest_gone.since(renewed));
    assert!(taken > guest_gone);
    let log = a.log_text();
    for want in ["fence-sentinel] highlanderd (pid", "is alive but hung: lockspace \"default\": no renewal for", "fence-sentinel] fenced: guest \"victim\""] {
        assert!(log.contains(want), "{want:?} missing from {log}");
    }
    // SIGCONT wakes nothing: the daemon is dead, host 2 alone holds the disk.
    signal(a.pid(), libc::SIGCONT);
    let status = a.wait();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(a.try_call::<proto::protocol::Status>(&Request::Status).is_err(), "the old daemon still answers");
    let held = b.status();
    assert!(held.leases.iter().any(|l| l.lease.path == d), "{held:?}");
    // A daemon started afterwards joins afresh: nothing of the old one is held.
    a.spawn();
    let st = a.status();
    assert!(!st.lockspaces[0].resumed && st.leases.is_empty(), "{st:?}");
}
