//! Per-route call counters: calls, errors, bytes and a latency histogram.
//!
//! Each route owns one [`RouteStats`], created when the route is registered, so recording a
//! call is a handful of relaxed atomic adds on memory the call already reaches through its
//! route: no lock, no lookup and no allocation on the call path. [`Server::stats`] takes a
//! consistent-enough snapshot for the console (counters are read one by one, not atomically
//! together).
//!
//! [`Server::stats`]: crate::Server::stats

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: quantiles are within 25% of the true value.
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets: exact values below `SUB` µs, then `SUB` per power of two up to 2^40 µs (12 days).
const BUCKETS: usize = (SUB as usize) * 40;

/// Counters of one route, updated by every call to it.
#[derive(Debug)]
pub(crate) struct RouteStats {
    calls: AtomicU64,
    errors: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency_us: [AtomicU64; BUCKETS],
}

impl Default for RouteStats {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency_us: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The histogram bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    let index = (u64::from(exp - SUB_BITS + 1) << SUB_BITS) + sub;
    (index as usize).min(BUCKETS - 1)
}

/// The largest latency (µs) that falls in bucket `index`.
fn bucket_upper(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let exp = (index >> SUB_BITS) + u64::from(SUB_BITS) - 1;
    let sub = index & (SUB - 1);
    let low = (1u64 << exp) + (sub << (exp - u64::from(SUB_BITS)));
    low + (1u64 << (exp - u64::from(SUB_BITS))) - 1
}

impl RouteStats {
    /// Records one finished call.
    pub(crate) fn record(&self, ok: bool, bytes_in: usize, bytes_out: usize, latency: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_in.fetch_add(bytes_in as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(bytes_out as u64, Ordering::Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of the counters under `route`.
    pub(crate) fn snapshot(&self, route: &str) -> RouteSnapshot {
        let counts: Vec<u64> = self
            .latency_us
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            if total == 0 {
                return None;
            }
            // The rank of the q-quantile, 1-based: at least 1, at most `total`.
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Some(Duration::from_micros(bucket_upper(i)));
                }
            }
            None
        };
        RouteSnapshot {
            route: route.to_owned(),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            p50: quantile(0.50),
            p99: quantile(0.99),
        }
    }
}

/// The counters of one route at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteSnapshot {
    /// The route (`package.Service/Method`), or `(unknown route)` for calls to no route.
    pub route: String,
    /// Calls answered (or cancelled by their caller).
    pub calls: u64,
    /// Calls answered with a status other than ok, or cancelled.
    pub errors: u64,
    /// Request payload bytes received.
    pub bytes_in: u64,
    /// Reply payload bytes sent.
    pub bytes_out: u64,
    /// Median latency (upper bound of its histogram bucket, within 25%), `None` before any call.
    pub p50: Option<Duration>,
    /// 99th-percentile latency, as `p50`.
    pub p99: Option<Duration>,
}

/// Call statistics of a running server, from [`Server::stats`](crate::Server::stats).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// One row per route, sorted by route name, then calls to unknown routes (when any).
    pub routes: Vec<RouteSnapshot>,
    /// Connections open when the snapshot was taken.
    pub connections: usize,
    /// Live sessions when the snapshot was taken.
    pub sessions: usize,
}

impl Stats {
    /// Calls over all routes.
    pub fn total_calls(&self) -> u64 {
        self.routes.iter().map(|r| r.calls).sum()
    }

    /// Failed calls over all routes.
    pub fn total_errors(&self) -> u64 {
        self.routes.iter().map(|r| r.errors).sum()
    }

    /// Payload bytes received and sent over all routes.
    pub fn total_bytes(&self) -> (u64, u64) {
        self.routes
            .iter()
            .fold((0, 0), |(i, o), r| (i + r.bytes_in, o + r.bytes_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_their_values() {
        for us in [0u64, 1, 3, 4, 5, 7, 8, 100, 999, 1000, 65_535, 1 << 30] {
            let b = bucket(us);
            assert!(bucket_upper(b) >= us, "{us} in bucket {b}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < us, "{us} belongs below bucket {b}");
            }
            // Within 25% above the value.
            assert!(bucket_upper(b) as f64 <= us as f64 * 1.25 + 1.0, "{us}");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_and_counters() {
        let s = RouteStats::default();
        assert_eq!(s.snapshot("a.B/C").p50, None);
        for i in 0..100u64 {
            s.record(i % 10 != 0, 10, 20, Duration::from_micros(100 + i));
        }
        s.record(true, 1, 2, Duration::from_millis(50));
        let snap = s.snapshot("a.B/C");
        assert_eq!(snap.calls, 101);
        assert_eq!(snap.errors, 10);
        assert_eq!(snap.bytes_in, 1001);
        assert_eq!(snap.bytes_out, 2002);
        let p50 = snap.p50.unwrap().as_micros();
        assert!((140..=190).contains(&p50), "p50 {p50}");
        let p99 = snap.p99.unwrap().as_micros();
        assert!((190..=250).contains(&p99), "p99 {p99}");
    }
}
