//! Runs real highlanderd processes as "hosts" on one shared lockspace file,
//! each with its own host id, socket, state dir and log. Shared by
//! tests/daemon.rs, bench/daemon.rs and crates/plugin/tests/ffi.rs.


use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::client::{Client, ClientError};
use daemon::guest::Pidfd;
use proto::protocol::{Acquire, LeasesResult, Register, Release, Request, Resource, Status, Action};
use engine::Mode;

/// The directory holding our binaries: target/<profile>.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --all-targets` first", path.display());
    path
}

/// A fresh scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Writes an executable `fence-helper` shell script with `body` into `dir`.
pub fn fence_helper(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let helper = dir.join("fence-helper");
    std::fs::write(&helper, format!("#!/bin/sh\n{body}\n")).expect("write fence helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("make fence helper executable");
    helper
}

pub fn init_lockspace(path: &Path, io_ms: u64, resources: u32) {
    let mut o = engine::InitOptions::new("default");
    o.max_hosts = 8;
    o.resource_slots = resources;
    o.io_timeout = Duration::from_millis(io_ms);
    engine::init::init(path, &o).expect("init lockspace");
}

/// Polls `f` until it returns Some, or panics naming `what` at the deadline.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub struct Host {
    pub id: u32,
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub socket: PathBuf,
    /// Write `fail` here to make every lockspace I/O of this host fail.
    pub fault: PathBuf,
    pub log: PathBuf,
    /// Extra environment for the daemon process.
    pub env: Vec<(String, String)>,
    state: PathBuf,
    child: Option<Child>,
}

impl Host {
    /// Writes the host's config and starts it; `extra` is appended to the config.
    pub fn start(base: &Path, lockspace: &Path, id: u32, extra: &str) -> Host {
        let mut h = Host::configure(base, &format!("host{id}"), lockspace, &format!("host_id = {id}\nhost_name = host-{id}\n{extra}"));
        h.id = id;
        h.spawn();
        h
    }

    /// `start` as a deployment runs it, for the benchmarks: the state dir on
    /// tmpfs (/dev/shm here; /run/highlander in a deployment), and without
    /// the test fault hook, which reads the `fault` file before every I/O.
    pub fn start_as_deployed(base: &Path, lockspace: &Path, id: u32, extra: &str) -> Host {
        let name = format!("host{id}");
        let state = deployed_state_root().join(&name);
        let mut h = Host::configure_with_state(base, &name, lockspace, &format!("host_id = {id}\nhost_name = host-{id}\n{extra}"), &state);
        h.id = id;
        h.env.push(("HIGHLANDER_TEST_FAULT_FILE".into(), String::new()));
        h.spawn();
        h
    }

    /// Writes the config of a host with `host_id = auto` (its claim kept in
    /// its directory's `host-id`) in `base/NAME`, without starting it: start
    /// with `launch` + `wait_serving` (several at once) or `spawn`.
    pub fn auto(base: &Path, name: &str, lockspace: &Path, extra: &str) -> Host {
        let dir = base.join(name);
        Host::configure(base, name, lockspace, &format!("host_id = auto\nhost_id_file = {}\nhost_name = {name}\n{extra}", dir.join("host-id").display()))
    }

    fn configure(base: &Path, name: &str, lockspace: &Path, lines: &str) -> Host {
        Host::configure_with_state(base, name, lockspace, lines, &base.join(name).join("state"))
    }

    fn configure_with_state(base: &Path, name: &str, lockspace: &Path, lines: &str, state_dir: &Path) -> Host {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("highlanderd.conf");
        let socket = dir.join("hl.sock");
        std::fs::write(&conf, format!("{lines}\nlockspace = {}\nsocket = {}\nstate_dir = {}\n", lockspace.display(), socket.display(), state_dir.display())).unwrap();
        Host { id: 0, fault: dir.join("fault"), log: dir.join("highlanderd.log"), dir, conf, socket, env: Vec::new(), state: state_dir.to_owned(), child: None }
    }

    /// (Re)starts the daemon and waits until it answers.
    pub fn spawn(&mut self) {
        self.launch();
        self.wait_serving();
    }

