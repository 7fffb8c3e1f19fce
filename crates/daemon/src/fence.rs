//! Fencing: when this host cannot renew its host lease, its guests must
//! stop using their disks before any other host may take the leases over.
//!
//! Per lockspace, a monitor watches `Lockspace::health()`. The engine's
//! timing (docs/SAFETY.md) gives, from the start of the last successful
//! renewal: lock-failure actions at `fence_begin` (3.5T), killed guests gone
//! by `fence_deadline` (4.25T), our leases void at `lease_expiry` (4.5T),
//! peers may call us dead at `host_dead` (5.5T). So:
//! - at fence_at (polled every T/10, so by fence_at + T/10 < valid_until):
//!   each affected guest's action: poweroff = SIGKILL through its pidfd;
//!   pause/restart = the fence helper (virsh, which needs no shared
//!   storage); ignore = log only;
//! - at fence_at + T/2, a pause/restart guest that still holds leases in
//!   that lockspace (the helper failed or hung) is SIGKILLed;
//! - at fence_deadline, a killed guest still alive (its pidfd has not
//!   polled readable: stuck in I/O) makes the host fence itself
//!   (`escalate.rs`);
//! - once the host lease is lost, the lockspace's leases are void: they are
//!   dropped from the table and, once every killed guest is gone (or the
//!   host escalated), the lockspace is rejoined with a new generation as
//!   soon as storage answers again.
//!
//! Every round of the monitor beats the heartbeat the fence sentinel
//! watches (`heartbeat.rs`).
//!
//! When no daemon runs (stopped or dead with leases held, not resumed in
//! time), the fence sentinel (`sentinel.rs`) applies the same actions with
//! `fence_now`, as does a daemon back too late (`fence_before_rejoin`).
//!
//! The optional watchdog is petted while no fencing has failed or stuck; it
//! is what resets the host if the daemon dies together with its sentinel,
//! or the whole host freezes, with leases held.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::Config;
use crate::escalate::{self, SelfFence};
use crate::guest::{Guest, Pidfd};
use crate::heartbeat::Heartbeat;
use proto::protocol::Action;
use crate::{Daemon, Space};
use engine::clock::Mono;
use engine::Health;

pub fn spawn(daemon: Arc<Daemon>) -> Result<(), super::StartError> {
    for i in 0..daemon.spaces.len() {
        let d = daemon.clone();
        super::thread(format!("hl-fence-{}", d.spaces[i].name), move || monitor(&d, &d.spaces[i]))?;
    }
    if let Some(dev) = daemon.cfg.watchdog.clone() {
        match open_watchdog(&daemon, &dev) {
            Ok(interval) => super::thread("hl-watchdog".into(), move || pet(&daemon, interval))?,
            Err(e) => log::warn!("watchdog {}: {e}; running without it", dev.display()),
        }
    }
    Ok(())
}

/// One failure episode of a lockspace, from its fencing time on.
struct Episode {
    /// Guests SIGKILLed (or whose kill failed), watched until they exit.
    killed: Vec<(String, Arc<Pidfd>)>,
    /// When pause/restart guests still holding leases are killed (None once done).
    holdouts_at: Option<Mono>,
    /// Every killed guest must have exited by then.
    deadline: Mono,
    escalated: bool,
}

impl Episode {
    fn begin(daemon: &Daemon, space: &Space, valid_until: Mono, why: &str) -> Episode {
        let t = space.ls().timeouts();
        let valid_from = Mono(valid_until.0.saturating_sub(t.lease_expiry.as_nanos() as u64));
        let killed = daemon.fence_space(space, why);
        let holdouts_at = Some(valid_from.add(t.fence_begin + (t.lease_expiry - t.fence_begin) / 2));
        Episode { killed, holdouts_at, deadline: escalate::exit_deadline(valid_from, t.fence_deadline, t.lease_expiry - t.fence_deadline), escalated: false }
    }

    /// Kills the holdouts when due; escalates once if a killed guest is
    /// still alive at the deadline. True once nothing is left to watch.
    fn check(&mut self, daemon: &Daemon, space: &Space) -> bool {
        let now = Mono::now();
        if self.holdouts_at.is_some_and(|at| now >= at) {
            self.holdouts_at = None;
            let killed = daemon.kill_holdouts(space);
            self.killed.extend(killed);
        }
        if !self.escalated && now >= self.deadline {
            let stuck = escalate::still_alive(&self.killed);
            self.escalated = true;
            if !stuck.is_empty() {
                daemon.escalate_stuck(space, stuck);
            }
        }
        self.escalated || (self.holdouts_at.is_none() && escalate::still_alive(&self.killed).is_empty())
    }
}

