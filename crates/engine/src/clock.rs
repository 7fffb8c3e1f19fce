//! Time as the lease algorithms see it.
//!
//! Every safety decision uses `Mono`, CLOCK_BOOTTIME in nanoseconds: it is
//! system-wide (so a restarted daemon and the torture test's witness read the
//! same clock), never jumps, and keeps counting while a process is stopped
//! and while the machine is suspended. (CLOCK_MONOTONIC stops during
//! suspend: a host that slept past its lease would wake believing it still
//! valid while a peer has taken it over.)
//! Wall-clock time (`unix_now`) is stored on disk for humans only and never
//! compared across hosts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Mono(pub u64);

impl Mono {
    pub fn now() -> Mono {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on Linux since 2.6.39.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
        Mono(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    // Not `ops::Add`: it saturates instead of overflowing, and reads as a deadline.
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, d: Duration) -> Mono {
        Mono(self.0.saturating_add(d.as_nanos() as u64))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Mono) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time left until `self`, zero if already past.
    pub fn remaining(self) -> Duration {
        self.since(Mono::now())
    }
}

/// Seconds since the Unix epoch, for display only.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
