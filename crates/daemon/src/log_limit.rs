//! Repeated warnings, rate-limited per kind of message: what any client
//! can cause (malformed requests, refused connections, a connection over
//! the cap) or a shortage that repeats at every attempt (file descriptors)
//! must not flood the journal. Of each kind, the first `BURST` messages of
//! an `INTERVAL` are logged; the rest are counted, and once the interval is
//! over one line says how many were suppressed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::Daemon;

/// Messages of one kind logged per interval.
pub const BURST: u32 = 10;
pub const INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct LogLimit {
    kinds: Mutex<HashMap<&'static str, Window>>,
}

struct Window {
    since: Instant,
    target: &'static str,
    level: log::Level,
    logged: u32,
    suppressed: u64,
}

impl Window {
    /// The line for what this interval suppressed, if anything.
    fn report(&self, kind: &str) -> Option<(&'static str, log::Level, String)> {
        (self.suppressed > 0).then(|| (self.target, self.level, format!("suppressed {} similar message(s) ({kind}) in the last {:.0} s", self.suppressed, self.since.elapsed().as_secs_f64())))
    }
}

impl LogLimit {
    /// Logs `args` unless `kind` has had its `BURST` this interval (use
    /// `limited!`, which passes the caller's module as `target`).
    pub fn log(&self, target: &'static str, kind: &'static str, level: log::Level, args: std::fmt::Arguments) {
        let now = Instant::now();
        let (report, show) = {
            let mut kinds = self.kinds.lock();
            let fresh = || Window { since: now, target, level, logged: 0, suppressed: 0 };
            let w = kinds.entry(kind).or_insert_with(fresh);
            let mut report = None;
            if now.duration_since(w.since) >= INTERVAL {
                report = w.report(kind);
                *w = fresh();
            }
            let show = w.logged < BURST;
            if show {
                w.logged += 1;
            } else {
                w.suppressed += 1;
            }
            (report, show)
        };
        if let Some((target, level, line)) = report {
            log::log!(target: target, level, "{line}");
        }
        if show {
            log::log!(target: target, level, "{args}");
        }
    }

    /// Ends the intervals that are over, reporting what they suppressed
    /// (a flood that stopped is still counted).
    pub fn flush(&self) {
        let mut reports = Vec::new();
        self.kinds.lock().retain(|kind, w| {
            let over = w.since.elapsed() >= INTERVAL;
            if over {
                reports.extend(w.report(kind));
            }
            !over
        });
        for (target, level, line) in reports {
            log::log!(target: target, level, "{line}");
        }
    }
}

/// `limited!(daemon, "kind", Warn, "format", args…)`: logs through the
/// daemon's rate limiter.
macro_rules! limited {
    ($daemon:expr, $kind:expr, $level:ident, $($arg:tt)+) => {
        $daemon.log_limit.log(module_path!(), $kind, log::Level::$level, format_args!($($arg)+))
    };
}
pub(super) use limited;

/// Flushes every interval, so the count of a flood that stopped is logged.
pub fn spawn(daemon: Arc<Daemon>) -> Result<(), crate::StartError> {
    crate::thread("hl-log-limit".into(), move || {
        while !daemon.stopping() {
            std::thread::sleep(INTERVAL);
            daemon.log_limit.flush();
        }
    })
}
