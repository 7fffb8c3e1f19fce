//! highlander.so driven through its C ABI the way libvirt drives it.
//!
//! The built `libhighlander.so` is copied and `dlopen`ed (RTLD_NOW |
//! RTLD_LOCAL, as libvirt's loader does), `virLockDriverImpl` is looked up,
//! and its callbacks are called with the parameters libvirt passes
//! (src/locking/domain_lock.c), against a real `highlanderd` on a real
//! lockspace file. The structs below are written from libvirt's ABI
//! (/work/shared/docs/libvirt-lock-driver-facts.md §1), not from the
//! plugin's bindings, so a layout mistake on either side shows.
//!
//! `cargo test` builds the plugin's library; the first test to need them
//! runs `cargo build` for `highlanderd` and the library (a no-op when they
//! are fresh) into the same target directory.
//!
//! No libvirt runs in this process, so the plugin's error helper is absent
//! and it writes each message to stderr as `highlander: MESSAGE` (where a
//! libvirt child's stderr is the domain log). A test that checks a message
//! runs its FFI part in a child process (this test binary, re-executed for
//! that one test) and reads the child's stderr.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use proto::client::Client;
use proto::protocol::Request;
use serde_json::Value;

use testkit::daemon_harness as harness;
use harness::{init_lockspace, scratch, GuestProc, Host};

// ---- libvirt's lock-driver ABI (x86_64 / LP64) ----

const USES_STATE: c_uint = 1;
const LIBVIRT_VERSION: c_uint = 1_000_000;
const OBJECT_DOMAIN: c_uint = 0;
const NEW_STARTED: c_uint = 1;
const RES_DISK: c_uint = 0;
const RES_LEASE: c_uint = 1;
const RES_READONLY: c_uint = 1;
const REGISTER_ONLY: c_uint = 1;
const RESTRICT: c_uint = 2;
const PARAM_STRING: c_int = 0;
const PARAM_CSTRING: c_int = 1;
const PARAM_UINT: c_int = 4;
const PARAM_ULONG: c_int = 5;
const PARAM_UUID: c_int = 7;
const FAILURE_DEFAULT: c_int = 0;
const FAILURE_POWEROFF: c_int = 1;

#[repr(C)]
struct Driver {
    version: c_uint,
    flags: c_uint,
    init: Option<unsafe extern "C" fn(c_uint, *const c_char, c_uint) -> c_int>,
    deinit: Option<unsafe extern "C" fn() -> c_int>,
    new: Option<unsafe extern "C" fn(*mut LockManager, c_uint, usize, *mut Param, c_uint) -> c_int>,
    free: Option<unsafe extern "C" fn(*mut LockManager)>,
    add_resource: Option<unsafe extern "C" fn(*mut LockManager, c_uint, *const c_char, usize, *mut Param, c_uint) -> c_int>,
    acquire: Option<unsafe extern "C" fn(*mut LockManager, *const c_char, c_uint, c_int, *mut c_int) -> c_int>,
    release: Option<unsafe extern "C" fn(*mut LockManager, *mut *mut c_char, c_uint) -> c_int>,
    inquire: Option<unsafe extern "C" fn(*mut LockManager, *mut *mut c_char, c_uint) -> c_int>,
}

#[repr(C)]
struct LockManager {
    driver: *const Driver,
    private_data: *mut c_void,
}

#[repr(C)]
#[derive(Clone, Copy)]
union ParamValue {
    iv: c_int,
    l: i64,
    ui: c_uint,
    ul: u64,
    d: f64,
    str_: *const c_char,
    uuid: [u8; 16],
}

#[repr(C)]
struct Param {
    type_: c_int,
    key: *const c_char,
    value: ParamValue,
}

impl Param {
    fn new(type_: c_int, key: &'static CStr, value: ParamValue) -> Param {
        Param { type_, key: key.as_ptr(), value }
    }
    fn str(type_: c_int, key: &'static CStr, s: Option<&CStr>) -> Param {
        Param::new(type_, key, ParamValue { str_: s.map_or(std::ptr::null(), CStr::as_ptr) })
    }
}

// ---- the built artifacts ----

/// Set in a child process running one test's FFI part.
const CHILD: &str = "HL_FFI_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

struct Artifacts {
    lib: PathBuf,
    daemon: PathBuf,
}

