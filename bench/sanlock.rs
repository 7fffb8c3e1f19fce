//! sanlock side of the benchmarks, shared by bench/engine.rs and
//! bench/daemon.rs: a private sanlock daemon, libsanlock calls, and the
//! side-by-side table.

#![allow(dead_code)] // each benchmark needs a different subset

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One resource lease at 512-byte sectors (sanlock's only size for files).
pub const LEASE_BYTES: u64 = 1 << 20;
/// One resource lease at 4 KiB sectors and 2000 hosts.
pub const LEASE_BYTES_4K: u64 = 8 << 20;

pub fn installed() -> bool {
    Command::new("sanlock").arg("version").output().is_ok_and(|o| o.status.success())
}

/// Creates (or truncates) a file of `bytes` for sanlock to init leases in.
pub fn lease_file(path: &Path, bytes: u64) {
    let _ = std::fs::remove_file(path);
    std::fs::File::create(path).and_then(|f| f.set_len(bytes)).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
}

/// A sanlock daemon of our own (private run dir, no watchdog), shut down on drop.
pub struct Daemon {
    pub run_dir: PathBuf,
    child: Child,
}

impl Daemon {
    pub fn start(dir: &Path) -> Option<Daemon> {
        let run_dir = dir.join("sanlock-run");
        std::fs::create_dir_all(&run_dir).ok()?;
        let log = std::fs::File::create(dir.join("sanlock-daemon.log")).ok()?;
        let child = Command::new("sanlock")
            .args(["daemon", "-D", "-w", "0", "-l", "0", "-L", "-1"])
            .env("SANLOCK_PRIVILEGED", "0")
            .env("SANLOCK_RUN_DIR", &run_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .spawn()
            .ok()?;
        let d = Daemon { run_dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.client(&["status"]).status.success() {
            if Instant::now() > deadline {
                eprintln!("sanlock daemon did not answer; see {}", dir.join("sanlock-daemon.log").display());
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(d)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new("sanlock").arg("client").args(args).env("SANLOCK_RUN_DIR", &self.run_dir).output().expect("run sanlock")
    }

    /// Runs `sanlock client ARGS`, returns how long it took; panics on failure.
    pub fn timed(&self, args: &[&str]) -> Duration {
        let t = Instant::now();
        let out = self.client(args);
        let took = t.elapsed();
        assert!(out.status.success(), "sanlock client {}: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        took
    }

    /// Resource leases the daemon holds, from `sanlock client status` ("r LS:RES:..." lines).
    pub fn held(&self) -> usize {
        String::from_utf8_lossy(&self.client(&["status"]).stdout).lines().filter(|l| l.starts_with("r ")).count()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.client(&["shutdown", "-f", "1"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Only the daemon we started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed `struct sanlk_resource *` (malloc'd by libsanlock, never freed:
/// a benchmark makes a handful).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Resource(*mut c_void);

// SAFETY: the struct is plain data that libsanlock only reads after parsing.
unsafe impl Send for Resource {}

/// The libsanlock calls libvirt's sanlock plugin makes, resolved at run time
/// so the benchmarks build without sanlock's headers or library.
pub struct Lib {
    register: extern "C" fn() -> c_int,
    restrict: extern "C" fn(c_int, u32) -> c_int,
    acquire: extern "C" fn(c_int, c_int, u32, c_int, *const Resource, *const c_void) -> c_int,
    release: extern "C" fn(c_int, c_int, u32, c_int, *const Resource) -> c_int,
    str_to_res: extern "C" fn(*mut c_char, *mut Resource) -> c_int,
}

/// `SANLK_RESTRICT_ALL`: the registered connection accepts no more commands.
pub const RESTRICT_ALL: u32 = 1;

impl Lib {
    /// Loads libsanlock for talking to the daemon whose run dir is `run_dir`.
    pub fn load(run_dir: &Path) -> Option<Lib> {
        // libsanlock reads the run directory from the environment when connecting.
        std::env::set_var("SANLOCK_RUN_DIR", run_dir);
        // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast
        // to its prototype in sanlock_resource.h (3.8) and the library stays
        // loaded for the life of the process (never dlclosed).
        unsafe {
            let lib = libc::dlopen(c"libsanlock.so.1".as_ptr(), libc::RTLD_NOW);
            if lib.is_null() {
                return None;
            }
            let sym = |name: &std::ffi::CStr| {
                let p = libc::dlsym(lib, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(Lib {
                register: std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(sym(c"sanlock_register")?),
                restrict: std::mem::transmute::<*mut c_void, extern "C" fn(c_int, u32) -> c_int>(sym(c"sanlock_restrict")?),
                acquire: std::mem::transmute::<*mut c_void, extern "C" fn(c_int, c_int, u32, c_int, *const Resource, *const c_void) -> c_int>(sym(c"sanlock_acquire")?),
                release: std::mem::transmute::<*mut c_void, extern "C" fn(c_int, c_int, u32, c_int, *const Resource) -> c_int>(sym(c"sanlock_release")?),
                str_to_res: std::mem::transmute::<*mut c_void, extern "C" fn(*mut c_char, *mut Resource) -> c_int>(sym(c"sanlock_str_to_res")?),
            })
        }
    }

    /// Registers the calling process; the returned connection must stay
    /// open while it holds leases (closing it releases them).
    pub fn register(&self) -> Result<c_int, c_int> {
        let fd = (self.register)();
        if fd < 0 { Err(fd) } else { Ok(fd) }
    }

    pub fn restrict(&self, sock: c_int, flags: u32) -> Result<(), c_int> {
        rv((self.restrict)(sock, flags))
    }

    /// Parses `LOCKSPACE:RESOURCE:PATH:OFFSET`.
    pub fn resource(&self, spec: &str) -> Resource {
        let s = CString::new(spec).expect("no NUL in a resource spec");
        let mut res = Resource(std::ptr::null_mut());
        // Leaked like the result: sanlock_str_to_res may write into the string.
        let r = (self.str_to_res)(s.into_raw(), &mut res);
        assert!(r == 0 && !res.0.is_null(), "sanlock_str_to_res({spec}): {r}");
        res
    }

    /// `sock` = a registered connection (pid ignored), or -1 to act for the
    /// separately registered `pid` over a new connection.
    pub fn acquire(&self, sock: c_int, pid: c_int, res: &[Resource]) -> Result<(), c_int> {
        rv((self.acquire)(sock, pid, 0, res.len() as c_int, res.as_ptr(), std::ptr::null()))
    }

    pub fn release(&self, sock: c_int, pid: c_int, res: &[Resource]) -> Result<(), c_int> {
        rv((self.release)(sock, pid, 0, res.len() as c_int, res.as_ptr()))
    }
}

fn rv(r: c_int) -> Result<(), c_int> {
    if r < 0 { Err(r) } else { Ok(()) }
}

// --------------------------------------------------------------- report ---

pub fn header() {
    println!("{:<52} {:>22} {:>26} {:>9}", "", "highlander", "sanlock", "sanlock/hl");
}

/// One table row; `ratio` is sanlock's figure over ours.
pub fn row(what: &str, ours: String, theirs: Option<String>, ratio: Option<f64>) {
    let ratio = ratio.map_or(String::new(), |r| format!("{r:.1}x"));
    println!("{what:<52} {ours:>22} {:>26} {ratio:>9}", theirs.unwrap_or_else(|| "-".into()));
}
