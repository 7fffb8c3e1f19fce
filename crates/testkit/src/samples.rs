//! The benchmarks' latency samples: percentiles of sorted durations.

use std::time::Duration;

/// Sorted samples.
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Samples {
        v.sort();
        Samples(v)
    }

    /// The p-th percentile (zero with no samples).
    pub fn pct(&self, p: usize) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0[(self.0.len() * p / 100).min(self.0.len() - 1)]
    }

    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }
}

/// "1.234 ms".
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
