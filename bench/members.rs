//! `hl-bench-members`: a lockspace on a set of devices (issue 13), side by
//! side with a one-device lockspace on the same disk:
//! 1. uncontended acquire and release, 1 device vs 3 (three files in DIR),
//!    at the default io_timeout; target: 3 devices within 1.3x of 1;
//! 2. one member 100 ms slow (its every I/O delayed by the fault hook):
//!    acquire latency next to a healthy set, and fencing events over 10 T;
//! 3. one member hung (its I/O delayed by an hour from some point): acquire
//!    latency and fencing events of the set; and for a one-device lockspace
//!    whose device hangs, the time until the host is Failing, fenced (its
//!    guests killed) and Lost, next to sanlock's 8 T (from its documented
//!    timing, not measured);
//! 4. renewal I/O per member per renewal interval on a quiet host: reads,
//!    writes and bytes, counted by the fault hook (which sees every I/O's
//!    sector count).
//!
//! Usage: hl-bench-members [--dir DIR] [--iterations N] [--io-timeout-ms MS]
//! DIR (default target/bench) must be on the local disk to measure. MS
//! (default 500) is T for parts 2 to 4. Prints figures; asserts nothing.

use testkit::samples::{ms, Samples};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::clock::Mono;
use engine::error::IoOp;
use engine::storage::{Fault, FaultHook};
use engine::timing::DEFAULT_IO_TIMEOUT;
use engine::{AcquireRequest, Health, Holder, InitOptions, JoinOptions, Lockspace, Mode};

const MAX_HOSTS: u32 = 64;
const MEMBERS: usize = 3;
/// The member parts 2 and 3 slow down or hang (the second of three).
const FAULTY: usize = 1;
const SLOW: Duration = Duration::from_millis(100);
const HUNG: Duration = Duration::from_secs(3600);
/// sanlock starts recovery (kills the lease holders) at id_renewal_fail =
/// 8 x io_timeout after its last renewal (its documented timing).
const SANLOCK_FENCE_T: f64 = 8.0;

struct Args {
    dir: PathBuf,
    iterations: usize,
    io_timeout: Duration,
}

fn parse_args() -> Args {
    let mut args = Args { dir: PathBuf::from("target/bench"), iterations: 200, io_timeout: Duration::from_millis(500) };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--dir" => args.dir = PathBuf::from(value()),
            "--iterations" => args.iterations = value().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage("--iterations takes a positive number")),
            "--io-timeout-ms" => args.io_timeout = Duration::from_millis(value().parse().unwrap_or_else(|_| usage("--io-timeout-ms takes milliseconds"))),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    args
}