    /// Starts the daemon process.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(bin("highlanderd"))
            .arg("--config")
            .arg(&self.conf)
            .env("HIGHLANDER_TEST_FAULT_FILE", &self.fault)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn highlanderd");
        self.child = Some(child);
    }

    /// Waits until the launched daemon answers; learns its host id.
    pub fn wait_serving(&mut self) {
        let log = self.log.clone();
        let status = wait_for(&format!("{} to serve (log: {})", self.dir.display(), log.display()), Duration::from_secs(20), || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("highlanderd {} exited at start-up ({status}):\n{}", self.dir.display(), std::fs::read_to_string(&log).unwrap_or_default());
            }
            self.try_call::<Status>(&Request::Status).ok()
        });
        self.id = status.host_id;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to highlanderd")
    }

    pub fn try_call<T: serde::de::DeserializeOwned>(&self, req: &Request) -> Result<T, ClientError> {
        Client::connect(&self.socket)?.call(req)
    }

    pub fn status(&self) -> Status {
        self.try_call(&Request::Status).expect("status")
    }

    /// Registers `pid` as guest `name` (from root, naming the pid) on a
    /// connection that is returned: it is the guest's restricted handle.
    pub fn register(&self, pid: u32, name: &str, action: Action) -> Client {
        let mut c = self.client();
        let r: LeasesResult = c.call(&Request::Register(register(pid, name, action))).expect("register");
        assert_eq!(r.pid, pid);
        c
    }

    pub fn acquire(&self, pid: u32, disks: &[(&str, Mode)], state: Option<String>) -> Result<LeasesResult, ClientError> {
        self.try_call(&Request::Acquire(Acquire { pid, resources: disks.iter().map(|(p, m)| Resource::path(*p, *m)).collect(), state, action: None }))
    }

    pub fn release_all(&self, pid: u32) -> LeasesResult {
        self.try_call(&Request::Release(Release { pid, resources: None })).expect("release")
    }

    /// SIGTERM, and wait for the exit.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "highlanderd host {} exited with {status}", self.id);
    }

    /// SIGKILL (a crash: no clean leave, nothing saved), and wait for the exit.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for the daemon to end (something else stops it); how it ended.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").wait().unwrap()
    }

    /// The daemon's state dir (saved table, host lease resume state).
    pub fn state_dir(&self) -> PathBuf {
        self.state.clone()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The pid of the fence sentinel answering for this host's lockspace
    /// "default", as the state dir's `fence-owner.json` names it.
    pub fn sentinel_pid(&self) -> u32 {
        let text = std::fs::read(self.state_dir().join("fence-owner.json")).expect("fence-owner.json");
        let owners: serde_json::Value = serde_json::from_slice(&text).unwrap();
        owners["default"]["sentinel_pid"].as_u64().expect("sentinel_pid") as u32
    }

    /// That fence sentinel, held by pidfd.
    pub fn sentinel(&self) -> Pidfd {
        let pid = self.sentinel_pid();
        let pidfd = Pidfd::open(pid).expect("the fence sentinel runs");
        // Opened first: if the command line is a sentinel's now, so is the pidfd.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(String::from_utf8_lossy(&cmdline).contains("--fence-sentinel"), "pid {pid} is no fence sentinel");
        pidfd
    }

    /// SIGKILLs the fence sentinel (as `systemctl kill --signal=KILL` would,
    /// with the daemon) and waits until it is gone.
    pub fn kill_sentinel(&self) {
        let sentinel = self.sentinel();
        sentinel.kill().unwrap();
        assert!(sentinel.wait_exit(Duration::from_secs(5)), "the fence sentinel survived SIGKILL");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where `Host::start_as_deployed` keeps this process's hosts' state; the
/// caller removes it when done.
pub fn deployed_state_root() -> PathBuf {
    Path::new("/dev/shm").join(format!("hl-bench-{}", std::process::id()))
}

pub fn register(pid: u32, name: &str, action: Action) -> Register {
    Register { pid: Some(pid), uuid: uuid_for(name), name: name.into(), uri: "qemu:///system".into(), action, resources: Vec::new(), state: None }
}

/// A stable UUID per guest name.
pub fn uuid_for(name: &str) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xfff, (h >> 20) & 0xfff, h & 0xffff_ffff_ffff)
}

/// A process standing in for a guest (QEMU); killed when dropped.
pub struct GuestProc(pub Child);

impl GuestProc {
    pub fn spawn() -> GuestProc {
        GuestProc(Command::new("sleep").arg("1000").spawn().expect("spawn sleep"))
    }
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for GuestProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
