//! What a daemon tells its sentinel (JSON on the sentinel's stdin), and
//! what can go wrong between them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fence::FenceConfig;

/// The hidden command-line flag of the sentinel mode.
pub const FLAG: &str = "--fence-sentinel";
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("state dir {dir}: another highlanderd ({holder}) is running with it; stop it first")]
    Running { dir: PathBuf, holder: String },
    #[error("cannot start the fence sentinel: {0}")]
    Start(String),
}

/// What a sentinel is told by its daemon (JSON on its stdin).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Spec {
    pub(super) daemon_pid: u32,
    pub(super) daemon_start: u64,
    pub(super) state_dir: PathBuf,
    pub(super) fence: FenceConfig,
    pub(super) log_level: String,
    /// Each lockspace the daemon joined, with its timeouts.
    pub(super) lockspaces: Vec<(String, SpaceTimes)>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(super) struct SpaceTimes {
    pub(super) io_timeout_ms: u64,
    pub(super) fence_begin_ms: u64,
    pub(super) fence_deadline_ms: u64,
    pub(super) lease_expiry_ms: u64,
}

impl SpaceTimes {
    pub(super) fn io_timeout(&self) -> Duration {
        Duration::from_millis(self.io_timeout_ms)
    }
    pub(super) fn fence_begin(&self) -> Duration {
        Duration::from_millis(self.fence_begin_ms)
    }
    pub(super) fn fence_deadline(&self) -> Duration {
        Duration::from_millis(self.fence_deadline_ms)
    }
    pub(super) fn lease_expiry(&self) -> Duration {
        Duration::from_millis(self.lease_expiry_ms)
    }
}