fn usage(why: &str) -> ! {
    eprintln!("hl-bench-members: {why}\nusage: hl-bench-members [--dir DIR] [--iterations N] [--io-timeout-ms MS]");
    std::process::exit(2)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn header(a: &str, b: &str, c: &str) {
    println!("{:<52} {a:>22} {b:>26} {c:>9}", "");
}

fn row(what: &str, a: String, b: String, c: String) {
    println!("{what:<52} {a:>22} {b:>26} {c:>9}");
}

fn ratio(num: Duration, den: Duration) -> f64 {
    num.as_secs_f64() / den.as_secs_f64().max(1e-9)
}

/// Per member: the faults to inject (switchable while the host runs), and
/// a tally of every I/O's sectors, by operation.
#[derive(Default)]
struct Hook {
    slow: AtomicU64,
    hung: AtomicU64,
    read_sectors: [AtomicU64; 5],
    written_sectors: [AtomicU64; 5],
}

impl FaultHook for Hook {
    fn on_io(&self, member: usize, op: IoOp, _sector: u64, count: u64) -> Fault {
        match op {
            IoOp::Read => self.read_sectors[member].fetch_add(count, Ordering::Relaxed),
            IoOp::Write => self.written_sectors[member].fetch_add(count, Ordering::Relaxed),
        };
        if self.hung.load(Ordering::Relaxed) & (1 << member) != 0 {
            Fault::Delay(HUNG)
        } else if self.slow.load(Ordering::Relaxed) & (1 << member) != 0 {
            Fault::Delay(SLOW)
        } else {
            Fault::Proceed
        }
    }
}

impl Hook {
    fn sectors(&self) -> Vec<(u64, u64)> {
        (0..5).map(|i| (self.read_sectors[i].load(Ordering::Relaxed), self.written_sectors[i].load(Ordering::Relaxed))).collect()
    }
}

/// A fresh lockspace on `n` files in `dir` (n = 1: one plain device).
fn lockspace(dir: &Path, tag: &str, n: usize, io_timeout: Duration) -> (Vec<PathBuf>, engine::format::Header) {
    let paths: Vec<PathBuf> = (1..=n).map(|i| dir.join(format!("members-{tag}-{i}.lockspace"))).collect();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    let mut opts = InitOptions::new("bench");
    opts.max_hosts = MAX_HOSTS;
    opts.resource_slots = 16;
    opts.io_timeout = io_timeout;
    let header = if n == 1 { engine::init::init(&paths[0], &opts) } else { engine::init::init_members(&paths, &opts) }.expect("init lockspace");
    (paths, header)
}

fn join(paths: &[PathBuf], hook: &Arc<Hook>) -> Lockspace {
    let mut o = JoinOptions::members(paths.to_vec(), 1, "bench-host");
    o.fault = Some(hook.clone());
    Lockspace::join(o).expect("join")
}

fn request() -> AcquireRequest {
    AcquireRequest { identity: "file:/bench/members-disk0".into(), mode: Mode::Exclusive, holder: Holder { uuid: [7; 16], name: "bench-vm".into() }, expect_lver: None }
}

/// What a health watcher saw.
#[derive(Default, Debug)]
struct Seen {
    /// Healthy -> Failing transitions (renewals failing).
    failing: u64,
    /// Polls that found Failing at or past its fence_at (guests fenced).
    fenced: bool,
    lost: bool,
    first_failing: Option<Mono>,
    fence_at: Option<Mono>,
    first_fenced: Option<Mono>,
    first_lost: Option<Mono>,
}

impl Seen {
    /// Fencing events: a Failing spell that reached its fence_at, or a loss.
    fn fencing_events(&self) -> u64 {
        u64::from(self.fenced || self.lost)
    }
}

/// Polls a lockspace's health every millisecond on its own thread.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Seen>,
}