fn monitor(daemon: &Daemon, space: &Space) {
    let t = space.ls().timeouts();
    let tick = super::heartbeat::round(t.io_timeout);
    let heart = Heartbeat::new(&daemon.cfg.state_dir, &space.name);
    let mut episode: Option<Episode> = None;
    while !daemon.stopping() {
        heart.beat();
        match space.ls().health() {
            Health::Healthy { .. } => {
                if episode.take().is_some() {
                    log::warn!("lockspace \"{}\": renewals recovered after fencing began", space.name);
                }
                std::thread::sleep(tick);
            }
            Health::Failing { fence_at, valid_until, error } => {
                let now = Mono::now();
                if now < fence_at {
                    std::thread::sleep(tick.min(fence_at.since(now)));
                    continue;
                }
                let why = || format!("renewals of the host lease have failed for {:.1?} ({error})", now.since(fence_at) + t.fence_begin);
                episode.get_or_insert_with(|| Episode::begin(daemon, space, valid_until, &why())).check(daemon, space);
                std::thread::sleep(tick);
            }
            Health::Lost { why } => {
                // Every lease is void now (an episode begun here has its
                // deadline a margin from now): holdouts are killed at once,
                // and killed guests must be gone before a new generation
                // frees their disks for every peer.
                let mut e = episode.take().unwrap_or_else(|| Episode::begin(daemon, space, Mono::now(), &format!("the host lease was lost: {why}")));
                e.holdouts_at = e.holdouts_at.map(|_| Mono::now());
                e.check(daemon, space);
                daemon.drop_void_leases(space, &why);
                while !e.check(daemon, space) && !daemon.stopping() {
                    heart.beat();
                    std::thread::sleep(tick);
                }
                rejoin(daemon, space, &heart);
            }
        }
    }
}

/// Joins again with a new generation once storage answers.
fn rejoin(daemon: &Daemon, space: &Space, heart: &Heartbeat) {
    let t = space.ls().timeouts();
    // No write of the lost lease may be issued after the join's first read.
    space.ls().stop();
    while !daemon.stopping() {
        heart.beat();
        match engine::Lockspace::join(space.join.clone()) {
            Ok(ls) => {
                log::warn!("lockspace \"{}\": rejoined as host {} with generation {}", space.name, ls.host_id(), ls.generation());
                *space.handle.write() = ls;
                return;
            }
            Err(e) => {
                log::error!("lockspace \"{}\": cannot rejoin yet: {e}", space.name);
                std::thread::sleep(t.io_timeout);
            }
        }
    }
}

/// What fencing needs of the configuration; the fence sentinel gets it from
/// the daemon that started it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FenceConfig {
    pub host_id: u32,
    pub host_name: String,
    /// `fence_helper`: argv template for pause/restart; None = virsh.
    pub fence_helper: Option<Vec<String>>,
    /// What to do when a killed guest does not exit in time.
    pub self_fence: SelfFence,
}

impl From<&Config> for FenceConfig {
    fn from(cfg: &Config) -> FenceConfig {
        FenceConfig { host_id: cfg.host_id, host_name: cfg.host_name.clone(), fence_helper: cfg.fence_helper.clone(), self_fence: cfg.self_fence.clone() }
    }
}

impl FenceConfig {
    /// `host ID "NAME"`, as every fence message names this host.
    pub fn host(&self) -> String {
        format!("host {} \"{}\"", self.host_id, self.host_name)
    }
}

