//! The proxy's counters, lock-free (updated per query, read by `/metrics` and benches).
//!
//! `added` is the latency the proxy adds to a lookup: from the query's arrival to the
//! answer's departure, minus the time the server took; it includes the wait for the
//! kernel's acknowledgement of what the answer taught.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
pub const BUCKETS_US: [u64; 16] = [
    50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 25_000, 50_000,
    100_000, 1_000_000,
];

#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Queries received from pods.
    pub queries: AtomicU64,
    /// Answers that parsed and answer their query (handed to the learner).
    pub answers: AtomicU64,
    /// Answers returned unlearned because they did not parse or did not answer the query.
    pub unreadable: AtomicU64,
    /// Addresses the learner added or refreshed.
    pub learned: AtomicU64,
    /// Learner errors and timeouts (the answer was returned anyway).
    pub learn_failures: AtomicU64,
    /// Queries the server did not answer in time, or could not be sent.
    pub upstream_failures: AtomicU64,
    /// Cumulative counts per bucket of [`BUCKETS_US`], then the overflow.
    added: [AtomicU64; BUCKETS_US.len() + 1],
    added_sum_us: AtomicU64,
}

impl ProxyStats {
    pub fn added(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        self.added[i].fetch_add(1, Relaxed);
        self.added_sum_us.fetch_add(us, Relaxed);
    }

    /// Observations per bucket (not cumulative), the last one past every bound.
    pub fn added_counts(&self) -> Vec<u64> {
        self.added.iter().map(|c| c.load(Relaxed)).collect()
    }

    pub fn added_sum(&self) -> Duration {
        Duration::from_micros(self.added_sum_us.load(Relaxed))
    }

    /// The bucket bound under which the quantile `q` (0..=1) of the added latencies
    /// falls; `None` before any observation or past the last bound.
    pub fn added_quantile(&self, q: f64) -> Option<Duration> {
        let counts = self.added_counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return BUCKETS_US.get(i).map(|us| Duration::from_micros(*us));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let s = ProxyStats::default();
        assert_eq!(s.added_quantile(0.5), None);
        for _ in 0..98 {
            s.added(Duration::from_micros(120));
        }
        s.added(Duration::from_millis(4));
        s.added(Duration::from_secs(3));
        assert_eq!(s.added_quantile(0.5), Some(Duration::from_micros(200)));
        assert_eq!(s.added_quantile(0.99), Some(Duration::from_millis(5)));
        assert_eq!(s.added_quantile(1.0), None);
        assert_eq!(s.added_counts().iter().sum::<u64>(), 100);
    }
}