/// target/<profile>/{libhighlander.so, highlanderd}, built first.
fn artifacts() -> &'static Artifacts {
    static A: OnceLock<Artifacts> = OnceLock::new();
    A.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let deps = exe.parent().expect("target/<profile>/deps");
        let profile_dir = deps.parent().expect("target/<profile>").to_owned();
        if !in_child() {
            let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => "dev".to_owned(),
                Some(other) => other.to_owned(),
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "--profile", &profile, "-p", "highlander-daemon", "--bin", "highlanderd", "-p", "highlander-plugin", "--lib", "--target-dir"])
                .arg(profile_dir.parent().expect("target dir"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build of highlanderd and libhighlander.so failed ({status})");
        }
        let a = Artifacts { lib: profile_dir.join("libhighlander.so"), daemon: profile_dir.join("highlanderd") };
        for p in [&a.lib, &a.daemon] {
            assert!(p.exists(), "{} is missing after cargo build", p.display());
        }
        a
    })
}

/// Runs test `name` of this binary in a child process with `env`, checks
/// it passed, and returns its stderr.
fn run_child(name: &str, env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"]).env(CHILD, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the test binary");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success() && stdout.contains("1 passed"), "child run of {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
    stderr
}

fn env_path(key: &str) -> PathBuf {
    std::env::var_os(key).unwrap_or_else(|| panic!("{key} not set")).into()
}

// ---- the plugin, loaded like libvirt loads it ----

struct Plugin {
    drv: *const Driver,
}

// SAFETY: the driver table is immutable static data of a library that is
// never unloaded; the plugin promises its callbacks are thread-safe, which
// is what the tests check.
unsafe impl Send for Plugin {}
// SAFETY: as for Send.
unsafe impl Sync for Plugin {}

impl Plugin {
    /// Copies the library to a path of its own and dlopens the copy: each
    /// copy is a separate object to the loader (own inode), so each load
    /// gets fresh statics, as a second libvirt driver's load would not.
    fn load(tag: &str) -> Plugin {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-libs");
        fs::create_dir_all(&dir).unwrap();
        let copy = dir.join(format!("highlander-{tag}-{}.so", std::process::id()));
        fs::copy(&artifacts().lib, &copy).expect("copy the plugin");
        let path = CString::new(copy.to_str().unwrap()).unwrap();
        // SAFETY: dlopen/dlsym with NUL-terminated strings; the library's
        // constructors are Rust's (none with side effects).
        let drv = unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(!handle.is_null(), "dlopen {}: {:?}", copy.display(), CStr::from_ptr(libc::dlerror()));
            let sym = libc::dlsym(handle, c"virLockDriverImpl".as_ptr());
            assert!(!sym.is_null(), "virLockDriverImpl is not exported");
            sym as *const Driver
        };
        // The mapping stays; the file is not needed any more.
        let _ = fs::remove_file(&copy);
        Plugin { drv }
    }

    fn drv(&self) -> &Driver {
        // SAFETY: points to the library's static table, never unloaded.
        unsafe { &*self.drv }
    }

    /// drvInit as libvirt's loader calls it.
    fn init(&self, conf: Option<&Path>) -> c_int {
        let conf = conf.map(|p| CString::new(p.to_str().unwrap()).unwrap());
        // SAFETY: a valid C string or NULL, as libvirt passes.
        unsafe { self.drv().init.unwrap()(LIBVIRT_VERSION, conf.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()), 0) }
    }

    /// libvirt's virDomainLockManagerNew + one AddResource per resource.
    /// Err(which call failed).
    fn object(&self, dom: &Dom, resources: &[Res], new_flags: c_uint) -> Result<Object<'_>, &'static str> {
        let name = CString::new(dom.name.as_str()).unwrap();
        let uri = dom.uri.map(|u| CString::new(u).unwrap());
        let mut params = [
            Param::new(PARAM_UUID, c"uuid", ParamValue { uuid: dom.uuid }),
            Param::str(PARAM_STRING, c"name", Some(&name)),
            Param::new(PARAM_UINT, c"id", ParamValue { iv: 1 }),
            Param::new(PARAM_UINT, c"pid", ParamValue { iv: dom.pid as c_int }),
            Param::str(PARAM_CSTRING, c"uri", uri.as_deref()),
        ];
        self.object_with(&mut params, resources, new_flags)
    }

    fn object_with(&self, params: &mut [Param], resources: &[Res], new_flags: c_uint) -> Result<Object<'_>, &'static str> {
        let mut man = Box::new(LockManager { driver: self.drv, private_data: std::ptr::null_mut() });
        // SAFETY: `man` and `params` are valid for the call, as libvirt's are.
        if unsafe { self.drv().new.unwrap()(&mut *man, OBJECT_DOMAIN, params.len(), params.as_mut_ptr(), new_flags) } != 0 {
            assert!(man.private_data.is_null(), "a failed drvNew left private data behind");
            return Err("drvNew");
        }
        let mut obj = Object { plugin: self, man };
        for r in resources {
            let rc = match r {
                Res::Disk(path, flags) => {
                    let p = CString::new(path.to_str().unwrap()).unwrap();
                    // SAFETY: as libvirt: a disk has a path and no params.
                    unsafe { self.drv().add_resource.unwrap()(&mut *obj.man, RES_DISK, p.as_ptr(), 0, std::ptr::null_mut(), *flags) }
                }
                Res::Lease { key, lockspace } => {
                    let k = CString::new(*key).unwrap();
                    let target = c"/var/lib/highlander/default.lockspace";
                    let ls = lockspace.map(|l| CString::new(l).unwrap());
                    let mut lp = vec![Param::str(PARAM_STRING, c"path", Some(target)), Param::new(PARAM_ULONG, c"offset", ParamValue { ul: 0 })];
                    // libvirt omits the param when <lockspace> is absent.
                    if let Some(ls) = &ls {
                        lp.push(Param::str(PARAM_STRING, c"lockspace", Some(ls)));
                    }
                    // SAFETY: params valid for the call.
                    unsafe { self.drv().add_resource.unwrap()(&mut *obj.man, RES_LEASE, k.as_ptr(), lp.len(), lp.as_mut_ptr(), 0) }
                }
            };
            if rc != 0 {
                return Err("drvAddResource"); // `obj` drops: drvFree, as libvirt does
            }
        }
        Ok(obj)
    }
}

