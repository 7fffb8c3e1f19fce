//! `hl-bench-daemon`: highlanderd's figures through its real socket and,
//! with `--sanlock`, the same scenarios against a private sanlock daemon on
//! the same storage, side by side.
//!
//!   hl-bench-daemon [--guests N] [--disks N] [--io-timeout SECONDS] [--dir DIR] [--sanlock] [--load]
//!
//! --load: every figure taken with a busy process on every core (testkit's
//! CpuLoad, started before the first scenario and ended after the last).
//!
//! - acquire+release round trip of one disk (p50/p99)
//! - boot storm: N guests (default 500) × D disks (default 2) registered and acquired
//!   concurrently, the way libvirt's child does it (register with resources)
//! - daemon RSS holding 2N leases; daemon CPU while idle
//! - guest exit → leases released latency
//! - bytes on disk for the 2N leases
//!
//! DIR (default target/bench) must be on the disk to measure; the run works
//! in DIR/daemon, emptied first (with --sanlock it briefly holds 2N+2 MiB of
//! sanlock leases). Uses the highlanderd next to this binary: build
//! both in one profile (`cargo build --release --workspace --bins`).
//! Prints figures; not a timed test.

use testkit::daemon_harness as harness;
mod sanlock;

use std::ffi::c_int;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::*;
use proto::protocol::{Action, Inquire, LeasesResult, Request, Resource};
use engine::Mode;

struct Args {
    guests: usize,
    disks: usize,
    io_timeout: f64,
    dir: PathBuf,
    sanlock: bool,
    load: bool,
}

fn args() -> Args {
    let mut a = Args { guests: 500, disks: 2, io_timeout: 10.0, dir: PathBuf::from("target/bench"), sanlock: false, load: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--guests" => a.guests = value().parse().expect("--guests N"),
            "--disks" => a.disks = value().parse().ok().filter(|&d| d > 0).expect("--disks N (1 or more)"),
            "--io-timeout" => a.io_timeout = value().parse().expect("--io-timeout SECONDS"),
            "--dir" => a.dir = value().into(),
            "--sanlock" => a.sanlock = true,
            "--load" => a.load = true,
            other => panic!("unknown argument {other}; usage: hl-bench-daemon [--guests N] [--disks N] [--io-timeout SECONDS] [--dir DIR] [--sanlock] [--load]"),
        }
    }
    a
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Prints and returns the samples, sorted.
fn summary(name: &str, mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    println!("{name}: n={} p50 {} p99 {} max {}", v.len(), ms(pct(&v, 0.5)), ms(pct(&v, 0.99)), ms(*v.last().unwrap()));
    v
}

