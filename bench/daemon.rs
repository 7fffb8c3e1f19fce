//! `hl-bench-daemon`: highlanderd's figures through its real socket.
//!
//!   hl-bench-daemon [--guests N] [--io-timeout SECONDS] [--dir DIR] [--sanlock]
//!
//! - acquire+release round trip of one disk (p50/p99)
//! - boot storm: N guests (default 500) × 2 disks registered and acquired
//!   concurrently, the way libvirt's child does it (register with resources)
//! - daemon RSS holding 2N leases; daemon CPU while idle
//! - guest exit → leases released latency
//!
//! Uses the highlanderd next to this binary (build both in one profile).
//! Prints figures; not a timed test.

#[path = "../tests/support/daemon_harness.rs"]
mod harness;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use lockd::daemon::protocol::{Action, Inquire, LeasesResult, Request, Resource};
use lockd::Mode;

struct Args {
    guests: usize,
    io_timeout: f64,
    dir: Option<std::path::PathBuf>,
    sanlock: bool,
}

fn args() -> Args {
    let mut a = Args { guests: 500, io_timeout: 10.0, dir: None, sanlock: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--guests" => a.guests = value().parse().expect("--guests N"),
            "--io-timeout" => a.io_timeout = value().parse().expect("--io-timeout SECONDS"),
            "--dir" => a.dir = Some(value().into()),
            "--sanlock" => a.sanlock = true,
            other => panic!("unknown argument {other}; usage: hl-bench-daemon [--guests N] [--io-timeout SECONDS] [--dir DIR] [--sanlock]"),
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

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!("{name}: n={} p50 {} p99 {} max {}", v.len(), ms(pct(&v, 0.5)), ms(pct(&v, 0.99)), ms(*v.last().unwrap()));
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

/// The same scenarios against sanlock, for comparison. Someone wiring
/// sanlock (scripts/bench.sh) fills this in; highlander's figures do not
/// depend on it.
fn sanlock_comparison() {
    println!("sanlock comparison: not wired in this binary; see scripts/bench.sh");
}

fn main() {
    let a = args();
    let dir = a.dir.clone().unwrap_or_else(|| scratch("bench"));
    std::fs::create_dir_all(&dir).unwrap();
    let ls = dir.join("bench.lockspace");
    let _ = std::fs::remove_file(&ls);
    init_lockspace(&ls, (a.io_timeout * 1000.0) as u64, (a.guests as u32 * 2 + 16).next_power_of_two());
    let host = Host::start(&dir, &ls, 1, "log_level = warn");
    let daemon_pid = host.pid();
    println!("highlanderd pid {daemon_pid}, io_timeout {} s, lockspace {}", a.io_timeout, ls.display());

    // Round trip: one guest, one disk, acquire then release.
    let g = GuestProc::spawn();
    let _handle = host.register(g.pid(), "rt", Action::Default);
    let disk = dir.join("rt.img");
    std::fs::write(&disk, b"x").unwrap();
    let mut c = host.client();
    let res = vec![Resource::path(disk.display().to_string(), Mode::Exclusive)];
    let mut rt = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let _: LeasesResult = c.call(&Request::Acquire(lockd::daemon::protocol::Acquire { pid: g.pid(), resources: res.clone(), state: None, action: None })).unwrap();
        let _: LeasesResult = c.call(&Request::Release(lockd::daemon::protocol::Release { pid: g.pid(), resources: None })).unwrap();
        rt.push(t.elapsed());
    }
    summary("acquire+release round trip", rt);

    // Boot storm.
    let guests: Vec<GuestProc> = (0..a.guests).map(|_| GuestProc::spawn()).collect();
    let pids: Arc<Vec<u32>> = Arc::new(guests.iter().map(GuestProc::pid).collect());
    for i in 0..a.guests * 2 {
        std::fs::write(dir.join(format!("vm{i}.img")), b"x").unwrap();
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (next, pids, dir, socket) = (next.clone(), pids.clone(), dir.clone(), host.socket.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut handles = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= pids.len() {
                        return (lat, handles);
                    }
                    let mut reg = register(pids[i], &format!("vm{i}"), Action::Default);
                    reg.resources = (0..2).map(|k| Resource::path(dir.join(format!("vm{}.img", 2 * i + k)).display().to_string(), Mode::Exclusive)).collect();
                    let t = Instant::now();
                    let mut c = lockd::daemon::client::Client::connect(&socket).unwrap();
                    let r: LeasesResult = c.call(&Request::Register(reg)).unwrap();
                    lat.push(t.elapsed());
                    assert_eq!(r.leases.len(), 2);
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
    println!("boot storm: {} guests x 2 disks in {:.2} s ({:.0} leases/s)", a.guests, start.elapsed().as_secs_f64(), (a.guests * 2) as f64 / start.elapsed().as_secs_f64());
    summary("boot storm per guest (register+2 acquires)", lat);
    println!("daemon RSS holding {} leases: {} KiB", a.guests * 2, rss_kib(daemon_pid));

    // Idle CPU.
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let (u0, s0) = proc_stat(daemon_pid);
    let idle = Duration::from_secs(5);
    std::thread::sleep(idle);
    let (u1, s1) = proc_stat(daemon_pid);
    println!("daemon CPU while idle with {} leases: {:.2} %", a.guests * 2, ((u1 - u0) + (s1 - s0)) as f64 / ticks / idle.as_secs_f64() * 100.0);

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
    summary("guest exit -> leases released (2 disks)", exits);
    if a.sanlock {
        sanlock_comparison();
    }
    drop(handles);
    drop(guests);
}