/// Applies `g`'s lock-failure action and marks it fenced.
pub fn apply(cfg: &Config, g: &mut Guest, pidfd: Option<&Pidfd>, lockspace: &str, why: &str) -> bool {
    g.fenced = true;
    let cfg = FenceConfig::from(cfg);
    let host = cfg.host();
    match g.action {
        Action::Poweroff | Action::Default => match pidfd.map(Pidfd::kill) {
            Some(Ok(())) => {
                log::error!("fenced: {g} on {host} killed (on_lockfailure poweroff): lockspace \"{lockspace}\": {why}");
                true
            }
            Some(Err(e)) => {
                log::error!("fence FAILED: cannot kill {g} on {host}: {e}; lockspace \"{lockspace}\": {why}");
                false
            }
            None => true,
        },
        Action::Pause | Action::Restart => {
            log::error!("fenced: {g} on {host}: running the fence helper ({}): lockspace \"{lockspace}\": {why}", g.action);
            let commands = helper_commands(&cfg, g);
            let who = g.to_string();
            match std::thread::Builder::new().name("hl-fence-helper".into()).spawn(move || run_helpers(&commands, &who, None)) {
                Ok(_) => true,
                Err(e) => {
                    log::error!("fence FAILED: cannot start a thread to run the fence helper for {g} on {host}: {e}");
                    false
                }
            }
        }
        Action::Ignore => {
            log::error!("NOT fenced (on_lockfailure ignore): {g} on {host} keeps running although its leases will lapse: lockspace \"{lockspace}\": {why}");
            true
        }
    }
}

/// Runs the helper commands in order; true when every one succeeded, each
/// within `limit` if given (a helper past it is left running).
pub(super) fn run_helpers(commands: &[Vec<String>], who: &str, limit: Option<Duration>) -> bool {
    commands.iter().all(|argv| {
        let run = Command::new(&argv[0]).args(&argv[1..]).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn();
        let outcome = run.map_err(|e| format!("cannot run it: {e}")).and_then(|child| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            std::thread::Builder::new().spawn(move || tx.send(child.wait_with_output())).map_err(|e| format!("cannot start a thread to wait for it: {e}"))?;
            let waited = match limit {
                Some(limit) => rx.recv_timeout(limit).map_err(|_| format!("no answer within {limit:?}")),
                None => rx.recv().map_err(|_| "lost track of it".to_owned()),
            };
            match waited? {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
                Err(e) => Err(e.to_string()),
            }
        });
        match &outcome {
            Ok(()) => log::info!("fence helper for {who}: `{}` succeeded", argv.join(" ")),
            Err(why) => log::error!("fence helper for {who}: `{}` failed: {why}", argv.join(" ")),
        }
        outcome.is_ok()
    })
}

/// How `fence_now` ended for one guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fenced {
    /// Killed and gone, or paused / restarted by a helper that succeeded in time.
    Done,
    /// `on_lockfailure ignore`: logged only, the guest runs on.
    Ignored,
    /// SIGKILL could not be sent (logged as `fence FAILED`).
    KillFailed,
    /// Killed, but still not gone at the deadline (stuck in I/O?).
    NotGone,
}

impl Fenced {
    /// The guest still runs although it had to die: the host must fence itself.
    pub fn stuck(self) -> bool {
        matches!(self, Fenced::NotGone | Fenced::KillFailed)
    }
}

/// Applies `g`'s lock-failure action *now* and waits for it to take effect,
/// for callers with no monitor behind them (a daemon about to join afresh,
/// the fence sentinel): a pause or restart counts only if its helper
/// succeeds within half the time left until `deadline`; otherwise (and for
/// poweroff) the guest is SIGKILLed and waited for until `deadline`.
pub fn fence_now(cfg: &FenceConfig, g: &mut Guest, pidfd: &Pidfd, lockspace: &str, why: &str, deadline: Mono) -> Fenced {
    g.fenced = true;
    let host = cfg.host();
    if g.action == Action::Ignore {
        log::error!("NOT fenced (on_lockfailure ignore): {g} on {host} keeps running without leases: lockspace \"{lockspace}\": {why}");
        return Fenced::Ignored;
    }
    if matches!(g.action, Action::Pause | Action::Restart) {
        log::error!("fenced: {g} on {host}: running the fence helper ({}): lockspace \"{lockspace}\": {why}", g.action);
        if run_helpers(&helper_commands(cfg, g), &g.to_string(), Some(deadline.remaining() / 2)) {
            return Fenced::Done;
        }
    }
    if let Err(e) = pidfd.kill() {
        log::error!("fence FAILED: cannot kill {g} on {host}: {e}; lockspace \"{lockspace}\": {why}");
        return Fenced::KillFailed;
    }
    log::error!("fenced: {g} on {host} killed: lockspace \"{lockspace}\": {why}");
    if pidfd.wait_exit(deadline.remaining()) {
        Fenced::Done
    } else {
        Fenced::NotGone
    }
}