/// The domain a lock object is about.
struct Dom<'a> {
    uuid: [u8; 16],
    name: String,
    pid: u32,
    uri: Option<&'a str>,
}

impl Dom<'_> {
    fn new(name: &str, pid: u32) -> Dom<'static> {
        let mut uuid = [0u8; 16];
        for (i, b) in name.bytes().enumerate() {
            uuid[i % 16] ^= b;
        }
        uuid[15] ^= 0x5a;
        Dom { uuid, name: name.to_owned(), pid, uri: Some("qemu:///system") }
    }
}

enum Res<'a> {
    Disk(&'a Path, c_uint),
    Lease { key: &'a str, lockspace: Option<&'a str> },
}

/// One libvirt lock object; drvFree when dropped.
struct Object<'p> {
    plugin: &'p Plugin,
    man: Box<LockManager>,
}

impl Object<'_> {
    /// drvAcquire; returns (rc, *fd) with *fd preset to -1 as libvirt does.
    fn acquire(&mut self, state: Option<&str>, flags: c_uint, action: c_int) -> (c_int, c_int) {
        let state = state.map(|s| CString::new(s).unwrap());
        let mut fd: c_int = -1;
        // SAFETY: valid object, state and fd pointers for the call.
        let rc = unsafe { self.plugin.drv().acquire.unwrap()(&mut *self.man, state.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()), flags, action, &mut fd) };
        (rc, fd)
    }

    /// drvRelease as a pause calls it (wanting the state back).
    fn release(&mut self) -> (c_int, Option<String>) {
        let f = self.plugin.drv().release.unwrap();
        // SAFETY: valid object and out pointer.
        take_state(|out| unsafe { f(&mut *self.man, out, 0) })
    }

    /// drvRelease as a detach calls it (no state pointer).
    fn detach(&mut self) -> c_int {
        let f = self.plugin.drv().release.unwrap();
        // SAFETY: valid object; libvirt's detach passes a NULL state pointer.
        unsafe { f(&mut *self.man, std::ptr::null_mut(), 0) }
    }

    fn inquire(&mut self) -> (c_int, Option<String>) {
        let f = self.plugin.drv().inquire.unwrap();
        // SAFETY: valid object and out pointer.
        take_state(|out| unsafe { f(&mut *self.man, out, 0) })
    }
}