impl Watch {
    fn start(ls: &Lockspace) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let (ls, flag) = (ls.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            let mut was_failing = false;
            while !flag.load(Ordering::Relaxed) {
                let now = Mono::now();
                match ls.health() {
                    Health::Healthy { .. } => was_failing = false,
                    Health::Failing { fence_at, .. } => {
                        if !was_failing {
                            seen.failing += 1;
                            seen.first_failing.get_or_insert(now);
                            seen.fence_at.get_or_insert(fence_at);
                        }
                        was_failing = true;
                        if now >= fence_at && !seen.fenced {
                            seen.fenced = true;
                            seen.first_fenced = Some(now);
                        }
                    }
                    Health::Lost { .. } => {
                        if !seen.lost {
                            seen.lost = true;
                            seen.first_lost = Some(now);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        Watch { stop, thread }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("health watcher")
    }
}

/// Acquire and release rounds; `pace`: start one round every this long.
struct Rounds {
    acquire: Samples,
    release: Samples,
    /// Acquire latencies of the rounds that started within the first T.
    early: Samples,
    errors: Vec<String>,
    /// Median (reads, writes) per successful acquire, summed over the members.
    acquire_io: (u64, u64),
}

fn rounds(ls: &Lockspace, n: usize, pace: Duration, early_for: Duration) -> Rounds {
    let req = request();
    let (mut acq, mut rel, mut early, mut errors, mut io_r, mut io_w) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let t0 = Instant::now();
    for i in 0..n {
        let started = t0.elapsed();
        let (r0, w0) = ls.io_counts();
        let t = Instant::now();
        match ls.acquire(&req) {
            Ok(lease) => {
                let took = t.elapsed();
                let (r1, w1) = ls.io_counts();
                io_r.push(r1 - r0);
                io_w.push(w1 - w0);
                acq.push(took);
                if started < early_for {
                    early.push(took);
                }
                let t = Instant::now();
                match ls.release(&lease) {
                    Ok(()) => rel.push(t.elapsed()),
                    Err(e) => errors.push(format!("round {i}: release: {e:?}")),
                }
            }
            Err(e) => errors.push(format!("round {i}: acquire: {e:?}")),
        }
        let next = pace * (i as u32 + 1);
        if let Some(wait) = next.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    Rounds { acquire: Samples::new(acq), release: Samples::new(rel), early: Samples::new(early), errors, acquire_io: (median(io_r), median(io_w)) }
}

// ------------------------------------------------------------ 1. latency ---

fn unpaced(dir: &Path, n: usize, iterations: usize) -> Rounds {
    let (paths, _) = lockspace(dir, &format!("lat{n}"), n, DEFAULT_IO_TIMEOUT);
    let ls = join(&paths, &Arc::new(Hook::default()));
    // The first acquire names the slot; measure the steady state after it.
    ls.release(&ls.acquire(&request()).expect("acquire")).expect("release");
    let r = rounds(&ls, iterations, Duration::ZERO, Duration::ZERO);
    ls.leave().expect("leave");
    r
}

// ------------------------------------------------------- 2 and 3. faults ---

struct Spell {
    rounds: Rounds,
    seen: Seen,
    renewal_failures: u64,
    member_state: String,
}

/// `iterations` rounds spread over a window of 10 T, with `set` applied
/// to the hook at its start; then the window's health and member state.
fn spell(ls: &Lockspace, hook: &Hook, iterations: usize, set: impl FnOnce(&Hook)) -> Spell {
    let t = ls.timeouts();
    let window = t.io_timeout * 10;
    let failures0 = ls.renewal_failures();
    let watch = Watch::start(ls);
    set(hook);
    let rounds = rounds(ls, iterations, window / iterations as u32, t.io_timeout);
    let seen = watch.finish();
    let member_state = ls.members().iter().map(|m| m.state.as_str()).collect::<Vec<_>>().join("/");
    Spell { rounds, seen, renewal_failures: ls.renewal_failures() - failures0, member_state }
}

struct Faults {
    healthy: Spell,
    slow: Spell,
    hung: Spell,
}

fn faults_on_a_set(dir: &Path, iterations: usize, io_timeout: Duration) -> Faults {
    let (paths, _) = lockspace(dir, "faults", MEMBERS, io_timeout);
    let hook = Arc::new(Hook::default());
    let ls = join(&paths, &hook);
    ls.release(&ls.acquire(&request()).expect("acquire")).expect("release");
    let healthy = spell(&ls, &hook, iterations, |_| {});
    let slow = spell(&ls, &hook, iterations, |h| h.slow.store(1 << FAULTY, Ordering::Relaxed));
    hook.slow.store(0, Ordering::Relaxed);
    // Let the slow member's last I/Os land before it hangs.
    std::thread::sleep(SLOW * 2);
    let hung = spell(&ls, &hook, iterations, |h| h.hung.store(1 << FAULTY, Ordering::Relaxed));
    // The hung I/Os sleep on; the process exits without waiting for them.
    ls.stop();
    Faults { healthy, slow, hung }
}

/// A one-device lockspace whose device hangs: when the host turns Failing,
/// is fenced, and is Lost, counted from the hang and from the start of the
/// last renewal that landed (which every deadline counts from).
struct SoloHang {
    io_timeout: Duration,
    failing_after: Option<Duration>,
    fenced_after: Option<Duration>,
    lost_after: Option<Duration>,
    fence_from_renewal: Option<Duration>,
}

fn solo_hang(dir: &Path, io_timeout: Duration) -> SoloHang {
    let (paths, _) = lockspace(dir, "solo-hang", 1, io_timeout);
    let hook = Arc::new(Hook::default());
    let ls = join(&paths, &hook);
    let t = ls.timeouts();
    // Let it settle into its renewal rhythm.
    std::thread::sleep(t.renew_interval * 3);
    let watch = Watch::start(&ls);
    let hang = Mono::now();
    let renewed = ls.renewed_at();
    hook.hung.store(1, Ordering::Relaxed);
    let until = hang.add(t.lease_expiry + t.io_timeout);
    while Mono::now() < until && matches!(ls.health(), Health::Healthy { .. } | Health::Failing { .. }) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20));
    let seen = watch.finish();
    // The last renewal that landed may be the one in flight at the hang.
    let last = ls.renewed_at().0.max(renewed.0);
    ls.stop();
    SoloHang {
        io_timeout,
        failing_after: seen.first_failing.map(|m| m.since(hang)),
        fenced_after: seen.first_fenced.map(|m| m.since(hang)),
        lost_after: seen.first_lost.map(|m| m.since(hang)),
        fence_from_renewal: seen.fence_at.map(|f| f.since(Mono(last))),
    }
}

// ------------------------------------------------------ 4. renewal I/O ---

struct RenewalIo {
    members: usize,
    renewals: u64,
    /// Per member: (reads, writes) per renewal, from member_io_counts().
    per_renewal: Vec<(f64, f64)>,
    /// Per member: (bytes read, bytes written) per renewal, from the hook.
    bytes: Vec<(f64, f64)>,
}

fn renewal_io(dir: &Path, n: usize, io_timeout: Duration) -> RenewalIo {
    let (paths, header) = lockspace(dir, &format!("renew{n}"), n, io_timeout);
    let hook = Arc::new(Hook::default());
    let ls = join(&paths, &hook);
    let t = ls.timeouts();
    std::thread::sleep(t.renew_interval * 2);
    let (c0, s0, r0) = (ls.member_io_counts(), hook.sectors(), ls.incarnation().renewal);
    std::thread::sleep(t.renew_interval * 20);
    let (c1, s1, r1) = (ls.member_io_counts(), hook.sectors(), ls.incarnation().renewal);
    ls.leave().expect("leave");
    let renewals = (r1 - r0).max(1);
    let per = |x: u64| x as f64 / renewals as f64;
    let ss = header.sector_size as u64;
    RenewalIo {
        members: n,
        renewals: r1 - r0,
        per_renewal: (0..n)
            .map(|i| {
                let (a, b) = (c0[i].unwrap_or_default(), c1[i].unwrap_or_default());
                (per(b.0 - a.0), per(b.1 - a.1))
            })
            .collect(),
        bytes: (0..n).map(|i| (per((s1[i].0 - s0[i].0) * ss), per((s1[i].1 - s0[i].1) * ss))).collect(),
    }
}

// --------------------------------------------------------------- report ---

fn met(ok: bool) -> String {
    if ok { "met".into() } else { "MISSED".into() }
}

fn print_spell(name: &str, s: &Spell, healthy: &Spell) {
    let (a, h) = (&s.rounds.acquire, &healthy.rounds.acquire);
    for (p, label) in [(50, "p50"), (99, "p99")] {
        row(&format!("{name}: acquire {label}"), ms(a.pct(p)), ms(h.pct(p)), format!("{:.2}x", ratio(a.pct(p), h.pct(p))));
    }
    row(&format!("{name}: acquire max / release p50"), format!("{} / {}", ms(a.max()), ms(s.rounds.release.pct(50))), format!("{} / {}", ms(h.max()), ms(healthy.rounds.release.pct(50))), String::new());
    if !s.rounds.early.0.is_empty() {
        row(&format!("{name}: acquire p50 / max, first T after the fault"), format!("{} / {}", ms(s.rounds.early.pct(50)), ms(s.rounds.early.max())), format!("({} rounds)", s.rounds.early.0.len()), String::new());
    }
    let errors = if s.rounds.errors.is_empty() { "0".to_string() } else { format!("{}: {}", s.rounds.errors.len(), s.rounds.errors[0]) };
    row(&format!("{name}: failed acquires/releases"), errors, format!("{}", healthy.rounds.errors.len()), String::new());
    row(
        &format!("{name}: fencing events in 10 T (expected 0)"),
        format!("{} (failing {}, renewal failures {})", s.seen.fencing_events(), s.seen.failing, s.renewal_failures),
        format!("{} (failing {})", healthy.seen.fencing_events(), healthy.seen.failing),
        String::new(),
    );
    row(&format!("{name}: member states after the window"), s.member_state.clone(), healthy.member_state.clone(), String::new());
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.dir).expect("create --dir");
    let t = args.io_timeout;
    println!(
        "hl-bench-members: lockspace files in {} ({} iterations, {MAX_HOSTS} hosts, {MEMBERS} members = three files on the same disk; faults: T = {} ms)",
        args.dir.display(),
        args.iterations,
        t.as_millis()
    );
    let one = unpaced(&args.dir, 1, args.iterations);
    let three = unpaced(&args.dir, MEMBERS, args.iterations);
    let faults = faults_on_a_set(&args.dir, args.iterations, t);
    let solo = solo_hang(&args.dir, t);
    let renew1 = renewal_io(&args.dir, 1, t);
    let renew3 = renewal_io(&args.dir, MEMBERS, t);

    println!("\nseveral devices: acquire and release, io_timeout {} s, {} rounds back to back", DEFAULT_IO_TIMEOUT.as_secs(), args.iterations);
    header("1 device", "3 devices", "3/1");
    let mut worst: f64 = 0.0;
    for (p, label) in [(50, "p50"), (99, "p99")] {
        for (what, a, b) in [("acquire", &one.acquire, &three.acquire), ("release", &one.release, &three.release)] {
            let r = ratio(b.pct(p), a.pct(p));
            worst = worst.max(r);
            row(&format!("uncontended {what} {label}"), ms(a.pct(p)), ms(b.pct(p)), format!("{r:.2}x"));
        }
    }
    row("I/Os per acquire, all members (reads + writes)", format!("{} + {}", one.acquire_io.0, one.acquire_io.1), format!("{} + {}", three.acquire_io.0, three.acquire_io.1), String::new());
    row("target: 3 devices within 1.3x of 1 (p50 and p99)", String::new(), met(worst <= 1.3), format!("{worst:.2}x"));
    if !one.errors.is_empty() || !three.errors.is_empty() {
        row("failed acquires/releases", one.errors.len().to_string(), three.errors.len().to_string(), String::new());
        for e in one.errors.iter().map(|e| ("1 device", e)).chain(three.errors.iter().map(|e| ("3 devices", e))).take(5) {
            println!("  {}: {}", e.0, e.1);
        }
    }

    let window = t * 10;
    println!(
        "\nseveral devices: one member of 3 slow ({} ms per I/O) or hung (an hour per I/O), T = {} ms; {} rounds paced over 10 T = {}",
        SLOW.as_millis(),
        t.as_millis(),
        args.iterations,
        secs(window)
    );
    header("faulty", "healthy 3 devices", "f/h");
    print_spell(&format!("member {} slow", FAULTY + 1), &faults.slow, &faults.healthy);
    print_spell(&format!("member {} hung", FAULTY + 1), &faults.hung, &faults.healthy);

    println!("\nseveral devices: time until fencing when the only device hangs (1 device), T = {} ms", t.as_millis());
    header("highlander", "sanlock", "sanlock/hl");
    let tt = |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{} = {:.2} T", secs(d), d.as_secs_f64() / solo.io_timeout.as_secs_f64()));
    row("1 device hung: Failing after the hang", tt(solo.failing_after), "-".into(), String::new());
    let sanlock_fence = solo.io_timeout.mul_f64(SANLOCK_FENCE_T);
    row(
        "1 device hung: fencing (guests killed) after the hang",
        tt(solo.fenced_after),
        format!("8T = {} (documented)", secs(sanlock_fence)),
        solo.fenced_after.map_or(String::new(), |d| format!("{:.1}x", ratio(sanlock_fence, d))),
    );
    row("  the same, from the start of the last renewal", tt(solo.fence_from_renewal), format!("8T = {}", secs(sanlock_fence)), String::new());
    row("  at io_timeout 10 s (3.5T vs 8T)", "35 s".into(), "80 s (documented)".into(), format!("{:.1}x", 8.0 / 3.5));
    row("1 device hung: leases void (Lost) after the hang", tt(solo.lost_after), "-".into(), String::new());
    row(
        "3 devices, 1 hung: fencing events in 10 T",
        faults.hung.seen.fencing_events().to_string(),
        "-".into(),
        String::new(),
    );

    println!(
        "\nseveral devices: renewal I/O per host per renewal interval (T/2 = {} ms), by member; quiet host, {} / {} renewals counted (1 / 3 devices)",
        (t / 2).as_millis(),
        renew1.renewals,
        renew3.renewals
    );
    header("reads + writes", "bytes read + written", "");
    for r in [&renew1, &renew3] {
        for (i, ((rd, wr), (brd, bwr))) in r.per_renewal.iter().zip(&r.bytes).enumerate() {
            row(&format!("{} device{}: member {}", r.members, if r.members == 1 { "" } else { "s" }, i + 1), format!("{rd:.2} + {wr:.2}"), format!("{:.1} KiB + {:.1} KiB", brd / 1024.0, bwr / 1024.0), String::new());
        }
        let (rd, wr) = r.per_renewal.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let (brd, bwr) = r.bytes.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        row(&format!("{} device{}: all members", r.members, if r.members == 1 { "" } else { "s" }), format!("{rd:.2} + {wr:.2}"), format!("{:.1} KiB + {:.1} KiB", brd / 1024.0, bwr / 1024.0), String::new());
    }
    println!("\nsanlock's fencing figure is its documented id_renewal_fail = 8 x io_timeout (not measured here). With several disks per resource it");
    println!("uses a majority of them for resource leases only; its lockspace (host lease) is on one disk, so a hung lockspace disk fences at 8T.");
    println!("A shared 2-core machine: latencies are noisy (other work runs concurrently).");
}