/// Fences a guest whose leases lapsed while highlanderd was down, before
/// joining afresh: the new generation frees its disks for every peer at
/// once, so the fence must already have taken effect (`fence_now`); a
/// guest still alive `limit` after its fence makes the host fence itself.
pub fn fence_before_rejoin(cfg: &Config, g: &mut Guest, pidfd: &Pidfd, lockspace: &str, limit: Duration) {
    let fence = FenceConfig::from(cfg);
    if fence_now(&fence, g, pidfd, lockspace, "its leases lapsed while highlanderd was down", Mono::now().add(limit)).stuck() {
        escalate::self_fence(&fence, &cfg.state_dir, &format!("highlanderd (pid {}) before joining afresh", std::process::id()), lockspace, vec![g.to_string()], limit);
    }
}

/// The helper invocation(s) for a pause or restart.
fn helper_commands(cfg: &FenceConfig, g: &Guest) -> Vec<Vec<String>> {
    let uri = if g.uri.is_empty() { "qemu:///system".to_owned() } else { g.uri.clone() };
    let uuid = g.uuid_string();
    match &cfg.fence_helper {
        Some(template) => {
            let fill = |arg: &String| {
                arg.replace("{action}", &g.action.to_string()).replace("{uri}", &uri).replace("{uuid}", &uuid).replace("{name}", &g.name).replace("{pid}", &g.pid.to_string())
            };
            vec![template.iter().map(fill).collect()]
        }
        None => {
            let virsh = |verb: &str| ["virsh", "--connect", &uri, verb, &uuid].map(str::to_owned).to_vec();
            match g.action {
                Action::Restart => vec![virsh("destroy"), virsh("start")],
                _ => vec![virsh("suspend")],
            }
        }
    }
}

