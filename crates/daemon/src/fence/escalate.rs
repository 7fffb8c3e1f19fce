//! When fencing does not finish: a guest SIGKILLed at the fencing time that
//! is still alive at `fence_deadline` (4.25T after the last renewal).
//!
//! A QEMU whose I/O to a lost SAN path blocks in the kernel (multipath
//! `queue_if_no_path`) stays in D state after SIGKILL, and its queued writes
//! land when the path comes back, on a disk another host may own by then.
//! Only resetting the host stops them. So whoever fenced (the daemon, its
//! fence sentinel, a daemon fencing before it joins afresh) watches every
//! killed guest's pidfd, and a guest not gone by the deadline makes the
//! host fence itself before any peer may take over (host_dead, 5.5T;
//! docs/SAFETY.md, "Timing"):
//! - the running daemon, with a watchdog armed whose timeout fits
//!   (`Timeouts::watchdog_in_time`): it stops petting it;
//! - otherwise the `self_fence` action of highlanderd.conf: `reboot`
//!   (default: sysrq `b`, an immediate reset without sync, so queued I/O
//!   never reaches the disk), `command PATH` (run with the reason as its one
//!   argument; it must take the host off the storage, e.g. power it off
//!   through its BMC), or `log-only` (nothing is done: unsafe).
//!
//! Every escalation is logged and appended to `escalations.jsonl` in the
//! state dir, which `highlander status` shows.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;


use crate::config::{Config, SelfFence};
use crate::fence::{fence_now, FenceConfig};
use crate::guest::{Guest, Pidfd};
use crate::{Daemon, Space};
use engine::clock::Mono;

/// The escalations this host made, one JSON object a line.
const RECORD: &str = "escalations.jsonl";
/// How many of them `status` shows (the latest).
const SHOWN: usize = 20;
/// Where the kernel takes sysrq commands from (root, whatever kernel.sysrq says).
const SYSRQ: &str = "/proc/sysrq-trigger";

/// Fences a guest whose leases lapsed while highlanderd was down, before
/// joining afresh: the new generation frees its disks for every peer at
/// once, so the fence must already have taken effect (`fence_now`); a
/// guest still alive `limit` after its fence makes the host fence itself.
pub fn fence_before_rejoin(cfg: &Config, g: &mut Guest, pidfd: &Pidfd, lockspace: &str, limit: Duration) {
    let fence = FenceConfig::from(cfg);
    if fence_now(&fence, g, pidfd, lockspace, "its leases lapsed while highlanderd was down", Mono::now().add(limit)).stuck() {
        self_fence(&fence, &cfg.state_dir, &format!("highlanderd (pid {}) before joining afresh", std::process::id()), lockspace, vec![g.to_string()], limit);
    }
}

pub use proto::protocol::Escalation;

/// The guests of `killed` that have not exited.
pub fn still_alive(killed: &[(String, Arc<Pidfd>)]) -> Vec<String> {
    killed.iter().filter(|(_, p)| !p.exited()).map(|(g, _)| g.clone()).collect()
}

/// When guests killed now must have exited: the lockspace's deadline, or,
/// for a kill that comes late (a lost lease, a sentinel taking over from a
/// hung daemon), `margin` from now.
pub fn exit_deadline(valid_from: Mono, fence_deadline: Duration, margin: Duration) -> Mono {
    valid_from.add(fence_deadline).max(Mono::now().add(margin))
}

