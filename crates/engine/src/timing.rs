//! Every timeout of a lockspace, derived from its one `io_timeout`.
//!
//! The reasoning behind each ratio is in docs/SAFETY.md ("Timing"). In short,
//! with T = io_timeout:
//!
//! | name           | value | meaning                                                        |
//! |----------------|-------|----------------------------------------------------------------|
//! | io_deadline    | T     | a single sector I/O that takes longer has failed                |
//! | renew_interval | T/2   | a host rewrites its slot (and reads its peers') this often      |
//! | fence_begin    | 3.5T  | no renewal for this long: apply lock-failure actions            |
//! | fence_deadline | 4.25T | a guest fenced by SIGKILL still alive now: escalate (self-fence) |
//! | lease_expiry   | 4.5T  | no renewal for this long: our leases are void, locally          |
//! | host_dead      | 5.5T  | a peer's slot unchanged this long: the peer is dead             |
//! | join_span      | T/20  | a fast join's read..write must fit in this span                 |
//! | join_delay     | T/16  | a joiner waits this long before re-reading its slot             |
//!
//! All "no renewal for" times start at the *start* of the last renewal whose
//! write completed; all peer observations start at the *completion* of the
//! read that saw a slot change. `Timeouts::new` refuses any combination for
//! which the inequalities below do not hold, so a bad build cannot start.

use std::time::Duration;

/// Upper bound on how far two hosts' monotonic clocks may drift apart in
/// rate: 1%. Quartz oscillators are specified at 0.005%; 1% leaves room for
/// VMs whose clock is steered by NTP slewing (max 0.05%) and virtual time.
pub const MAX_DRIFT: f64 = 0.01;

pub const MIN_IO_TIMEOUT: Duration = Duration::from_millis(20);
pub const MAX_IO_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub io_timeout: Duration,
    pub io_deadline: Duration,
    pub renew_interval: Duration,
    pub fence_begin: Duration,
    /// Guests killed at fence_begin (or at the pause/restart escalation,
    /// fence_begin + T/2) must have exited by now; one that has not (stuck
    /// in I/O) makes the host fence itself: the watchdog stops being petted
    /// or the `self_fence` action runs.
    pub fence_deadline: Duration,
    pub lease_expiry: Duration,
    pub host_dead: Duration,
    pub join_span: Duration,
    pub join_delay: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    #[error("io_timeout {got:?} is out of range: it must be between {MIN_IO_TIMEOUT:?} and {MAX_IO_TIMEOUT:?}")]
    OutOfRange { got: Duration },
    #[error("timing inequality violated: {0} (see docs/SAFETY.md, \"Timing\")")]
    Inequality(&'static str),
}

impl Timeouts {
    pub fn new(io_timeout: Duration) -> Result<Timeouts, TimingError> {
        if !(MIN_IO_TIMEOUT..=MAX_IO_TIMEOUT).contains(&io_timeout) {
            return Err(TimingError::OutOfRange { got: io_timeout });
        }
        let t = io_timeout;
        let timeouts = Timeouts {
            io_timeout: t,
            io_deadline: t,
            renew_interval: t / 2,
            fence_begin: t * 7 / 2,
            fence_deadline: t * 17 / 4,
            lease_expiry: t * 9 / 2,
            host_dead: t * 11 / 2,
            join_span: t / 20,
            join_delay: t / 16,
        };
        timeouts.check()?;
        Ok(timeouts)
    }

