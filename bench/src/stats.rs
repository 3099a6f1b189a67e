//! Latency samples and their percentiles.

use std::time::Duration;

/// Latency samples in nanoseconds.
#[derive(Default, Clone)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (0..=100), nearest rank, or zero without samples.
    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        // Nearest rank; the epsilon keeps 99.9% of 1000 at rank 999, not 1000.
        let rank = ((p / 100.0) * self.0.len() as f64 - 1e-9).ceil() as usize;
        Duration::from_nanos(self.0[rank.clamp(1, self.0.len()) - 1])
    }

    /// p50, p99 and p99.9.
    pub fn summary(&mut self) -> Latency {
        Latency { p50: self.percentile(50.0), p99: self.percentile(99.0), p999: self.percentile(99.9), n: self.len() }
    }
}

/// The percentiles a report shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub n: usize,
}

/// A duration in microseconds, for tables.
pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Median of a few repeated measurements.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples((1..=1000).collect());
        assert_eq!(s.percentile(50.0), Duration::from_nanos(500));
        assert_eq!(s.percentile(99.0), Duration::from_nanos(990));
        assert_eq!(s.percentile(99.9), Duration::from_nanos(999));
        assert_eq!(s.percentile(100.0), Duration::from_nanos(1000));
        assert_eq!(Samples::default().percentile(50.0), Duration::ZERO);
    }
}
