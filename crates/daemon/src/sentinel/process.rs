//! The sentinel process (`highlanderd --fence-sentinel`): watches its
//! daemon, kills it if it hangs, and after its exit fences the guests it
//! left holding leases unless a later daemon takes them over first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

use super::handover::{read_owners, Handover, Owner};
use super::spec::{SpaceTimes, Spec, FLAG};
use crate::fence::{self, escalate};
use crate::guest::{self, Guest, Pidfd};
use crate::heartbeat;
use crate::persist::Store;
use crate::DiskKey;
use engine::clock::Mono;

/// `highlanderd --fence-sentinel`: reads its instructions on stdin, answers
/// `ready`, waits for its daemon to exit, then fences what it left behind.
pub fn run() -> ExitCode {
    block_stop_signals();
    let _ = nix::sys::prctl::set_name(c"hl-sentinel");
    let mut line = String::new();
    let spec = std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string()).and_then(|_| serde_json::from_str::<Spec>(&line).map_err(|e| e.to_string()));
    let spec = match spec {
        Ok(s) => s,
        Err(e) => {
            eprintln!("highlanderd {FLAG}: no valid instructions on stdin ({e}); this mode is started by highlanderd itself");
            return ExitCode::FAILURE;
        }
    };
    let level = spec.log_level.parse().unwrap_or(log::LevelFilter::Info);
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format(|buf, r| writeln!(buf, "[{} {} fence-sentinel] {}", buf.timestamp_millis(), r.level(), r.args()))
        .try_init();
    let daemon = Pidfd::open(spec.daemon_pid).ok();
    let parent = nix::unistd::getppid().as_raw() as u32;
    // The pidfd was opened first: if the daemon is still our parent now,
    // the pidfd is the daemon's (otherwise it has exited already).
    let daemon = daemon.filter(|_| parent == spec.daemon_pid);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"ready\n").and_then(|()| out.flush());
    drop(out);
    // The daemon closes its end: fence helpers must not write into it.
    let _ = nix::unistd::dup2_stdout(std::io::stderr());
    if let Some(pidfd) = daemon {
        watch_live(&spec, &pidfd);
    }
    watch(&spec);
    ExitCode::SUCCESS
}

/// While the daemon runs: waits for its exit, or, should it hang with
/// leases at stake past the fencing time (`heartbeat.rs`), SIGKILLs it.
fn watch_live(spec: &Spec, daemon: &Pidfd) {
    let watched: Vec<heartbeat::Watched> =
        spec.lockspaces.iter().map(|(name, t)| heartbeat::Watched { name, fence_begin: t.fence_begin(), stale: t.io_timeout() / 2 }).collect();
    let round = spec.lockspaces.iter().map(|(_, t)| heartbeat::round(t.io_timeout())).min().unwrap_or(Duration::from_secs(1));
    let (mut awake_since, mut last_round) = (Mono::now(), Mono::now());
    while !daemon.wait_exit(round) {
        let now = Mono::now();
        // A round that came this late means the sentinel was not running
        // (the host froze, or starved it): the daemon may just be waking too.
        if now.since(last_round) > 2 * round {
            awake_since = now;
        }
        last_round = now;
        let Some(why) = heartbeat::hung(&spec.state_dir, spec.fence.host_id, &watched, awake_since) else { continue };
        log::error!("highlanderd (pid {}) is alive but hung: {why}; killing it (SIGKILL) and fencing its guests", spec.daemon_pid);
        if let Err(e) = daemon.kill() {
            log::error!("cannot kill highlanderd (pid {}): {e}; fencing its guests anyway", spec.daemon_pid);
        }
        // A thread stuck in I/O keeps the process from exiting, but SIGKILL
        // has stopped every other one: none of its code runs any more.
        if !daemon.wait_exit(round) {
            log::error!("highlanderd (pid {}) has not exited {round:?} after SIGKILL (a thread stuck in I/O?); fencing its guests anyway", spec.daemon_pid);
        }
        return;
    }
}