impl Daemon {
    /// Guests holding leases in `space`.
    fn holders_in(&self, space: &Space) -> Vec<u32> {
        let table = self.table.lock();
        let mut pids: Vec<u32> = table.disks.iter().filter(|(k, _)| k.0 == space.name).flat_map(|(_, d)| d.holders.iter().copied()).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Fences the guests holding leases in `space`; returns those it killed.
    fn fence_space(&self, space: &Space, why: &str) -> Vec<(String, Arc<Pidfd>)> {
        self.holders_in(space).into_iter().filter_map(|pid| self.fence_guest(pid, &space.name, why)).collect()
    }

    /// Applies one guest's lock-failure action (the monitor calls it once
    /// per failure episode); returns the guest and its pidfd if the action
    /// was a kill, sent or failed.
    pub(super) fn fence_guest(&self, pid: u32, lockspace: &str, why: &str) -> Option<(String, Arc<Pidfd>)> {
        let mut g = self.table.lock().guests.get(&pid).cloned()?;
        let disks: Vec<String> = self.table.lock().disks.iter().filter(|(k, d)| k.0 == lockspace && d.holders.contains(&pid)).map(|(k, d)| format!("{} ({})", k.1, d.path)).collect();
        let why = format!("{why}; disks {}", disks.join(", "));
        let pidfd = self.watcher.pidfd(pid);
        if !apply(&self.cfg, &mut g, pidfd.as_deref(), lockspace, &why) {
            self.fence_failed.store(true, Ordering::SeqCst);
        }
        if let Some(entry) = self.table.lock().guests.get_mut(&pid) {
            entry.fenced = true;
        }
        self.persist();
        matches!(g.action, Action::Poweroff | Action::Default).then(|| pidfd.map(|p| (g.to_string(), p))).flatten()
    }

    /// Kills pause/restart guests that still hold leases in `space`;
    /// returns those it killed.
    fn kill_holdouts(&self, space: &Space) -> Vec<(String, Arc<Pidfd>)> {
        let mut killed = Vec::new();
        for pid in self.holders_in(space) {
            let Some(g) = self.table.lock().guests.get(&pid).cloned() else { continue };
            if g.action == Action::Ignore || g.action == Action::Poweroff {
                continue;
            }
            let Some(pidfd) = self.watcher.pidfd(pid).filter(|p| !p.exited()) else { continue };
            match pidfd.kill() {
                Ok(()) => log::error!("fenced: {g} still held leases in lockspace \"{}\" after the fence helper ran; killed it", space.name),
                Err(e) => {
                    log::error!("fence FAILED: cannot kill {g}: {e}");
                    self.fence_failed.store(true, Ordering::SeqCst);
                }
            }
            killed.push((g.to_string(), pidfd));
        }
        killed
    }

    /// The host lease is gone: every lease in `space` is void.
    fn drop_void_leases(&self, space: &Space, why: &str) {
        let mut table = self.table.lock();
        let before = table.disks.len();
        let void: Vec<_> = table.disks.iter().filter(|(k, _)| k.0 == space.name).map(|(k, _)| k.clone()).collect();
        for k in &void {
            let d = table.disks.remove(k).expect("present");
            log::error!("lease void: disk {} ({}) lockspace \"{}\" host {} \"{}\": {why}", k.1, d.path, k.0, self.cfg.host_id, self.cfg.host_name);
        }
        let changed = table.disks.len() != before;
        drop(table);
        if changed {
            self.persist();
        }
    }
}

// ------------------------------------------------------------ watchdog ---

static WATCHDOG: Mutex<Option<File>> = Mutex::new(None);
/// The armed watchdog's device, if it resets the host in time when no
/// longer petted from the fence deadline on (`Timeouts::watchdog_in_time`).
static WATCHDOG_IN_TIME: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;
const WDIOC_GETTIMEOUT: libc::c_ulong = 0x8004_5707;

/// The watchdog device that escalation stops petting, if it fires in time.
pub(super) fn watchdog_in_time() -> Option<std::path::PathBuf> {
    WATCHDOG_IN_TIME.lock().clone()
}

/// Opens and arms the watchdog; returns the pet interval.
fn open_watchdog(daemon: &Daemon, dev: &std::path::Path) -> std::io::Result<Duration> {
    let file = std::fs::OpenOptions::new().write(true).open(dev)?;
    // Fire within one io_timeout of the last pet: pets stop at the latest at
    // fence_deadline (4.25T) when a fence failed or is stuck, peers take
    // over at host_dead (5.5T); `Timeouts::check` proves it in time.
    let t = daemon.spaces.iter().map(|s| s.ls().timeouts().io_timeout).min().expect("at least one lockspace");
    let mut secs: libc::c_int = (t.as_secs() as libc::c_int).max(1);
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one c_int through the pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT, &mut secs) } < 0 {
        log::warn!("watchdog {}: cannot set its timeout to {} s: {}; using the device's own", dev.display(), t.as_secs().max(1), std::io::Error::last_os_error());
    }
    // SAFETY: WDIOC_GETTIMEOUT writes one c_int through the pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_GETTIMEOUT, &mut secs) } < 0 {
        log::warn!("watchdog {}: cannot read its timeout: {}", dev.display(), std::io::Error::last_os_error());
    }
    log::info!("watchdog {} armed: timeout {secs} s", dev.display());
    let fire = Duration::from_secs(secs.max(0) as u64);
    if daemon.spaces.iter().all(|s| s.ls().timeouts().watchdog_in_time(fire)) {
        *WATCHDOG_IN_TIME.lock() = Some(dev.to_owned());
    } else {
        log::warn!(
            "watchdog {}: its timeout of {secs} s is too long to reset this host before other hosts may take over once a fence is stuck (io_timeout {t:?}); a stuck fence runs self_fence = {} instead",
            dev.display(),
            daemon.cfg.self_fence
        );
    }
    *WATCHDOG.lock() = Some(file);
    Ok((Duration::from_secs(secs as u64) / 4).min(t / 2))
}

fn pet(daemon: &Daemon, interval: Duration) {
    let mut warned = false;
    while !daemon.stopping() {
        if daemon.fence_failed.load(Ordering::SeqCst) {
            if !warned {
                log::error!("fencing failed: no longer petting the watchdog; the host will reset");
                warned = true;
            }
        } else if let Some(f) = WATCHDOG.lock().as_mut() {
            if let Err(e) = f.write_all(b"\0") {
                log::error!("watchdog: pet failed: {e}");
            }
        }
        std::thread::sleep(interval);
    }
}

/// At exit: disarm the watchdog (magic close) unless leases stay held, in
/// which case it stays armed and resets the host unless highlanderd is back
/// in time.
pub fn close_watchdog(leases_held: bool) {
    let Some(mut f) = WATCHDOG.lock().take() else { return };
    if leases_held {
        log::warn!("watchdog stays armed: leases are held; start highlanderd again before it fires");
    } else if let Err(e) = f.write_all(b"V") {
        log::warn!("watchdog: magic close failed: {e}; it may reset the host");
    }
}
