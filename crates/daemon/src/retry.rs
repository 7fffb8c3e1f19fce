//! Releases on storage that failed. The lease stays held on storage while
//! this host keeps renewing, so until the release lands every other host is
//! refused the disk. Such leases wait in the table's `pending` (saved with
//! it, so a restart carries on) and one thread per lockspace retries them
//! every io_timeout/2 until the release lands or the lease is void (our
//! generation ended). A local acquire of a pending disk settles it first.

use std::sync::Arc;
use std::time::Duration;

use crate::DiskKey;
use crate::{Daemon, Space};
use engine::Health;

/// How long a failed release waits before its next attempt.
pub fn backoff(space: &Space) -> Duration {
    space.ls().timeouts().io_timeout / 2
}

pub fn spawn(daemon: Arc<Daemon>) -> Result<(), super::StartError> {
    for i in 0..daemon.spaces.len() {
        let d = daemon.clone();
        super::thread(format!("hl-release-{}", d.spaces[i].name), move || run(&d, &d.spaces[i]))?;
    }
    Ok(())
}

fn run(daemon: &Daemon, space: &Space) {
    loop {
        std::thread::sleep(backoff(space));
        // Shutdown waits for a retry in flight, and none starts after it.
        let _op = daemon.ops.read();
        if daemon.stopping() {
            return;
        }
        let keys: Vec<DiskKey> = daemon.table.lock().pending.keys().filter(|k| k.lockspace == space.name).cloned().collect();
        for key in keys {
            // Failures are logged and stay queued.
            let _ = daemon.with_disks([key.clone()], || daemon.settle(&key));
        }
    }
}

impl Daemon {
    /// Completes the pending release of `key`, if any: Ok once nothing of
    /// ours is left on storage for it. Call with the disk's lock held.
    pub(super) fn settle(&self, key: &DiskKey) -> engine::Result<()> {
        let Some(lease) = self.table.lock().pending.get(key).cloned() else { return Ok(()) };
        let space = self.space(&key.lockspace).expect("pending leases are in configured lockspaces");
        let ls = space.ls();
        let what = format!("pending release of disk {} lver {} lockspace \"{}\"", key.identity, lease.lver, key.lockspace);
        if lease.generation != ls.generation() || matches!(ls.health(), Health::Lost { .. }) {
            // Peers treat it as free once they see our generation end.
            log::warn!("{what}: dropped, the lease is void (generation {} is over)", lease.generation);
        } else if let Err(e) = ls.release(&lease) {
            log::warn!("{what}: retry failed: {e}; next attempt in {:?}", backoff(space));
            return Err(e);
        } else {
            log::info!("{what}: retry succeeded, the disk is free on storage");
        }
        self.table.lock().pending.remove(key);
        self.persist();
        Ok(())
    }
}