/// The sentinel must outlive a `systemctl stop` and a Ctrl-C: only SIGKILL
/// ends it. Blocked rather than ignored, so that fence helpers (whose mask
/// std::process::Command clears) start with the usual dispositions.
fn block_stop_signals() {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(sig);
    }
    // Fails only for an invalid `how`: SIG_BLOCK is valid.
    let _ = set.thread_block();
}

/// One lockspace whose guests this sentinel answers for.
struct Plan {
    name: String,
    times: SpaceTimes,
    /// Generations of the leases held (one, unless the daemon died mid-rejoin).
    generations: BTreeSet<u64>,
    /// Guest pid -> its disks in this lockspace (for the messages).
    disks: BTreeMap<u32, Vec<String>>,
    /// Why there is no deadline from the resume state, once logged.
    no_stamp: Option<String>,
}

impl Plan {
    /// The start of the last renewal that counted, by the resume state; the
    /// Unix epoch of CLOCK_BOOTTIME (fence at once) when it cannot vouch.
    fn valid_from(&mut self, dir: &Path, host_id: u32) -> Mono {
        let file = engine::lockspace::resume_file(dir, &self.name);
        let why = match engine::lockspace::saved_renewal(&file) {
            Ok((id, generation, valid_from)) if id == host_id && self.generations.len() == 1 && self.generations.contains(&generation) => return valid_from,
            Ok((id, generation, _)) => format!("it is for host {id} generation {generation}, the leases for generation(s) {:?}", self.generations),
            Err(e) => e,
        };
        if self.no_stamp.as_ref() != Some(&why) {
            log::error!("lockspace \"{}\": no usable resume state in {} ({why}): fencing at once", self.name, file.display());
            self.no_stamp = Some(why);
        }
        Mono(0)
    }
}

