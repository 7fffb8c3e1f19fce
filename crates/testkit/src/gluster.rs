//! A real GlusterFS test bed: glusterd on this machine (its state in a
//! scratch directory, listening on 127.0.0.2), one `replica 3 arbiter 1`
//! volume with bricks in the scratch directory, and FUSE mounts of it. One
//! bed at a time per machine (glusterd's port and socket are global): the
//! bed holds an exclusive lock while it lives. Dropping it unmounts, stops
//! and deletes the volume and stops every gluster process it started, by pid.


use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOST: &str = "127.0.0.2";
/// Survives a crashed test run, so the next one can stop what it left.
const RECORD: &str = "/run/highlander-test-glusterd.pid";
const LOCK: &str = "/run/highlander-test-gluster.lock";

pub struct Gluster {
    dir: PathBuf,
    pub volume: String,
    glusterd: u32,
    mounts: Vec<PathBuf>,
    _lock: File,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/setup.sh installs glusterfs-server, glusterfs-client and attr)"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli(args: &[&str]) -> String {
    run(Command::new("gluster").arg("--mode=script").args(args))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

fn stop_pid(pid: u32) {
    // SAFETY: kill(2) with a pid this bed recorded as a gluster process it started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        // SAFETY: as above.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// Polls `what` until it holds; gluster applies changes asynchronously.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "gluster: {what} not seen within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Gluster {
    /// glusterd and a started `replica 3 arbiter 1` volume `volume`, its
    /// state under `dir`.
    pub fn start(dir: &Path, volume: &str) -> Gluster {
        let lock = File::create(LOCK).unwrap();
        // SAFETY: flock on a file descriptor we own.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        Self::stop_leftover();
        let _ = std::fs::remove_dir_all(dir);
        let wd = dir.join("glusterd");
        std::fs::create_dir_all(wd.join("groups")).unwrap();
        std::fs::create_dir_all(dir.join("bricks")).unwrap();
        // The option groups (`group virt`) glusterd reads from its working directory.
        for entry in std::fs::read_dir("/var/lib/glusterd/groups").expect("glusterfs-server installs /var/lib/glusterd/groups").flatten() {
            std::fs::copy(entry.path(), wd.join("groups").join(entry.file_name())).unwrap();
        }
        let vol = dir.join("glusterd.vol");
        std::fs::write(
            &vol,
            format!(
                "volume management\n    type mgmt/glusterd\n    option working-directory {}\n    option transport-type socket\n    option transport.socket.bind-address {HOST}\n    option ping-timeout 0\n    option event-threads 1\nend-volume\n",
                wd.display()
            ),
        )
        .unwrap();
        let pidfile = dir.join("glusterd.pid");
        run(Command::new("glusterd").arg("-f").arg(&vol).arg("-p").arg(&pidfile).arg("-l").arg(dir.join("glusterd.log")).arg("--log-level=WARNING"));
        let glusterd: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        std::fs::write(RECORD, format!("{glusterd}\n{volume}\n")).unwrap();
        let bed = Gluster { dir: dir.to_owned(), volume: volume.to_owned(), glusterd, mounts: Vec::new(), _lock: lock };
        wait_until("glusterd answering", Duration::from_secs(20), || Command::new("gluster").args(["--mode=script", "pool", "list"]).output().is_ok_and(|o| o.status.success()));
        let bricks: Vec<String> = (1..=3).map(|i| format!("{HOST}:{}", bed.brick(i).display())).collect();
        let mut args = vec!["volume", "create", volume, "replica", "3", "arbiter", "1"];
        args.extend(bricks.iter().map(String::as_str));
        args.push("force");
        cli(&args);
        cli(&["volume", "start", volume]);
        bed
    }

    /// Stops what a crashed earlier run left: its volume and glusterd.
    fn stop_leftover() {
        let Ok(text) = std::fs::read_to_string(RECORD) else { return };
        let mut lines = text.lines();
        let (Some(Ok(pid)), Some(volume)) = (lines.next().map(str::parse::<u32>), lines.next()) else { return };
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "glusterd") {
            let bed_pids = brick_and_shd_pids(volume);
            let _ = Command::new("gluster").args(["--mode=script", "volume", "stop", volume, "force"]).output();
            let _ = Command::new("gluster").args(["--mode=script", "volume", "delete", volume]).output();
            bed_pids.into_iter().for_each(stop_pid);
            stop_pid(pid);
        }
        let _ = std::fs::remove_file(RECORD);
    }

    pub fn brick(&self, i: u32) -> PathBuf {
        self.dir.join(format!("bricks/b{i}"))
    }

    /// FUSE-mounts the volume (or `subdir` of it) at `at`.
    pub fn mount(&mut self, subdir: Option<&str>, at: &Path) {
        std::fs::create_dir_all(at).unwrap();
        let source = match subdir {
            Some(sub) => format!("{HOST}:/{}/{sub}", self.volume),
            None => format!("{HOST}:/{}", self.volume),
        };
        run(Command::new("mount").args(["-t", "glusterfs", &source]).arg(at));
        self.mounts.push(at.to_owned());
    }

    /// `gluster volume set VOLUME …`, then waits until every mount shows it:
    /// `applied(mount)` (clients apply changes asynchronously).
    pub fn set(&self, args: &[&str], applied: impl Fn(&Path) -> bool) {
        let mut all = vec!["volume", "set", &self.volume];
        all.extend_from_slice(args);
        cli(&all);
        for m in &self.mounts {
            wait_until(&format!("{args:?} on {}", m.display()), Duration::from_secs(30), || applied(m));
        }
    }

    /// The brick processes' pids, brick 1 first.
    pub fn brick_pids(&self) -> Vec<u32> {
        (1..=3)
            .map(|i| {
                let name = format!("{HOST}-{}.pid", self.brick(i).display().to_string().trim_start_matches('/').replace('/', "-"));
                let file = PathBuf::from(format!("/var/run/gluster/vols/{}/{name}", self.volume));
                std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).trim().parse().unwrap()
            })
            .collect()
    }

    pub fn kill_brick(&self, i: u32) {
        let pid = self.brick_pids()[i as usize - 1];
        // SAFETY: kill(2) on the pid of a brick process of this bed's volume.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
        wait_until(&format!("brick {i} (pid {pid}) gone"), Duration::from_secs(10), || !alive(pid));
    }

    /// Restarts dead bricks (`volume start force`) and waits until every
    /// mount is connected to all three again.
    pub fn restart_bricks(&self) {
        cli(&["volume", "start", &self.volume, "force"]);
        for m in &self.mounts {
            let dump = m.join(format!(".meta/graphs/active/{}-replicate-0/private", self.volume));
            wait_until(&format!("{} reconnected to every brick", m.display()), Duration::from_secs(60), || {
                std::fs::read_to_string(&dump).is_ok_and(|t| (0..3).all(|i| t.contains(&format!("child_up[{i}] = 1"))))
            });
        }
    }
}

