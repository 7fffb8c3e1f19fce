//! The fence monitor of each lockspace: watches the host lease's health,
//! starts a failure episode at fence time, kills holdouts, escalates a
//! guest that outlives SIGKILL, drops void leases and rejoins.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::actions::apply;
use super::watchdog;
use super::escalate;
use crate::guest::Pidfd;
use crate::heartbeat::Heartbeat;
use crate::metrics::Fencing;
use crate::{Daemon, Space};
use engine::clock::Mono;
use proto::protocol::MemberHealth;
use engine::Health;
use proto::protocol::Action;

pub fn spawn(daemon: Arc<Daemon>) -> Result<(), crate::StartError> {
    for i in 0..daemon.spaces.len() {
        let d = daemon.clone();
        crate::thread(format!("hl-fence-{}", d.spaces[i].name), move || monitor(&d, &d.spaces[i]))?;
    }
    watchdog::spawn(daemon)
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
    let tick = crate::heartbeat::round(t.io_timeout);
    let heart = Heartbeat::new(&daemon.cfg.state_dir, &space.name);
    let mut episode: Option<Episode> = None;
    let mut members = MemberLog::default();
    while !daemon.stopping() {
        heart.beat();
        members.update(space);
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

/// Logs each change of state of a device of a lockspace on a set: hung,
/// missing, answering again (the first look logs the devices not ok).
#[derive(Default)]
struct MemberLog(Vec<MemberHealth>);

impl MemberLog {
    fn update(&mut self, space: &Space) {
        let members = space.ls().members();
        let n = members.len();
        if n < 2 {
            return;
        }
        let ok = members.iter().filter(|m| m.state == MemberHealth::Ok).count();
        let runs = if ok > n / 2 { format!("the lockspace runs on {ok} of {n} devices (DEGRADED)") } else { format!("only {ok} of {n} devices answer, fewer than a majority: renewals fail") };
        for m in &members {
            let before = self.0.get(m.member).copied().unwrap_or(MemberHealth::Ok);
            if before == m.state {
                continue;
            }
            let (k, name, path) = (m.member + 1, &space.name, &m.path);
            match m.state {
                MemberHealth::Ok => log::warn!("lockspace \"{name}\": device {k} of {n} ({path}) answers again; {ok} of {n} devices answer"),
                MemberHealth::Hung => log::warn!("lockspace \"{name}\": device {k} of {n} ({path}) is hung: an I/O has been outstanding for {:.1} s; {runs}", m.hung_for_ms.unwrap_or(0) as f64 / 1000.0),
                state => log::warn!("lockspace \"{name}\": device {k} of {n} ({path}) is {}: {}; {runs}", state.as_str(), m.error.as_deref().unwrap_or("not opened")),
            }
        }
        self.0 = members.iter().map(|m| m.state).collect();
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
                let mut handle = space.handle.write();
                space.failures_before.fetch_add(handle.renewal_failures(), Ordering::Relaxed);
                *handle = ls;
                return;
            }
            Err(e) => {
                log::error!("lockspace \"{}\": cannot rejoin yet: {e}", space.name);
                std::thread::sleep(t.io_timeout);
            }
        }
    }
}

impl Daemon {
    /// Guests holding leases in `space`.
    fn holders_in(&self, space: &Space) -> Vec<u32> {
        let table = self.table.lock();
        let mut pids: Vec<u32> = table.disks.iter().filter(|(k, _)| k.lockspace == space.name).flat_map(|(_, d)| d.holders.iter().copied()).collect();
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
    pub(crate) fn fence_guest(&self, pid: u32, lockspace: &str, why: &str) -> Option<(String, Arc<Pidfd>)> {
        let mut g = self.table.lock().guests.get(&pid).cloned()?;
        let disks: Vec<String> = self.table.lock().disks.iter().filter(|(k, d)| k.lockspace == lockspace && d.holders.contains(&pid)).map(|(k, d)| format!("{} ({})", k.identity, d.path)).collect();
        let why = format!("{why}; disks {}", disks.join(", "));
        let pidfd = self.watcher.pidfd(pid);
        self.metrics.fenced(Fencing::Guest(g.action));
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
            self.metrics.fenced(Fencing::HoldoutKilled);
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
        let void: Vec<_> = table.disks.iter().filter(|(k, _)| k.lockspace == space.name).map(|(k, _)| k.clone()).collect();
        for k in &void {
            let d = table.disks.remove(k).expect("present");
            log::error!("lease void: disk {} ({}) lockspace \"{}\" host {} \"{}\": {why}", k.identity, d.path, k.lockspace, self.cfg.host_id, self.cfg.host_name);
        }
        let changed = table.disks.len() != before;
        drop(table);
        if changed {
            self.persist();
        }
    }
}