/// After the daemon's exit: fences, at the deadline, the guests it left
/// holding leases, unless a later daemon takes them over first.
fn watch(spec: &Spec) {
    let dir = &spec.state_dir;
    let cfg = &spec.fence;
    // The later daemon that answers for lockspace `name` now, if any. An
    // unreadable owners file shows no take-over: we still answer (and fence).
    let taken_by = |owners: &Option<BTreeMap<String, Owner>>, name: &str| -> Option<Owner> {
        let other = owners.as_ref()?.get(name).copied()?;
        (other.daemon_pid != spec.daemon_pid || other.daemon_start != spec.daemon_start).then_some(other)
    };
    let owners = read_owners(dir);
    let table = match Store::new(dir).load(cfg.host_id) {
        Ok(t) => t,
        Err(e) => {
            log::error!("highlanderd (pid {}) exited, but its saved guests cannot be read ({e}): no guest can be fenced from here", spec.daemon_pid);
            return;
        }
    };
    let mut guests: BTreeMap<u32, (Guest, Pidfd)> = BTreeMap::new();
    let mut plans: Vec<Plan> = Vec::new();
    for (name, times) in &spec.lockspaces {
        if taken_by(&owners, name).is_some() {
            continue;
        }
        let mut plan = Plan { name: name.clone(), times: *times, generations: BTreeSet::new(), disks: BTreeMap::new(), no_stamp: None };
        for (DiskKey { lockspace: ls, identity }, d) in &table.disks {
            if ls != name {
                continue;
            }
            plan.generations.insert(d.lease.generation);
            for pid in &d.holders {
                plan.disks.entry(*pid).or_default().push(format!("{identity} ({})", d.path));
            }
        }
        plan.disks.retain(|pid, _| {
            if guests.contains_key(pid) {
                return true;
            }
            let Some(g) = table.guests.get(pid) else { return false };
            match guest::track(*pid, Some(g.start_time)) {
                Some((pidfd, _)) => {
                    // `fenced` from here on means fenced by this sentinel: one
                    // the daemon fenced once may have been resumed since, or
                    // its helper may have failed before the daemon escalated.
                    guests.insert(*pid, (Guest { fenced: false, ..g.clone() }, pidfd));
                    true
                }
                None => false,
            }
        });
        if !plan.disks.is_empty() {
            plans.push(plan);
        }
    }
    if plans.is_empty() {
        log::info!("highlanderd (pid {}) exited; no running guest holds a lease it answered for: nothing to fence", spec.daemon_pid);
        return;
    }
    for p in &mut plans {
        let fence_at = p.valid_from(dir, cfg.host_id).add(p.times.fence_begin());
        log::warn!(
            "highlanderd (pid {}) exited while {} guest(s) hold leases in lockspace \"{}\": their lock-failure actions run in {:.1?} unless a highlanderd resumes this host's lease first",
            spec.daemon_pid,
            p.disks.len(),
            p.name,
            fence_at.remaining()
        );
    }
    loop {
        let owners = read_owners(dir);
        plans.retain(|p| match taken_by(&owners, &p.name) {
            Some(other) => {
                log::info!("lockspace \"{}\": highlanderd (pid {}) took over its guests; standing down", p.name, other.daemon_pid);
                false
            }
            None => true,
        });
        for p in &mut plans {
            p.disks.retain(|pid, _| guests.get(pid).is_some_and(|(g, pidfd)| !g.fenced && !pidfd.exited()));
            if p.disks.is_empty() {
                log::info!("lockspace \"{}\": every guest that held leases is gone or fenced", p.name);
            }
        }
        plans.retain(|p| !p.disks.is_empty());
        if plans.is_empty() {
            return;
        }
        let now = Mono::now();
        let mut next: Option<Mono> = None;
        let mut due = false;
        for p in &mut plans {
            let fence_at = p.valid_from(dir, cfg.host_id).add(p.times.fence_begin());
            due |= fence_at <= now;
            next = Some(next.map_or(fence_at, |n| n.min(fence_at)));
        }
        if !due {
            let tick = plans.iter().map(|p| heartbeat::round(p.times.io_timeout())).min().expect("a plan");
            std::thread::sleep(next.expect("a plan").since(now).min(tick));
            continue;
        }
        // Decide under the hand-over lock: a daemon resuming right now
        // either has finished (and owns the lockspace) or waits for us.
        let lock = Handover::lock(dir);
        if let Err(e) = &lock {
            log::error!("{e}; fencing without the hand-over lock");
        }
        let owners = read_owners(dir);
        let mut i = 0;
        while i < plans.len() {
            let p = &mut plans[i];
            if taken_by(&owners, &p.name).is_some() {
                i += 1; // stands down at the top of the loop
                continue;
            }
            let valid_from = p.valid_from(dir, cfg.host_id);
            if Mono::now() < valid_from.add(p.times.fence_begin()) {
                i += 1;
                continue;
            }
            fence_plan(spec, p, valid_from, &mut guests);
            plans.swap_remove(i);
        }
        drop(lock);
    }
}

/// Applies the action of every guest in `p` at once (one thread each), so
/// one slow pause helper does not hold up the next guest's kill.
fn fence_plan(spec: &Spec, p: &Plan, valid_from: Mono, guests: &mut BTreeMap<u32, (Guest, Pidfd)>) {
    let expiry = valid_from.add(p.times.lease_expiry());
    let deadline = escalate::exit_deadline(valid_from, p.times.fence_deadline(), p.times.lease_expiry() - p.times.fence_deadline());
    let why = format!(
        "highlanderd (pid {}) exited and no highlanderd resumed this host's lease within the resume window ({:?} after its last renewal); its leases expire in {:.1?}",
        spec.daemon_pid,
        p.times.fence_begin(),
        expiry.remaining()
    );
    let stuck: Vec<String> = std::thread::scope(|s| {
        let fencing: Vec<_> = guests
            .iter_mut()
            .filter_map(|(pid, (g, pidfd))| {
                let disks = p.disks.get(pid).filter(|_| !g.fenced)?;
                let why = format!("{why}; disks {}", disks.join(", "));
                Some(s.spawn(move || fence::fence_now(&spec.fence, g, pidfd, &p.name, &why, deadline).stuck().then(|| g.to_string())))
            })
            .collect();
        fencing.into_iter().filter_map(|h| h.join().expect("a fence thread panicked")).collect()
    });
    if !stuck.is_empty() {
        escalate::self_fence(&spec.fence, &spec.state_dir, &format!("fence sentinel (pid {})", std::process::id()), &p.name, stuck, p.times.io_timeout() / 2);
    }
}
