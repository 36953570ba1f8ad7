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
    /// Queries not steered here but sent to the proxy's own port (or with no original
    /// destination): dropped, never forwarded.
    pub refused: AtomicU64,
    /// Queries dropped (connections closed) because `max_in_flight` were being served.
    pub overloaded: AtomicU64,
    /// Filtered bridges the proxy listens on now (a gauge; `controller::dns_bridges`).
    pub bridges: AtomicU64,
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

impl ProxyStats {
    /// The Prometheus text of these counters (`nftpol_dns_*`), for `/metrics`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let counters = [
            ("queries", "DNS queries received from pods", &self.queries),
            (
                "answers",
                "answers read and handed to the learner",
                &self.answers,
            ),
            (
                "unreadable",
                "answers returned unlearned (unparsable, or not answering the query)",
                &self.unreadable,
            ),
            (
                "learned_addresses",
                "addresses added or refreshed in learned sets",
                &self.learned,
            ),
            (
                "learn_failures",
                "learner errors and timeouts (answer returned anyway)",
                &self.learn_failures,
            ),
            (
                "upstream_failures",
                "queries the server did not answer in time",
                &self.upstream_failures,
            ),
            (
                "refused",
                "queries sent to the proxy's own port, not steered: dropped",
                &self.refused,
            ),
            (
                "overloaded",
                "queries dropped because too many were in flight",
                &self.overloaded,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP nftpol_dns_{name}_total {help}");
            let _ = writeln!(out, "# TYPE nftpol_dns_{name}_total counter");
            let _ = writeln!(out, "nftpol_dns_{name}_total {}", c.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP nftpol_dns_bridges filtered bridges the DNS proxy listens on\n# TYPE nftpol_dns_bridges gauge\nnftpol_dns_bridges {}",
            self.bridges.load(Relaxed)
        );
        let name = "nftpol_dns_added_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} latency the proxy adds to a lookup (learning included)"
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let counts = self.added_counts();
        let mut cumulative = 0;
        for (bound, c) in BUCKETS_US.iter().zip(&counts) {
            cumulative += c;
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let total: u64 = counts.iter().sum();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {}", self.added_sum().as_secs_f64());
        let _ = writeln!(out, "{name}_count {total}");
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

    #[test]
    fn renders_prometheus_text() {
        let s = ProxyStats::default();
        s.answers.fetch_add(3, Relaxed);
        s.added(Duration::from_micros(120));
        s.added(Duration::from_secs(3));
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("nftpol_dns_answers_total 3\n"), "{out}");
        assert!(out.contains("nftpol_dns_added_latency_seconds_bucket{le=\"0.0002\"} 1\n"));
        assert!(out.contains("nftpol_dns_added_latency_seconds_bucket{le=\"1\"} 1\n"));
        assert!(out.contains("nftpol_dns_added_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("nftpol_dns_added_latency_seconds_count 2\n"));
    }
}
