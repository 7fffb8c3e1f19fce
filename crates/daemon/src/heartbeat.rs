//! The daemon's heartbeat, which its fence sentinel watches: a daemon that
//! is alive but hung (SIGSTOP, a deadlock, a stuck allocation) renews
//! nothing and fences nothing, and its process never exits.
//!
//! Each lockspace's fence monitor writes, on every round (T/10), the time
//! of that round to `heartbeat-NAME` in the state dir. The sentinel takes
//! over when, for a lockspace in which guests hold leases, the last renewal
//! (the resume state, as when the daemon is gone) is older than the fencing
//! time and the monitor's last round is older than `stale` (T/2): it
//! SIGKILLs the daemon, so that it cannot fight the sentinel should it
//! wake, then fences as for a daemon that exited (sentinel.rs). A daemon
//! whose storage fails keeps beating while it fences for itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::persist::Store;
use engine::clock::Mono;

/// How often a fence monitor (and the sentinel watching it) looks: T/10.
pub fn round(io_timeout: Duration) -> Duration {
    (io_timeout / 10).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

fn file(state_dir: &Path, lockspace: &str) -> PathBuf {
    state_dir.join(format!("heartbeat-{lockspace}"))
}

/// Written by one lockspace's fence monitor.
pub struct Heartbeat {
    file: PathBuf,
    tmp: PathBuf,
}

impl Heartbeat {
    pub fn new(state_dir: &Path, lockspace: &str) -> Heartbeat {
        let file = file(state_dir, lockspace);
        Heartbeat { tmp: file.with_extension("tmp"), file }
    }

    /// Records that the monitor runs now (write + rename: never torn).
    pub fn beat(&self) {
        let written = std::fs::write(&self.tmp, Mono::now().0.to_string()).and_then(|()| std::fs::rename(&self.tmp, &self.file));
        if let Err(e) = written {
            log::warn!("{}: cannot write the heartbeat: {e}; the fence sentinel takes over at the fencing time if renewals stop", self.file.display());
        }
    }
}

/// The monitor's last round for `lockspace`; None if it never beat.
fn last_beat(state_dir: &Path, lockspace: &str) -> Option<Mono> {
    std::fs::read_to_string(file(state_dir, lockspace)).ok()?.trim().parse().ok().map(Mono)
}

/// What the sentinel checks of one lockspace of a live daemon.
pub struct Watched<'a> {
    pub name: &'a str,
    pub fence_begin: Duration,
    pub stale: Duration,
}

/// Why the live daemon must be stopped and its guests fenced, if it must:
/// in some lockspace guests hold leases, the last renewal is older than
/// the fencing time, and the monitor has not beaten for `stale` of the
/// time since `awake_since` (when the sentinel itself last resumed running:
/// after a freeze of the whole host both wake together, and the daemon gets
/// `stale` to beat before it counts as hung).
pub fn hung(state_dir: &Path, host_id: u32, spaces: &[Watched], awake_since: Mono) -> Option<String> {
    let now = Mono::now();
    let overdue: Vec<(&Watched, Mono)> = spaces
        .iter()
        .filter_map(|w| {
            let (_, _, valid_from) = engine::lockspace::saved_renewal(&engine::lockspace::resume_file(state_dir, w.name)).ok()?;
            (now >= valid_from.add(w.fence_begin) && now.since(last_beat(state_dir, w.name).map_or(awake_since, |b| b.max(awake_since))) >= w.stale).then_some((w, valid_from))
        })
        .collect();
    if overdue.is_empty() {
        return None;
    }
    // Only now read the table: is anything at stake?
    let table = Store::new(state_dir).load(host_id).ok()?;
    overdue.into_iter().find(|(w, _)| table.disks.iter().any(|(k, d)| k.lockspace == w.name && !d.holders.is_empty())).map(|(w, valid_from)| {
        let beat = last_beat(state_dir, w.name).map_or("never".to_owned(), |b| format!("{:.1?} ago", now.since(b)));
        format!("lockspace \"{}\": no renewal for {:.1?} (fencing time {:?}) and its fence monitor's last heartbeat was {beat}", w.name, now.since(valid_from), w.fence_begin)
    })
}