/// Calls `f` with a `char **` and takes the string it leaves, freeing it
/// with free() as libvirt's g_free does.
fn take_state(f: impl FnOnce(*mut *mut c_char) -> c_int) -> (c_int, Option<String>) {
    let mut out: *mut c_char = std::ptr::null_mut();
    let rc = f(&mut out);
    if out.is_null() {
        return (rc, None);
    }
    // SAFETY: the plugin hands over a malloc'd NUL-terminated string.
    let s = unsafe { CStr::from_ptr(out) }.to_str().expect("state is UTF-8").to_owned();
    // SAFETY: allocated with malloc by the plugin, ours to free.
    unsafe { libc::free(out.cast()) };
    (rc, Some(s))
}

impl Drop for Object<'_> {
    fn drop(&mut self) {
        // SAFETY: the object drvNew set up; freed once.
        unsafe { self.plugin.drv().free.unwrap()(&mut *self.man) };
        assert!(self.man.private_data.is_null(), "drvFree must clear privateData");
    }
}

/// libvirt writes the state raw into XML (status file, migration cookie).
fn assert_xml_safe(state: &str) {
    assert!(state.starts_with("hl1:"), "not a highlander state: {state:?}");
    assert!(state.bytes().all(|c| c.is_ascii_alphanumeric() || b"._~/:@+=,-%;|".contains(&c)), "state has characters unsafe in XML or whitespace: {state:?}");
}

// ---- a real highlanderd (the daemon tests' harness) ----

/// One highlanderd on a fresh lockspace file named "default". Fields drop
/// in order: the daemon is gone before its directory is removed.
struct Daemon {
    host: Host,
    socket: PathBuf,
    log: PathBuf,
    dir: ScratchDir,
}

/// Removed on drop, unless a test failed (its log is worth reading).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

impl Daemon {
    fn start(name: &str) -> Daemon {
        artifacts();
        let dir = scratch(&format!("ffi-{name}"));
        let lockspace = dir.join("default.lockspace");
        init_lockspace(&lockspace, 300, 64);
        let host = Host::start(&dir, &lockspace, 1, "");
        let (socket, log) = (host.socket.clone(), host.log.clone());
        Daemon { host, socket, log, dir: ScratchDir(dir) }
    }

    /// Writes a qemu-highlander.conf pointing at this daemon, plus `extra`.
    fn plugin_conf(&self, extra: &str) -> PathBuf {
        let conf = self.dir.0.join("qemu-highlander.conf");
        fs::write(&conf, format!("# written by crates/plugin/tests/ffi.rs\nsocket = \"{}\"\ntimeout = 20\n{extra}", self.socket.display())).unwrap();
        conf
    }

    fn disk(&self, name: &str) -> PathBuf {
        let p = self.dir.0.join(name);
        fs::write(&p, b"disk image").unwrap();
        p
    }

    /// SIGTERM and wait: the daemon is down afterwards.
    fn stop(&mut self) {
        self.host.terminate();
    }
}

fn status(socket: &Path) -> Value {
    Client::connect(socket).expect("connect").call(&Request::Status).expect("status")
}