    /// The inequalities docs/SAFETY.md proves the algorithms safe under.
    pub fn check(&self) -> Result<(), TimingError> {
        let drift = |d: Duration| d.mul_f64(1.0 + MAX_DRIFT);
        // A renewal (one write, then one read of all slots) that starts on
        // time and fails must leave room for a retry before fencing begins.
        if self.renew_interval + 3 * self.io_deadline > self.fence_begin {
            return Err(TimingError::Inequality("renew_interval + 3*io_deadline <= fence_begin"));
        }
        // Fencing (kill or pause the guests) gets at least one io_timeout.
        if self.fence_begin + self.io_timeout > self.lease_expiry {
            return Err(TimingError::Inequality("fence_begin + io_timeout <= lease_expiry"));
        }
        // A pause/restart guest still holding leases is killed half-way
        // from fence_begin to lease_expiry; its exit is due before the
        // deadline, which leaves a margin before the leases are void.
        if self.fence_begin + (self.lease_expiry - self.fence_begin) / 2 >= self.fence_deadline || self.fence_deadline >= self.lease_expiry {
            return Err(TimingError::Inequality("fence_begin + (lease_expiry - fence_begin)/2 < fence_deadline < lease_expiry"));
        }
        // The watchdog the daemon sets to io_timeout, unpetted from the
        // deadline on, resets the host before any peer may take it over.
        if !self.watchdog_in_time(self.io_timeout) {
            return Err(TimingError::Inequality("(fence_deadline + watchdog timeout (= io_timeout))*(1+drift)^2 < host_dead"));
        }
        // A host's leases are void (by its own clock) strictly before any
        // peer, whose clock may run slow, can call the host dead; the proof
        // needs lease_expiry*(1+drift)^2 < host_dead, half an io_deadline
        // more is spare.
        if drift(self.lease_expiry) + self.io_deadline / 2 >= self.host_dead {
            return Err(TimingError::Inequality("lease_expiry*(1+drift) + io_deadline/2 < host_dead"));
        }
        // Two concurrent joiners of one host id cannot both succeed: each
        // measures its span and its wait on its own clock, either of which
        // may drift (docs/SAFETY.md, found by the model check).
        if drift(drift(self.join_span)) >= self.join_delay {
            return Err(TimingError::Inequality("join_span*(1+drift)^2 < join_delay"));
        }
        Ok(())
    }

    /// Whether a watchdog that fires `timeout` after its last pet, and is
    /// last petted at fence_deadline (by this host's clock), resets the
    /// host before any peer may call it dead: both clocks may drift
    /// (docs/SAFETY.md, "Timing", inequality 3 and 5).
    pub fn watchdog_in_time(&self, timeout: Duration) -> bool {
        let drift = |d: Duration| d.mul_f64(1.0 + MAX_DRIFT);
        drift(drift(self.fence_deadline + timeout)) < self.host_dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_holds_and_beats_sanlock_failover() {
        let t = Timeouts::new(DEFAULT_IO_TIMEOUT).unwrap();
        assert_eq!(t.host_dead, Duration::from_secs(55));
        assert!(t.host_dead < Duration::from_secs(140), "sanlock's host_dead at io_timeout 10 s is 140 s");
        assert!(t.join_delay < Duration::from_secs(1));
    }

    #[test]
    fn every_valid_io_timeout_satisfies_the_inequalities() {
        for ms in [20u64, 50, 100, 250, 1000, 10_000, 60_000, 300_000] {
            Timeouts::new(Duration::from_millis(ms)).unwrap();
        }
    }

    #[test]
    fn out_of_range_is_refused() {
        assert!(matches!(Timeouts::new(Duration::from_millis(5)), Err(TimingError::OutOfRange { .. })));
        assert!(matches!(Timeouts::new(Duration::from_secs(301)), Err(TimingError::OutOfRange { .. })));
    }

    #[test]
    fn a_broken_ratio_is_caught() {
        let mut t = Timeouts::new(DEFAULT_IO_TIMEOUT).unwrap();
        t.host_dead = t.lease_expiry;
        assert!(matches!(t.check(), Err(TimingError::Inequality(_))));
        let mut t = Timeouts::new(DEFAULT_IO_TIMEOUT).unwrap();
        t.join_delay = t.join_span;
        assert!(matches!(t.check(), Err(TimingError::Inequality(_))));
        let mut t = Timeouts::new(DEFAULT_IO_TIMEOUT).unwrap();
        t.fence_deadline = t.lease_expiry;
        assert!(matches!(t.check(), Err(TimingError::Inequality(_))));
    }

    #[test]
    fn the_fence_deadline_leaves_room_for_the_watchdog() {
        let t = Timeouts::new(DEFAULT_IO_TIMEOUT).unwrap();
        assert_eq!(t.fence_deadline, Duration::from_millis(42_500));
        assert!(t.watchdog_in_time(Duration::from_secs(10)));
        // softdog's default of 60 s would fire long after peers took over.
        assert!(!t.watchdog_in_time(Duration::from_secs(60)));
        // The 1 s minimum of a watchdog is too slow for io_timeout 0.3 s.
        assert!(!Timeouts::new(Duration::from_millis(300)).unwrap().watchdog_in_time(Duration::from_secs(1)));
        let mut t = Timeouts::new(DEFAULT_IO_TIMEOUT).unwrap();
        t.host_dead = t.fence_deadline + t.io_timeout;
        assert_eq!(t.check(), Err(TimingError::Inequality("(fence_deadline + watchdog timeout (= io_timeout))*(1+drift)^2 < host_dead")));
    }
}