/// The client graph `mount` runs, as built.
pub fn volfile(mount: &Path) -> String {
    std::fs::read_to_string(identity::gluster::volfile_path(mount)).unwrap_or_default()
}

/// Whether an O_DIRECT write on `mount` reaches the bricks now.
pub fn direct_io(mount: &Path) -> bool {
    identity::gluster::direct_io_honoured(&mount.join(format!(".probe-{}", std::process::id()))).unwrap()
}

impl Gluster {
    /// Waits until self-heal reports no entry left to heal on any brick.
    pub fn wait_healed(&self, timeout: Duration) {
        wait_until("self-heal done (`gluster volume heal VOLUME info` all 0)", timeout, || {
            let Ok(out) = Command::new("gluster").args(["--mode=script", "volume", "heal", &self.volume, "info"]).output() else { return false };
            let text = String::from_utf8_lossy(&out.stdout);
            let counts: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("Number of entries:")).map(str::trim).collect();
            counts.len() == 3 && counts.iter().all(|c| *c == "0")
        });
    }
}

fn brick_and_shd_pids(volume: &str) -> Vec<u32> {
    let Ok(out) = Command::new("gluster").args(["--mode=script", "volume", "status", volume, "--xml"]).output() else { return Vec::new() };
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("<pid>").skip(1).filter_map(|s| s.split('<').next()?.trim().parse().ok()).filter(|&p: &u32| p > 0).collect()
}

impl Drop for Gluster {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let pids = brick_and_shd_pids(&self.volume);
        let _ = Command::new("gluster").args(["--mode=script", "volume", "stop", &self.volume, "force"]).output();
        let _ = Command::new("gluster").args(["--mode=script", "volume", "delete", &self.volume]).output();
        pids.into_iter().for_each(stop_pid);
        stop_pid(self.glusterd);
        let _ = std::fs::remove_file(RECORD);
    }
}