/// What the daemon says guest `pid` holds: identities.
fn held_by(socket: &Path, pid: u32) -> Vec<String> {
    let s = status(socket);
    let mut ids: Vec<String> = s["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["holders"].as_array().unwrap().iter().any(|h| h["pid"] == pid))
        .map(|l| l["identity"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

// ---- the tests ----

#[test]
fn the_driver_table_is_complete_and_asks_for_lock_state() {
    assert_eq!((std::mem::size_of::<Driver>(), std::mem::size_of::<LockManager>(), std::mem::size_of::<Param>()), (72, 16, 32));
    let p = Plugin::load("table");
    let d = p.drv();
    assert_eq!(d.version, LIBVIRT_VERSION, "the ABI version the plugin implements");
    // Without USES_STATE libvirt would not carry the lock state across
    // pause/resume and migration.
    assert_eq!(d.flags, USES_STATE);
    // libvirt calls Init/Deinit unconditionally: a NULL one crashes it.
    assert!(d.init.is_some() && d.deinit.is_some() && d.new.is_some() && d.free.is_some());
    assert!(d.add_resource.is_some() && d.acquire.is_some() && d.release.is_some() && d.inquire.is_some());
}

#[test]
fn a_malformed_config_fails_init_naming_the_key_and_line() {
    if in_child() {
        let p = Plugin::load("badconf");
        assert_eq!(p.init(Some(&env_path("HL_CONF_TYPO"))), -1);
        assert_eq!(p.init(Some(&env_path("HL_CONF_VALUE"))), -1);
        // A failed init leaves nothing behind: a fixed (here: absent) file loads.
        assert_eq!(p.init(Some(Path::new("/nonexistent/qemu-highlander.conf"))), 0);
        // SAFETY: drvDeinit takes no arguments.
        assert_eq!(unsafe { p.drv().deinit.unwrap()() }, 0);
        return;
    }
    let dir = scratch("ffi-badconf");
    let typo = dir.join("typo.conf");
    fs::write(&typo, "socket = \"/run/highlander/highlanderd.sock\"\n# manual leases only\nauto_disk_lease = 0\n").unwrap();
    let value = dir.join("value.conf");
    fs::write(&value, "auto_disk_leases = 0\nrequire_lease_for_disks = yes   # sanlock wants 0 or 1 too\n").unwrap();
    let stderr = run_child("a_malformed_config_fails_init_naming_the_key_and_line", &[("HL_CONF_TYPO", &typo), ("HL_CONF_VALUE", &value)]);
    let line = |s: &str| stderr.lines().find(|l| l.contains(s)).unwrap_or_else(|| panic!("no message about {s} in:\n{stderr}")).to_owned();
    assert_eq!(
        line("typo.conf"),
        format!(
            "highlander: {}:3: unknown key `auto_disk_lease` (known keys: socket, lockspace, timeout, auto_disk_leases, require_lease_for_disks); did you mean `auto_disk_leases`?",
            typo.display()
        )
    );
    assert_eq!(line("value.conf"), format!("highlander: {}:2: `require_lease_for_disks` = yes (unquoted): must be 0 or 1", value.display()));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_parameters_from_libvirt_fail_clearly() {
    if !in_child() {
        let stderr = run_child("bad_parameters_from_libvirt_fail_clearly", &[]);
        for expected in [
            "highlander: unknown domain parameter `vcpus` from libvirt; this highlander plugin knows uuid, name, id, pid, uri",
            "highlander: libvirt did not pass the domain's uuid, name and pid",
            "highlander: <lease> with key 'vm-web1' has no <lockspace>: highlander needs the name of the lockspace that holds it, e.g. <lockspace>default</lockspace>",
        ] {
            assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
        }
        return;
    }
    let p = Plugin::load("params");
    assert_eq!(p.init(None), 0);
    let name = c"web1";
    let mut params = vec![
        Param::new(PARAM_UUID, c"uuid", ParamValue { uuid: [1; 16] }),
        Param::str(PARAM_STRING, c"name", Some(name)),
        Param::new(PARAM_UINT, c"id", ParamValue { iv: 1 }),
        Param::new(PARAM_UINT, c"pid", ParamValue { iv: 4242 }),
        Param::str(PARAM_CSTRING, c"uri", None),
        Param::new(PARAM_UINT, c"vcpus", ParamValue { ui: 4 }),
    ];
    assert_eq!(p.object_with(&mut params, &[], 0).err(), Some("drvNew"));
    params.truncate(3); // no pid (and no uri)
    assert_eq!(p.object_with(&mut params, &[], 0).err(), Some("drvNew"));
    let dom = Dom::new("web1", 4242);
    assert_eq!(p.object(&dom, &[Res::Lease { key: "vm-web1", lockspace: None }], 0).err(), Some("drvAddResource"));
    // The same object with a lockspace is fine (no daemon needed to build it).
    assert!(p.object(&dom, &[Res::Lease { key: "vm-web1", lockspace: Some("default") }], 0).is_ok());
}

/// libvirt's start sequence: the forked child registers (REGISTER_ONLY |
/// RESTRICT) and execs QEMU, which inherits the daemon connection; then
/// libvirtd acquires, inquires and releases on the QEMU pid's behalf.
#[test]
fn the_forked_child_registers_and_libvirtd_acquires_inquires_and_releases() {
    let d = Daemon::start("fork");
    let p = Plugin::load("fork");
    assert_eq!(p.init(Some(&d.plugin_conf(""))), 0);
    let disk = d.disk("web1.img");
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 fills two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (rd, wr) = (fds[0], fds[1]);
    let argv = [c"sleep".as_ptr(), c"1000".as_ptr(), std::ptr::null()];

    // SAFETY: the child only calls the plugin (fork-safe by contract: no
    // threads, no locks), write(2), execvp(3) and _exit(2).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: in the forked child, which only calls what the fork above
        // allows and never returns.
        unsafe {
            let me = libc::getpid() as u32;
            let (rc, fd) = match p.object(&Dom::new("web1", me), &[Res::Disk(&disk, 0)], NEW_STARTED) {
                Ok(mut obj) => obj.acquire(None, REGISTER_ONLY | RESTRICT, FAILURE_POWEROFF),
                Err(_) => (-2, -1),
            };
            let msg = [rc, fd];
            libc::write(wr, msg.as_ptr().cast(), std::mem::size_of_val(&msg));
            if rc == 0 {
                libc::execvp(argv[0], argv.as_ptr());
            }
            libc::_exit(1);
        }
    }
    let guest = pid as u32;
    // SAFETY: our copy of the write end.
    unsafe { libc::close(wr) };
    let _reap = Reap(pid);
    let mut msg = [0 as c_int; 2];
    // SAFETY: reads into a live buffer of that size.
    let n = unsafe { libc::read(rd, msg.as_mut_ptr().cast(), std::mem::size_of_val(&msg)) };
    assert_eq!(n as usize, std::mem::size_of_val(&msg), "the child died before reporting");
    let [rc, handle] = msg;
    assert_eq!(rc, 0, "register-only acquire in the child failed: {}", fs::read_to_string(&d.log).unwrap_or_default());
    assert!(handle > 2, "the child must get the daemon connection back in *fd, got {handle}");
    // EOF once exec closed the (close-on-exec) write end: QEMU is running.
    let mut rest = [0u8; 1];
    // SAFETY: as above.
    assert_eq!(unsafe { libc::read(rd, rest.as_mut_ptr().cast(), 1) }, 0);
    // SAFETY: our fd.
    unsafe { libc::close(rd) };
    let link = fs::read_link(format!("/proc/{guest}/fd/{handle}")).expect("QEMU inherited the guest's daemon connection");
    assert!(link.to_string_lossy().starts_with("socket:"), "{link:?}");
    let s = status(&d.socket);
    let g = s["guests"].as_array().unwrap().iter().find(|g| g["pid"] == guest).unwrap_or_else(|| panic!("guest not registered: {s}"));
    assert_eq!((g["name"].as_str(), g["action"].as_str(), g["uri"].as_str()), (Some("web1"), Some("poweroff"), Some("qemu:///system")));
    assert!(held_by(&d.socket, guest).is_empty(), "register-only takes no lease");

    // libvirtd, on the QEMU pid's behalf (ProcessResume at start).
    let dom = Dom::new("web1", guest);
    let disks = [Res::Disk(&disk, 0)];
    assert_eq!(p.object(&dom, &disks, 0).unwrap().acquire(None, 0, FAILURE_POWEROFF), (0, -1), "daemon-side acquire leaves *fd alone");
    let identity = format!("file:{}", fs::canonicalize(&disk).unwrap().display());
    assert_eq!(held_by(&d.socket, guest), vec![identity.clone()]);
    // Acquiring what the guest holds again (fake reboot) is fine.
    assert_eq!(p.object(&dom, &disks, 0).unwrap().acquire(None, 0, FAILURE_POWEROFF).0, 0);

    // Migration Begin: inquire; pause: release, which returns the state.
    let (rc, inquired) = p.object(&dom, &disks, 0).unwrap().inquire();
    assert_eq!(rc, 0);
    let inquired = inquired.expect("a guest holding a lease has a state");
    assert_xml_safe(&inquired);
    let (rc, released) = p.object(&dom, &disks, 0).unwrap().release();
    assert_eq!((rc, released.as_deref()), (0, Some(inquired.as_str())));
    assert!(held_by(&d.socket, guest).is_empty());
    // The STOP event releases a second time into the same saved state: it
    // must get the same state back, or the resume would check no version.
    assert_eq!(p.object(&dom, &disks, 0).unwrap().release(), (0, Some(inquired.clone())));
    // A pid the daemon never saw (a domain started before the plugin was enabled).
    let stranger = GuestProc::spawn();
    assert_eq!(p.object(&Dom::new("old", stranger.pid()), &disks, 0).unwrap().release(), (0, None));
    assert_eq!(p.object(&Dom::new("old", stranger.pid()), &disks, 0).unwrap().inquire(), (0, None));

    // Resume with the saved state.
    assert_eq!(p.object(&dom, &disks, 0).unwrap().acquire(Some(&inquired), 0, FAILURE_POWEROFF).0, 0);
    assert_eq!(held_by(&d.socket, guest), vec![identity]);
    let (_, again) = p.object(&dom, &disks, 0).unwrap().inquire();
    assert_xml_safe(&again.unwrap());
}

/// Kills and reaps a forked child.
struct Reap(libc::pid_t);

impl Drop for Reap {
    fn drop(&mut self) {
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn two_copies_of_the_library_serve_several_threads_at_once() {
    let d = Daemon::start("threads");
    let conf = d.plugin_conf("");
    let copies = [Plugin::load("threads-a"), Plugin::load("threads-b")];
    assert_ne!(copies[0].drv, copies[1].drv, "the loader must map two copies");
    std::thread::scope(|s| {
        for p in &copies {
            s.spawn(|| assert_eq!(p.init(Some(&conf)), 0));
        }
    });
    let guests: Vec<GuestProc> = (0..6).map(|_| GuestProc::spawn()).collect();
    std::thread::scope(|s| {
        for (i, g) in guests.iter().enumerate() {
            let (p, d, disk) = (&copies[i % 2], &d, d.disk(&format!("vm{i}.img")));
            s.spawn(move || {
                let dom = Dom::new(&format!("vm{i}"), g.pid());
                let disks = [Res::Disk(&disk, 0), Res::Disk(Path::new("/nonexistent/cdrom.iso"), RES_READONLY)];
                let (rc, fd) = p.object(&dom, &disks, NEW_STARTED).unwrap().acquire(None, REGISTER_ONLY | RESTRICT, FAILURE_DEFAULT);
                assert_eq!(rc, 0, "register vm{i}");
                // Not QEMU: hand the connection back (the daemon keeps the
                // registration while the process lives).
                // SAFETY: the fd the plugin returned to us.
                unsafe { libc::close(fd) };
                for round in 0..8 {
                    assert_eq!(p.object(&dom, &disks, 0).unwrap().acquire(None, 0, FAILURE_DEFAULT).0, 0, "vm{i} round {round}");
                    let (rc, state) = p.object(&dom, &disks, 0).unwrap().inquire();
                    assert_eq!(rc, 0);
                    let state = state.unwrap();
                    assert_xml_safe(&state);
                    assert_eq!(p.object(&dom, &disks, 0).unwrap().release(), (0, Some(state.clone())));
                    assert_eq!(p.object(&dom, &disks, 0).unwrap().release(), (0, Some(state)));
                }
                assert!(held_by(&d.socket, g.pid()).is_empty());
            });
        }
    });
    for p in &copies {
        // SAFETY: drvDeinit takes no arguments.
        assert_eq!(unsafe { p.drv().deinit.unwrap()() }, 0);
    }
}

#[test]
fn with_the_daemon_down_no_guest_starts_and_the_message_says_why() {
    if in_child() {
        let p = Plugin::load("down");
        let conf = env_path("HL_CONF");
        assert_eq!(p.init(Some(&conf)), 0, "init needs no daemon");
        let disk = env_path("HL_DISK");
        let me = std::process::id();
        eprintln!("--- start (child, register-only)");
        let (rc, fd) = p.object(&Dom::new("web1", me), &[Res::Disk(&disk, 0)], NEW_STARTED).unwrap().acquire(None, REGISTER_ONLY | RESTRICT, FAILURE_DEFAULT);
        assert_eq!((rc, fd), (-1, -1));
        eprintln!("--- resume (libvirtd)");
        assert_eq!(p.object(&Dom::new("web1", me), &[Res::Disk(&disk, 0)], 0).unwrap().acquire(None, 0, FAILURE_DEFAULT).0, -1);
        return;
    }
    let mut d = Daemon::start("down");
    let conf = d.plugin_conf("require_lease_for_disks = 1\n");
    let disk = d.disk("web1.img");
    d.stop();
    let stderr = run_child("with_the_daemon_down_no_guest_starts_and_the_message_says_why", &[("HL_CONF", &conf), ("HL_DISK", &disk)]);
    let after = |marker: &str| {
        let rest = &stderr[stderr.find(marker).unwrap_or_else(|| panic!("no {marker} in:\n{stderr}")) + marker.len()..];
        rest.lines().find(|l| l.starts_with("highlander: ")).unwrap_or_else(|| panic!("no message after {marker} in:\n{stderr}")).to_owned()
    };
    let start = after("--- start");
    let prefix = format!("highlander: highlanderd is not running or not reachable at {} (", d.socket.display());
    assert!(start.starts_with(&prefix), "{start}");
    assert!(start.contains("(os error "), "the OS error is named: {start}");
    let tail = format!("Start the daemon with `systemctl start highlanderd`, or check `socket` in {}", conf.display());
    assert!(start.ends_with(&format!("): the guest was not started (it would have run without its disk leases). {tail}")), "{start}");
    let resume = after("--- resume");
    assert!(resume.starts_with(&prefix) && resume.ends_with(&format!("): no lease was taken, so the guest was not started or resumed (nor the disk attached) without it. {tail}")), "{resume}");
}

#[test]
fn without_auto_disk_leases_only_lease_elements_are_leased_and_required() {
    if !in_child() {
        let d = Daemon::start("manual");
        let conf = d.plugin_conf("auto_disk_leases = 0\n");
        let disk = d.disk("web1.img");
        let stderr = run_child("without_auto_disk_leases_only_lease_elements_are_leased_and_required", &[("HL_CONF", &conf), ("HL_DISK", &disk), ("HL_SOCKET", &d.socket)]);
        let expected = [
            format!(
                "highlander: domain 'bare' has a writable disk ({}) but no <lease>, and {} sets auto_disk_leases = 0 with require_lease_for_disks = 1: the guest was not started. \
                 Add a <lease> to the domain, or set auto_disk_leases = 1 to lease every writable disk",
                disk.display(),
                conf.display()
            ),
            format!("highlander: domain 'web1' holds no <lease> (a paused domain holds none), and {} sets auto_disk_leases = 0 with require_lease_for_disks = 1: writable disk {} was refused.", conf.display(), disk.display()),
        ];
        for e in expected {
            assert!(stderr.contains(&e), "missing {e:?} in:\n{stderr}");
        }
        return;
    }
    let p = Plugin::load("manual");
    assert_eq!(p.init(Some(&env_path("HL_CONF"))), 0);
    let (disk, socket) = (env_path("HL_DISK"), env_path("HL_SOCKET"));
    // This process plays the forked child of two domains in turn.
    let me = std::process::id();
    let bare = [Res::Disk(&disk, 0)];
    assert_eq!(p.object(&Dom::new("bare", me), &bare, NEW_STARTED).unwrap().acquire(None, REGISTER_ONLY | RESTRICT, FAILURE_DEFAULT), (-1, -1));
    let with_lease = [Res::Lease { key: "vm-web1", lockspace: Some("default") }, Res::Disk(&disk, 0)];
    let dom = Dom::new("web1", me);
    let (rc, fd) = p.object(&dom, &with_lease, NEW_STARTED).unwrap().acquire(None, REGISTER_ONLY | RESTRICT, FAILURE_DEFAULT);
    assert_eq!(rc, 0);
    assert!(fd > 2);
    assert_eq!(p.object(&dom, &with_lease, 0).unwrap().acquire(None, 0, FAILURE_DEFAULT).0, 0);
    // The <lease> is held in the named lockspace; the disk is not leased.
    let s = status(&socket);
    let leases = s["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{s}");
    assert_eq!((leases[0]["identity"].as_str(), leases[0]["lockspace"].as_str()), (Some("lease:vm-web1"), Some("default")));
    let (_, state) = p.object(&dom, &with_lease, 0).unwrap().inquire();
    let state = state.unwrap();
    assert_xml_safe(&state);
    assert!(state.contains("default|lease:vm-web1|"), "{state}");
    // Hotplug of a writable disk (libvirt passes only the disk): fine while
    // the domain holds its <lease>; detaching it leaves the <lease> alone.
    assert_eq!(p.object(&dom, &bare, 0).unwrap().acquire(None, 0, FAILURE_DEFAULT).0, 0);
    assert_eq!(p.object(&dom, &bare, 0).unwrap().detach(), 0);
    assert_eq!(held_by(&socket, me), vec!["lease:vm-web1".to_owned()]);
    // Paused (released): the same hotplug is refused.
    assert_eq!(p.object(&dom, &with_lease, 0).unwrap().release(), (0, Some(state)));
    assert_eq!(p.object(&dom, &bare, 0).unwrap().acquire(None, 0, FAILURE_DEFAULT).0, -1);
    // SAFETY: the registration handle the plugin returned to us.
    unsafe { libc::close(fd) };
}