fn proc_stat(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    (f[11].parse().unwrap(), f[12].parse().unwrap()) // utime, stime (ticks)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// Boot-storm requests in flight at once (libvirt starting guests in parallel).
const STORM_CLIENTS: usize = 32;

/// What both lock managers are measured on.
struct Figures {
    /// Sorted, as are the other samples.
    round_trip: Vec<Duration>,
    /// The same in-process, through the engine alone (ours; empty for sanlock).
    engine_round_trip: Vec<Duration>,
    storm: Duration,
    storm_per_guest: Vec<Duration>,
    rss_kib: u64,
    /// Lease storage holding the storm's leases, lockspace included.
    lease_bytes: u64,
}

/// The engine's own acquire+release, in a process of its own at the
/// daemon's scheduling priority (`realtime = yes`: every thread, the I/O
/// pool's included, SCHED_RR), on a lockspace of its own: this binary re-run
/// as `--engine-alone LOCKSPACE`, one round trip per line on stdin, its
/// duration in nanoseconds per line on stdout.
struct EngineAlone {
    child: std::process::Child,
    answers: BufReader<std::process::ChildStdout>,
}

const ENGINE_FLAG: &str = "--engine-alone";

impl EngineAlone {
    fn start(dir: &Path, io_timeout: f64) -> EngineAlone {
        let path = dir.join("engine-alone.lockspace");
        init_lockspace(&path, (io_timeout * 1000.0) as u64, 16);
        let mut child = Command::new(std::env::current_exe().unwrap()).arg(ENGINE_FLAG).arg(&path).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start the engine-alone process");
        let answers = BufReader::new(child.stdout.take().unwrap());
        EngineAlone { child, answers }
    }

    fn round_trip(&mut self) -> Duration {
        writeln!(self.child.stdin.as_mut().unwrap()).unwrap();
        let mut line = String::new();
        self.answers.read_line(&mut line).unwrap();
        Duration::from_nanos(line.trim().parse().expect("the engine-alone process answers"))
    }
}

impl Drop for EngineAlone {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The `--engine-alone` process: round trips until stdin closes.
fn engine_alone(path: &Path) {
    if let Err(e) = daemon::priority::raise() {
        eprintln!("engine alone: cannot run at SCHED_RR ({e}); its figures are at normal priority");
    }
    let ls = engine::Lockspace::join(engine::JoinOptions::new(path, 1, "engine-alone")).expect("join");
    let req = engine::AcquireRequest { identity: "file:/bench/engine-alone".into(), mode: Mode::Exclusive, holder: engine::Holder { uuid: [7; 16], name: "bench-vm".into() }, expect_lver: None };
    // The first acquire names the slot; what is measured is the steady state.
    ls.release(&ls.acquire(&req).expect("acquire")).expect("release");
    let mut out = std::io::stdout().lock();
    for _ in std::io::stdin().lines() {
        let t = Instant::now();
        ls.release(&ls.acquire(&req).expect("acquire")).expect("release");
        writeln!(out, "{}", t.elapsed().as_nanos()).unwrap();
        out.flush().unwrap();
    }
    ls.leave().expect("leave");
}

fn measure_ours(a: &Args, dir: &Path) -> Figures {
    let ls = dir.join("bench.lockspace");
    init_lockspace(&ls, (a.io_timeout * 1000.0) as u64, (a.guests as u32 * a.disks as u32 + 16).next_power_of_two());
    let host = Host::start_as_deployed(dir, &ls, 1, "log_level = warn");
    let daemon_pid = host.pid();
    println!("highlanderd pid {daemon_pid}, io_timeout {} s, lockspace {}", a.io_timeout, ls.display());

    // Round trip: one guest, one disk, acquire then release.
    let g = GuestProc::spawn();
    let _handle = host.register(g.pid(), "rt", Action::Default);
    let disk = dir.join("rt.img");
    std::fs::write(&disk, b"x").unwrap();
    let mut c = host.client();
    let res = vec![Resource::path(disk.display().to_string(), Mode::Exclusive)];
    // The engine alone on a lockspace of its own, a round trip taken just
    // before each of the daemon's so that both meet the same noise.
    let mut engine = EngineAlone::start(dir, a.io_timeout);
    let (mut rt, mut engine_rt) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        engine_rt.push(engine.round_trip());
        let t = Instant::now();
        let _: LeasesResult = c.call(&Request::Acquire(proto::protocol::Acquire { pid: g.pid(), resources: res.clone(), state: None, action: None })).unwrap();
        let _: LeasesResult = c.call(&Request::Release(proto::protocol::Release { pid: g.pid(), resources: None })).unwrap();
        rt.push(t.elapsed());
    }
    drop(engine);
    let round_trip = summary("acquire+release round trip", rt);
    let engine_round_trip = summary("engine alone: acquire+release", engine_rt);

    // Boot storm.
    let guests: Vec<GuestProc> = (0..a.guests).map(|_| GuestProc::spawn()).collect();
    let pids: Arc<Vec<u32>> = Arc::new(guests.iter().map(GuestProc::pid).collect());
    let disks = a.disks;
    for i in 0..a.guests * disks {
        std::fs::write(dir.join(format!("vm{i}.img")), b"x").unwrap();
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..STORM_CLIENTS)
        .map(|_| {
            let (next, pids, dir, socket) = (next.clone(), pids.clone(), dir.to_owned(), host.socket.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut handles = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= pids.len() {
                        return (lat, handles);
                    }
                    let mut reg = register(pids[i], &format!("vm{i}"), Action::Default);
                    reg.resources = (0..disks).map(|k| Resource::path(dir.join(format!("vm{}.img", disks * i + k)).display().to_string(), Mode::Exclusive)).collect();
                    let t = Instant::now();
                    let mut c = proto::client::Client::connect(&socket).unwrap();
                    let r: LeasesResult = c.call(&Request::Register(reg)).unwrap();
                    lat.push(t.elapsed());
                    assert_eq!(r.leases.len(), disks);
                    handles.push(c); // the guest's restricted handle stays open, as in QEMU
                }
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut handles = Vec::new();
    for w in workers {
        let (l, h) = w.join().unwrap();
        lat.extend(l);
        handles.extend(h);
    }
    let storm = start.elapsed();
    println!("boot storm: {} guests x {disks} disks in {:.2} s ({:.0} leases/s)", a.guests, storm.as_secs_f64(), (a.guests * disks) as f64 / storm.as_secs_f64());
    let storm_per_guest = summary(&format!("boot storm per guest (register+{disks} acquires)"), lat);
    let rss = rss_kib(daemon_pid);
    println!("daemon RSS holding {} leases: {rss} KiB", a.guests * disks);

    // Idle CPU.
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let (u0, s0) = proc_stat(daemon_pid);
    let idle = Duration::from_secs(5);
    std::thread::sleep(idle);
    let (u1, s1) = proc_stat(daemon_pid);
    println!("daemon CPU while idle with {} leases: {:.2} %", a.guests * disks, ((u1 - u0) + (s1 - s0)) as f64 / ticks / idle.as_secs_f64() * 100.0);

    // Guest exit → release.
    let mut exits = Vec::new();
    let mut guests = guests;
    for _ in 0..20.min(guests.len()) {
        let mut g = guests.pop().unwrap();
        let pid = g.pid();
        let t = Instant::now();
        g.0.kill().unwrap();
        g.0.wait().unwrap();
        let mut c = host.client();
        loop {
            let r: LeasesResult = c.call(&Request::Inquire(Inquire { pid })).unwrap();
            if r.state.is_none() {
                break;
            }
        }
        exits.push(t.elapsed());
    }
    summary(&format!("guest exit -> leases released ({disks} disks)"), exits);
    drop(handles);
    drop(guests);
    Figures { round_trip, engine_round_trip, storm, storm_per_guest, rss_kib: rss, lease_bytes: std::fs::metadata(&ls).unwrap().len() }
}

// -------------------------------------------------------------- sanlock ---

const GUEST_FLAG: &str = "--sanlock-guest";

/// A sanlock guest: this binary re-run as `--sanlock-guest RESOURCE...`,
/// standing in for libvirt's forked child. On a byte on stdin it does what
/// lock_driver_sanlock.c does before exec'ing QEMU (register, acquire on
/// that connection, restrict it), prints `held NANOS`, then holds the
/// leases until stdin closes. Started ahead so that process start-up stays
/// out of the timed part, as for our pre-spawned guests.
fn sanlock_guest() {
    let run_dir = std::env::var_os("SANLOCK_RUN_DIR").expect("SANLOCK_RUN_DIR");
    let lib = sanlock::Lib::load(Path::new(&run_dir)).expect("load libsanlock");
    let res: Vec<_> = std::env::args().skip(2).map(|spec| lib.resource(&spec)).collect();
    let mut stdin = std::io::stdin().lock();
    println!("ready");
    if stdin.read(&mut [0]).unwrap_or(0) == 0 {
        return;
    }
    let t = Instant::now();
    match lib.register().and_then(|fd| {
        lib.acquire(fd, -1, &res)?;
        lib.restrict(fd, sanlock::RESTRICT_ALL)
    }) {
        Ok(()) => println!("held {}", t.elapsed().as_nanos()),
        Err(rv) => return println!("error {rv}"),
    }
    let _ = std::io::copy(&mut stdin, &mut std::io::sink());
}

struct Theirs {
    io_timeout: u64,
    add_lockspace: Duration,
    init_leases: Duration,
    /// `sanlock client acquire` + `release`: two process starts included.
    cli_round_trip: Vec<Duration>,
    f: Figures,
}

fn measure_sanlock(dir: &Path, guests: usize, disks: usize, io_timeout: u64) -> Option<Theirs> {
    if !sanlock::installed() {
        println!("sanlock: not installed (scripts/bench.sh installs it); skipping the comparison");
        return None;
    }
    let mib = |path: &Path, n: u64| {
        sanlock::lease_file(path, n * sanlock::LEASE_BYTES);
        path.display().to_string()
    };
    let ls = mib(&dir.join("sanlock.lockspace"), 1);
    let leases = mib(&dir.join("sanlock.leases"), (disks * guests) as u64);
    let rt = format!("bench:rt:{}:0", mib(&dir.join("sanlock-rt.lease"), 1));
    // Disk k of guest i: the resource at (disks·i+k) MiB, one align size apart.
    let disk = |n: usize| format!("bench:vm{n}:{leases}:{}", n as u64 * sanlock::LEASE_BYTES);

    let daemon = sanlock::Daemon::start(dir)?;
    println!("\nsanlock daemon pid {}, io_timeout {io_timeout} s, leases in {leases}", daemon.pid());
    daemon.timed(&["init", "-s", &format!("bench:0:{ls}:0"), "-o", &io_timeout.to_string()]);
    let specs: Vec<String> = (0..disks * guests).map(disk).chain([rt.clone()]).collect();
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    // Four at a time: each init is one CLI process and one 1 MiB O_DIRECT write.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while let Some(spec) = specs.get(next.fetch_add(1, Ordering::SeqCst)) {
                    daemon.timed(&["init", "-r", spec]);
                }
            });
        }
    });
    let init_leases = t.elapsed();
    println!("sanlock client init -r x {}: {:.2} s", specs.len(), init_leases.as_secs_f64());
    let add_lockspace = daemon.timed(&["add_lockspace", "-s", &format!("bench:1:{ls}:0"), "-o", &io_timeout.to_string()]);
    println!("sanlock add_lockspace: {:.2} s", add_lockspace.as_secs_f64());

    // Round trip: this process is the registered guest; each call acts for
    // its pid over a new connection, as libvirtd does for a running QEMU.
    let lib = sanlock::Lib::load(&daemon.run_dir).expect("load libsanlock");
    let registration = lib.register().expect("sanlock_register");
    let me = std::process::id() as c_int;
    let res = [lib.resource(&rt)];
    let mut v = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        lib.acquire(-1, me, &res).expect("sanlock_acquire");
        lib.release(-1, me, &res).expect("sanlock_release");
        v.push(t.elapsed());
    }
    let round_trip = summary("sanlock acquire+release round trip (libsanlock)", v);
    let me = me.to_string();
    let cli: Vec<_> = (0..50).map(|_| daemon.timed(&["acquire", "-r", &rt, "-p", &me]) + daemon.timed(&["release", "-r", &rt, "-p", &me])).collect();
    let cli_round_trip = summary("sanlock acquire+release round trip (sanlock client CLI)", cli);
    // SAFETY: closes the registration socket sanlock_register returned, which nothing else uses.
    unsafe { libc::close(registration) };

    // Boot storm: all guests started and waiting; STORM_CLIENTS workers
    // then tell them to go one by one, as ours send their requests.
    let exe = std::env::current_exe().unwrap();
    let mut procs: Vec<GuestProc> = (0..guests)
        .map(|i| {
            let child = Command::new(&exe)
                .arg(GUEST_FLAG)
                .args((0..disks).map(|k| disk(disks * i + k)))
                .env("SANLOCK_RUN_DIR", &daemon.run_dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn sanlock guest");
            GuestProc(child)
        })
        .collect();
    let pipes: Vec<_> = procs.iter_mut().map(|g| Mutex::new((g.0.stdin.take().unwrap(), BufReader::new(g.0.stdout.take().unwrap())))).collect();
    let read_line = |out: &mut BufReader<_>| {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim().to_owned()
    };
    for p in &pipes {
        assert_eq!(read_line(&mut p.lock().unwrap().1), "ready", "sanlock guest failed to start");
    }
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let lat: Vec<Duration> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..STORM_CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut lat = Vec::new();
                    while let Some(p) = pipes.get(next.fetch_add(1, Ordering::SeqCst)) {
                        let (stdin, out) = &mut *p.lock().unwrap();
                        stdin.write_all(b"g").unwrap();
                        let reply = read_line(out);
                        lat.push(Duration::from_nanos(reply.strip_prefix("held ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("sanlock guest: {reply}"))));
                    }
                    lat
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let storm = start.elapsed();
    let held = daemon.held();
    assert_eq!(held, disks * guests, "sanlock client status should list every storm lease");
    println!("sanlock boot storm: {guests} guests x {disks} disks in {:.2} s ({:.0} leases/s), {held} leases in `sanlock client status`", storm.as_secs_f64(), (disks * guests) as f64 / storm.as_secs_f64());
    let storm_per_guest = summary(&format!("sanlock boot storm per guest (register+{disks} acquires+restrict)"), lat);
    let rss = rss_kib(daemon.pid());
    println!("sanlock daemon RSS holding {held} leases: {rss} KiB");
    let lease_bytes = [&ls, &leases].iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    // Closing their stdin ends the guests; dropping them kills any left.
    drop(pipes);
    drop(procs);
    drop(daemon);
    // 2N MiB is not worth keeping around.
    let _ = std::fs::remove_file(&leases);
    Some(Theirs { io_timeout, add_lockspace, init_leases, cli_round_trip, f: Figures { round_trip, engine_round_trip: Vec::new(), storm, storm_per_guest, rss_kib: rss, lease_bytes } })
}

// --------------------------------------------------------------- report ---

fn report(guests: usize, disks: usize, ours: &Figures, theirs: Option<&Theirs>) {
    let t = theirs.map(|t| &t.f);
    let ratio = |o: f64, t: Option<f64>| t.map(|t| t / o);
    let dur = |what: &str, o: Duration, t: Option<Duration>| sanlock::row(what, ms(o), t.map(ms), ratio(o.as_secs_f64(), t.map(|t| t.as_secs_f64())));
    println!();
    sanlock::header();
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        dur(&format!("acquire+release round trip {name}"), pct(&ours.round_trip, p), t.map(|t| pct(&t.round_trip, p)));
    }
    let (rt50, rt99, engine50) = (pct(&ours.round_trip, 0.5), pct(&ours.round_trip, 0.99), pct(&ours.engine_round_trip, 0.5));
    sanlock::row("  engine alone, same run, p50", ms(engine50), None, None);
    let added = rt50.saturating_sub(engine50);
    sanlock::row("  daemon's cost over the engine, p50 (target <= 0.30 ms)", format!("{} {}", ms(added), verdict(added <= Duration::from_micros(300))), None, None);
    let spread = rt99.as_secs_f64() / rt50.as_secs_f64();
    sanlock::row("  round trip p99 / p50 (target <= 2)", format!("{spread:.2} {}", verdict(spread <= 2.0)), None, None);
    if let Some(t) = theirs {
        sanlock::row("  (via `sanlock client` CLI, 2 process starts) p50", String::new(), Some(ms(pct(&t.cli_round_trip, 0.5))), None);
    }
    dur(&format!("boot storm: {guests} guests x {disks} disks, all held"), ours.storm, t.map(|t| t.storm));
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        dur(&format!("boot storm: per guest (register + {disks} disks) {name}"), pct(&ours.storm_per_guest, p), t.map(|t| pct(&t.storm_per_guest, p)));
    }
    if let Some(t) = t {
        let share = pct(&ours.storm_per_guest, 0.99).as_secs_f64() / pct(&t.storm_per_guest, 0.99).as_secs_f64();
        sanlock::row("  storm per-guest p99, ours / sanlock's (target <= 0.5)", format!("{share:.2} {}", verdict(share <= 0.5)), None, None);
    }
    let kib = |k: u64| format!("{k} KiB");
    sanlock::row(&format!("daemon RSS holding {} leases", disks * guests), kib(ours.rss_kib), t.map(|t| kib(t.rss_kib)), ratio(ours.rss_kib as f64, t.map(|t| t.rss_kib as f64)));
    let mib = |b: u64| format!("{:.2} MiB", b as f64 / (1 << 20) as f64);
    sanlock::row(&format!("bytes on disk for {} leases (+ lockspace)", disks * guests), mib(ours.lease_bytes), t.map(|t| mib(t.lease_bytes)), ratio(ours.lease_bytes as f64, t.map(|t| t.lease_bytes as f64)));
    if let Some(t) = theirs {
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        sanlock::row(&format!("sanlock add_lockspace, io_timeout {} s (untimed setup)", t.io_timeout), String::new(), Some(secs(t.add_lockspace)), None);
        sanlock::row(&format!("sanlock init -r of {} leases (untimed setup)", disks * guests + 1), String::new(), Some(secs(t.init_leases)), None);
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "(met)"
    } else {
        "(MISSED)"
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(GUEST_FLAG) {
        return sanlock_guest();
    }
    if std::env::args().nth(1).as_deref() == Some(ENGINE_FLAG) {
        return engine_alone(Path::new(&std::env::args().nth(2).expect("--engine-alone LOCKSPACE")));
    }
    let a = args();
    let dir = a.dir.join("daemon");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Absolute: each daemon resolves paths from its own working directory.
    let dir = dir.canonicalize().unwrap();
    let load = a.load.then(|| testkit::cpu_load::CpuLoad::start().expect("start the CPU load"));
    match &load {
        Some(l) => println!("hl-bench-daemon: LOADED: {} busy processes, one per core, throughout", l.processes()),
        None => println!("hl-bench-daemon: quiet (no load of our own; --load adds a busy process per core)"),
    }
    let ours = measure_ours(&a, &dir);
    // sanlock's io_timeout is whole seconds.
    let theirs = if a.sanlock { measure_sanlock(&dir, a.guests, a.disks, (a.io_timeout.round() as u64).max(1)) } else { None };
    drop(load);
    let _ = std::fs::remove_dir_all(deployed_state_root());
    report(a.guests, a.disks, &ours, theirs.as_ref());
}