/// Runs the `self_fence` action because `stuck` outlived SIGKILL, and
/// records it. With `reboot` this does not return when it works.
pub fn self_fence(cfg: &FenceConfig, state_dir: &Path, by: &str, lockspace: &str, stuck: Vec<String>, limit: Duration) {
    let why = why(&stuck);
    let action = match &cfg.self_fence {
        SelfFence::LogOnly => "self_fence log-only: nothing done; this host may keep writing to disks other hosts take over (UNSAFE)".to_owned(),
        SelfFence::Reboot => {
            // Recorded first: nothing runs after the reset.
            record(cfg, state_dir, by, lockspace, &stuck, &why, &format!("self_fence reboot: resetting the host now ({SYSRQ} `b`)"));
            let reset = std::fs::OpenOptions::new().write(true).open(SYSRQ).and_then(|mut f| f.write_all(b"b"));
            match reset {
                Ok(()) => "self_fence reboot: the reset was requested but the host still runs".to_owned(),
                Err(e) => format!("self_fence reboot FAILED: cannot write {SYSRQ}: {e}; power this host off before other hosts take over"),
            }
        }
        SelfFence::Command(path) => {
            let argv = vec![path.display().to_string(), format!("{}: lockspace \"{lockspace}\": {why}", cfg.host())];
            if crate::fence::run_helpers(&[argv], "self_fence", Some(limit)) {
                format!("self_fence command {}: succeeded", path.display())
            } else {
                format!("self_fence command {} FAILED (see above); power this host off before other hosts take over", path.display())
            }
        }
    };
    record(cfg, state_dir, by, lockspace, &stuck, &why, &action);
}

fn why(stuck: &[String]) -> String {
    format!("{} still alive at the fence deadline after SIGKILL (stuck in I/O?)", stuck.join(", "))
}

/// Logs an escalation and appends it to the state dir's record.
fn record(cfg: &FenceConfig, state_dir: &Path, by: &str, lockspace: &str, stuck: &[String], why: &str, action: &str) {
    log::error!("ESCALATION on {} by {by}: lockspace \"{lockspace}\": {why}: {action}", cfg.host());
    let e = Escalation { unix: engine::clock::unix_now(), mono_ns: Mono::now().0, by: by.to_owned(), lockspace: lockspace.to_owned(), guests: stuck.to_vec(), action: action.to_owned() };
    let mut line = serde_json::to_vec(&e).expect("an escalation serialises");
    line.push(b'\n');
    let path = state_dir.join(RECORD);
    // One write of one line with O_APPEND: the daemon's and the sentinel's lines never interleave.
    let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(&line));
    if let Err(e) = written {
        log::error!("{}: cannot record the escalation: {e}", path.display());
    }
}

/// The latest escalations recorded in `state_dir` (for `status`).
pub fn recent(state_dir: &Path) -> Vec<Escalation> {
    let text = std::fs::read_to_string(state_dir.join(RECORD)).unwrap_or_default();
    let all: Vec<Escalation> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    all[all.len().saturating_sub(SHOWN)..].to_vec()
}

impl Daemon {
    /// `stuck` (killed guests of `space`) outlived the fence deadline.
    pub(super) fn escalate_stuck(&self, space: &Space, stuck: Vec<String>) {
        let by = format!("highlanderd (pid {})", std::process::id());
        let cfg = FenceConfig::from(&self.cfg);
        self.metrics.fenced(crate::metrics::Fencing::Escalation);
        match crate::fence::watchdog_in_time() {
            Some(dev) => {
                self.fence_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                record(&cfg, &self.cfg.state_dir, &by, &space.name, &stuck, &why(&stuck), &format!("watchdog {}: no longer petted; it resets the host before other hosts may take over", dev.display()));
            }
            None => self_fence(&cfg, &self.cfg.state_dir, &by, &space.name, stuck, space.ls().timeouts().io_timeout / 2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_fence_values() {
        assert_eq!("reboot".parse::<SelfFence>(), Ok(SelfFence::Reboot));
        assert_eq!("log-only".parse::<SelfFence>(), Ok(SelfFence::LogOnly));
        assert_eq!("command  /usr/sbin/fence-me".parse::<SelfFence>(), Ok(SelfFence::Command("/usr/sbin/fence-me".into())));
        assert!("command fence-me".parse::<SelfFence>().unwrap_err().contains("absolute"));
        assert!("poweroff".parse::<SelfFence>().unwrap_err().contains("log-only"));
        for s in [SelfFence::Reboot, SelfFence::LogOnly, SelfFence::Command("/x".into())] {
            assert_eq!(s.to_string().parse::<SelfFence>(), Ok(s));
        }
    }
}
