//! Lease-engine figures, side by side with sanlock when it is installed:
//! join after a clean leave, uncontended acquire/release latency and I/O,
//! renewal I/O, and bytes on disk per resource lease; how acquire latency,
//! renewal I/O and bytes per lease grow with max_hosts (8..2000). Acquire and release
//! are also measured with a busy process on every core (sanlock's side of
//! that is in hl-bench-daemon --load, through its library, not its CLI).
//!
//! Usage: hl-bench-engine [--dir DIR] [--iterations N] [--sanlock-io-timeout SECS] [--no-sanlock]
//! DIR (default target/bench) must be on the local disk to measure; it gets
//! a few small lockspace files. Prints figures; asserts nothing.

mod sanlock;

use testkit::samples::{ms, Samples};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::clock::Mono;
use engine::timing::DEFAULT_IO_TIMEOUT;
use engine::{AcquireRequest, Holder, InitOptions, JoinOptions, Lockspace, Mode};

const MAX_HOSTS: u32 = 64;

struct Args {
    dir: PathBuf,
    iterations: usize,
    sanlock_io_timeout: u64,
    sanlock: bool,
}

fn parse_args() -> Args {
    let mut args = Args { dir: PathBuf::from("target/bench"), iterations: 200, sanlock_io_timeout: 10, sanlock: true };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--dir" => args.dir = PathBuf::from(value()),
            "--iterations" => args.iterations = value().parse().unwrap_or_else(|_| usage("--iterations takes a number")),
            "--sanlock-io-timeout" => args.sanlock_io_timeout = value().parse().unwrap_or_else(|_| usage("--sanlock-io-timeout takes seconds")),
            "--no-sanlock" => args.sanlock = false,
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    args
}

