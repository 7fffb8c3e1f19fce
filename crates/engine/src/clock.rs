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

use nix::time::{clock_gettime, ClockId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Mono(pub u64);

impl Mono {
    pub fn now() -> Mono {
        // CLOCK_BOOTTIME exists on Linux since 2.6.39.
        let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).expect("clock_gettime(CLOCK_BOOTTIME) failed");
        Mono(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
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

/// "2026-11-22 17:42:01 UTC"; "never" for 0.
pub fn format_unix(secs: u64) -> String {
    if secs == 0 {
        return "never".into();
    }
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::format_unix(0), "never");
        assert_eq!(super::format_unix(1_795_363_200), "2026-11-22 16:00:00 UTC");
        assert_eq!(super::format_unix(951_825_600), "2000-02-29 12:00:00 UTC");
    }
}