fn usage(why: &str) -> ! {
    eprintln!("hl-bench-engine: {why}\nusage: hl-bench-engine [--dir DIR] [--iterations N] [--sanlock-io-timeout SECS] [--no-sanlock]");
    std::process::exit(2)
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

struct Ours {
    join: Duration,
    acquire: Samples,
    release: Samples,
    /// The same, with a busy process on every core.
    acquire_loaded: Samples,
    release_loaded: Samples,
    /// Median (reads, writes) per call.
    acquire_io: (u64, u64),
    release_io: (u64, u64),
    renewal_reads: f64,
    renewal_writes: f64,
    renewal_read_bytes: u64,
    lease_bytes_512: u64,
    lease_bytes_4k: u64,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn measure_ours(dir: &Path, iterations: usize) -> Ours {
    let path = fresh(dir, "highlander.lockspace");
    let mut opts = InitOptions::new("bench");
    opts.max_hosts = MAX_HOSTS;
    opts.resource_slots = 16;
    opts.io_timeout = DEFAULT_IO_TIMEOUT;
    let header = engine::init::init(&path, &opts).expect("init lockspace");

    // Join after a clean leave, at the default io_timeout.
    Lockspace::join(JoinOptions::new(&path, 1, "bench-host")).expect("first join").leave().expect("leave");
    let t0 = Instant::now();
    let ls = Lockspace::join(JoinOptions::new(&path, 1, "bench-host")).expect("join");
    let join = t0.elapsed();

    let req = AcquireRequest { identity: "file:/bench/disk0".into(), mode: Mode::Exclusive, holder: Holder { uuid: [7; 16], name: "bench-vm".into() }, expect_lver: None };
    // The first acquire names the slot; measure the steady state after it.
    ls.release(&ls.acquire(&req).expect("acquire")).expect("release");
    let (mut acq, mut rel, mut acq_r, mut acq_w, mut rel_r, mut rel_w) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..iterations {
        let (r0, w0) = ls.io_counts();
        let t = Instant::now();
        let lease = ls.acquire(&req).expect("acquire");
        acq.push(t.elapsed());
        let (r1, w1) = ls.io_counts();
        let t = Instant::now();
        ls.release(&lease).expect("release");
        rel.push(t.elapsed());
        let (r2, w2) = ls.io_counts();
        acq_r.push(r1 - r0);
        acq_w.push(w1 - w0);
        rel_r.push(r2 - r1);
        rel_w.push(w2 - w1);
    }
    // The same loop with every core busy (the load a boot storm meets).
    let (mut acq_loaded, mut rel_loaded) = (vec![], vec![]);
    {
        let _load = testkit::cpu_load::CpuLoad::start().expect("start the CPU load");
        for _ in 0..iterations {
            let t = Instant::now();
            let lease = ls.acquire(&req).expect("acquire");
            acq_loaded.push(t.elapsed());
            let t = Instant::now();
            ls.release(&lease).expect("release");
            rel_loaded.push(t.elapsed());
        }
    }
    ls.leave().expect("leave");

    // Renewal I/O: an idle host on a fast-ticking lockspace, over many intervals.
    let fast = fresh(dir, "highlander-renewal.lockspace");
    opts.io_timeout = Duration::from_millis(50);
    engine::init::init(&fast, &opts).expect("init lockspace");
    let ls = Lockspace::join(JoinOptions::new(&fast, 1, "bench-host")).expect("join");
    let (r0, w0) = ls.io_counts();
    let t0 = Mono::now();
    std::thread::sleep(Duration::from_secs(2));
    let (r1, w1) = ls.io_counts();
    let intervals = Mono::now().since(t0).as_secs_f64() / ls.timeouts().renew_interval.as_secs_f64();
    ls.leave().expect("leave");

    let per_lease = header.layout().sectors_per_resource();
    Ours {
        join,
        acquire: Samples::new(acq),
        release: Samples::new(rel),
        acquire_loaded: Samples::new(acq_loaded),
        release_loaded: Samples::new(rel_loaded),
        acquire_io: (median(acq_r), median(acq_w)),
        release_io: (median(rel_r), median(rel_w)),
        renewal_reads: (r1 - r0) as f64 / intervals,
        renewal_writes: (w1 - w0) as f64 / intervals,
        renewal_read_bytes: MAX_HOSTS as u64 * header.sector_size as u64,
        lease_bytes_512: per_lease * 512,
        lease_bytes_4k: per_lease * 4096,
    }
}

/// How cost grows with max_hosts: acquire latency, renewal read and bytes on
/// disk per lease, at one setting each (512-byte sectors).
struct Scale {
    max_hosts: u32,
    acquire: Samples,
    renewal_read_bytes: u64,
    lease_bytes: u64,
}

const SCALE_HOSTS: [u32; 4] = [8, 64, 250, 2000];

fn measure_scaling(dir: &Path, iterations: usize) -> Vec<Scale> {
    SCALE_HOSTS
        .iter()
        .map(|&max_hosts| {
            let path = fresh(dir, "highlander-scale.lockspace");
            let mut opts = InitOptions::new("bench");
            opts.max_hosts = max_hosts;
            opts.resource_slots = 4;
            opts.io_timeout = DEFAULT_IO_TIMEOUT;
            let header = engine::init::init(&path, &opts).expect("init lockspace");
            let ls = Lockspace::join(JoinOptions::new(&path, 1, "bench-host")).expect("join");
            let req = AcquireRequest { identity: "file:/bench/scale".into(), mode: Mode::Exclusive, holder: Holder { uuid: [7; 16], name: "bench-vm".into() }, expect_lver: None };
            ls.release(&ls.acquire(&req).expect("acquire")).expect("release");
            let acquire = (0..iterations)
                .map(|_| {
                    let t = Instant::now();
                    let lease = ls.acquire(&req).expect("acquire");
                    let took = t.elapsed();
                    ls.release(&lease).expect("release");
                    took
                })
                .collect();
            ls.leave().expect("leave");
            let _ = std::fs::remove_file(&path);
            Scale {
                max_hosts,
                acquire: Samples::new(acquire),
                renewal_read_bytes: max_hosts as u64 * header.sector_size as u64,
                lease_bytes: header.layout().sectors_per_resource() * header.sector_size as u64,
            }
        })
        .collect()
}

// -------------------------------------------------------------- sanlock ---

struct Theirs {
    io_timeout: u64,
    init_lockspace: Duration,
    init_resource: Duration,
    add_lockspace: Duration,
    acquire: Samples,
    release: Samples,
    /// `sanlock client status`: the CLI's own cost (spawn + one daemon round trip).
    cli_round_trip: Samples,
}

fn measure_sanlock(dir: &Path, iterations: usize, io_timeout: u64) -> Option<Theirs> {
    if !sanlock::installed() {
        println!("sanlock: not installed (scripts/bench.sh installs it); skipping the comparison");
        return None;
    }
    let ls_path = fresh(dir, "sanlock.lockspace");
    let res_path = fresh(dir, "sanlock.resource");
    for p in [&ls_path, &res_path] {
        sanlock::lease_file(p, sanlock::LEASE_BYTES);
    }
    let daemon = sanlock::Daemon::start(dir)?;
    let (lsp, resp) = (ls_path.display().to_string(), res_path.display().to_string());
    let io = io_timeout.to_string();
    let init_lockspace = daemon.timed(&["init", "-s", &format!("bench:0:{lsp}:0"), "-o", &io]);
    let init_resource = daemon.timed(&["init", "-r", &format!("bench:disk0:{resp}:0")]);
    let add_lockspace = daemon.timed(&["add_lockspace", "-s", &format!("bench:1:{lsp}:0"), "-o", &io]);
    let fd = sanlock::Lib::load(&daemon.run_dir).expect("load libsanlock").register().expect("sanlock_register");
    let pid = std::process::id().to_string();
    let res = format!("bench:disk0:{resp}:0");
    let (mut acq, mut rel, mut rtt) = (vec![], vec![], vec![]);
    for _ in 0..iterations {
        acq.push(daemon.timed(&["acquire", "-r", &res, "-p", &pid]));
        rel.push(daemon.timed(&["release", "-r", &res, "-p", &pid]));
        rtt.push(daemon.timed(&["status"]));
    }
    // SAFETY: closes the registration socket sanlock_register returned, which nothing else uses.
    unsafe { libc::close(fd) };
    let _ = daemon.client(&["rem_lockspace", "-s", &format!("bench:1:{lsp}:0")]);
    Some(Theirs { io_timeout, init_lockspace, init_resource, add_lockspace, acquire: Samples::new(acq), release: Samples::new(rel), cli_round_trip: Samples::new(rtt) })
}

// --------------------------------------------------------------- report ---

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.dir).expect("create --dir");
    println!("hl-bench-engine: lockspace files in {} ({} iterations, {MAX_HOSTS} hosts)", args.dir.display(), args.iterations);
    let o = measure_ours(&args.dir, args.iterations);
    let scale = measure_scaling(&args.dir, (args.iterations / 2).max(10));
    let t = if args.sanlock { measure_sanlock(&args.dir, args.iterations.min(100), args.sanlock_io_timeout) } else { None };
    let secs = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    let ratio = |ours: Duration, theirs: Option<Duration>| theirs.map(|t| t.as_secs_f64() / ours.as_secs_f64());

    println!();
    sanlock::header();
    let sanlock_io = t.as_ref().map_or(String::new(), |t| if t.io_timeout == 10 { String::new() } else { format!(", SANLOCK AT io_timeout {} s", t.io_timeout) });
    sanlock::row(&format!("join after clean leave (io_timeout 10 s{sanlock_io})"), secs(o.join), t.as_ref().map(|t| secs(t.add_lockspace)), ratio(o.join, t.as_ref().map(|t| t.add_lockspace)));
    for (name, p) in [("p50", 50), ("p99", 99)] {
        sanlock::row(&format!("uncontended acquire {name}"), ms(o.acquire.pct(p)), t.as_ref().map(|t| ms(t.acquire.pct(p))), ratio(o.acquire.pct(p), t.as_ref().map(|t| t.acquire.pct(p))));
        sanlock::row(&format!("release {name}"), ms(o.release.pct(p)), t.as_ref().map(|t| ms(t.release.pct(p))), ratio(o.release.pct(p), t.as_ref().map(|t| t.release.pct(p))));
    }
    for (name, p) in [("p50", 50), ("p99", 99)] {
        sanlock::row(&format!("uncontended acquire {name}, LOADED (busy process per core)"), ms(o.acquire_loaded.pct(p)), None, None);
        sanlock::row(&format!("release {name}, LOADED"), ms(o.release_loaded.pct(p)), None, None);
    }
    if let Some(t) = &t {
        sanlock::row("  (sanlock CLI round trip `client status` p50)", String::new(), Some(ms(t.cli_round_trip.pct(50))), None);
    }
    sanlock::row("I/Os per acquire (reads + writes)", format!("{} + {}", o.acquire_io.0, o.acquire_io.1), Some("3 + 3 (per its source)".into()), None);
    sanlock::row("I/Os per release (reads + writes)", format!("{} + {}", o.release_io.0, o.release_io.1), Some("~2 wr (per its source)".into()), None);
    sanlock::row(
        "renewal I/O per interval",
        format!("{:.2} rd ({} KiB) + {:.2} wr", o.renewal_reads, o.renewal_read_bytes / 1024, o.renewal_writes),
        Some("1 rd (1 MiB) + 1 wr".into()),
        None,
    );
    sanlock::row("renewal interval at io_timeout 10 s", "10 s".into(), Some("20 s".into()), None);
    let kib = |b: u64| format!("{:.1} KiB", b as f64 / 1024.0);
    sanlock::row(&format!("bytes per resource lease, {MAX_HOSTS} hosts, 512 B"), kib(o.lease_bytes_512), Some(kib(sanlock::LEASE_BYTES)), Some(sanlock::LEASE_BYTES as f64 / o.lease_bytes_512 as f64));
    sanlock::row(&format!("bytes per resource lease, {MAX_HOSTS} hosts, 4 KiB"), kib(o.lease_bytes_4k), Some(kib(sanlock::LEASE_BYTES_4K)), Some(sanlock::LEASE_BYTES_4K as f64 / o.lease_bytes_4k as f64));
    println!("\nhow cost grows with max_hosts (512-byte sectors; sanlock's lockspace is always 2000 hosts: its figures are the same on every row)");
    for sc in &scale {
        let n = sc.max_hosts;
        sanlock::row(&format!("max_hosts {n}: acquire p50 / p99"), format!("{} / {}", ms(sc.acquire.pct(50)), ms(sc.acquire.pct(99))), t.as_ref().map(|t| format!("{} / {}", ms(t.acquire.pct(50)), ms(t.acquire.pct(99)))), None);
        sanlock::row(&format!("max_hosts {n}: renewal read per interval"), kib(sc.renewal_read_bytes), Some("1024.0 KiB".into()), Some(1024.0 * 1024.0 / sc.renewal_read_bytes as f64));
        sanlock::row(&format!("max_hosts {n}: bytes on disk per lease"), kib(sc.lease_bytes), Some(kib(sanlock::LEASE_BYTES)), Some(sanlock::LEASE_BYTES as f64 / sc.lease_bytes as f64));
    }
    if let Some(t) = &t {
        sanlock::row("sanlock client init -s (lockspace)", String::new(), Some(secs(t.init_lockspace)), None);
        sanlock::row("sanlock client init -r (resource)", String::new(), Some(secs(t.init_resource)), None);
        println!("\nsanlock figures go through its CLI (one process spawn and daemon round trip each); highlander's are library calls.");
    }
}
