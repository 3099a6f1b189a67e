//! Per-address accounting (SECURITY.md, "Server hardening"): which bucket an
//! address counts in, and fixed-rate throttles of costly requests
//! (registrations, room creations) per bucket.
//!
//! Invariant: every per-address limit keys on [`bucket`], so an IPv6 host
//! (which usually holds a whole /64) counts once, not once per address; a
//! throttle refuses before any work is queued, and forgets a bucket once its
//! window has passed, so memory follows the requests of the last window.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};

/// A sliding window of at most `n` events per `window` ms, as the times of
/// the events counted: Err(ms to wait) when full (a refused event is not
/// counted). Shared by the per-address throttles and the per-user chat rate.
pub(crate) fn admit(times: &mut VecDeque<u64>, n: u32, window: u64, now_ms: u64) -> Result<(), u64> {
    while times.front().is_some_and(|t| now_ms.saturating_sub(*t) >= window) {
        times.pop_front();
    }
    if times.len() >= n as usize {
        let oldest = times.front().copied().unwrap_or(now_ms);
        return Err(oldest.saturating_add(window).saturating_sub(now_ms).max(1));
    }
    times.push_back(now_ms);
    Ok(())
}

/// The key an address counts under: an IPv4 address as itself, an
/// IPv4-mapped IPv6 address as its IPv4 address, any other IPv6 address as
/// its /64 (the host part zeroed).
pub fn bucket(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// At most `n` events per `window_ms` per bucket (a sliding window).
#[derive(Debug)]
pub struct Throttle {
    limit: Option<(u32, u64)>,
    recent: HashMap<IpAddr, VecDeque<u64>>,
}

impl Throttle {
    /// `limit`: (events, window in ms); None: no limit.
    pub fn new(limit: Option<(u32, u64)>) -> Throttle {
        Throttle { limit, recent: HashMap::new() }
    }

    /// Counts one event from `addr`: Err(ms to wait) when its bucket is over the limit
    /// (a refused event is not counted).
    pub fn allow(&mut self, addr: IpAddr, now_ms: u64) -> Result<(), u64> {
        let Some((n, window)) = self.limit else { return Ok(()) };
        admit(self.recent.entry(bucket(addr)).or_default(), n, window, now_ms)
    }

    /// Forgets buckets with no event inside the window.
    pub fn prune(&mut self, now_ms: u64) {
        let Some((_, window)) = self.limit else { return self.recent.clear() };
        self.recent.retain(|_, t| t.back().is_some_and(|last| now_ms.saturating_sub(*last) < window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_as_long_as_the_operator_likes_does_not_overflow() {
        let mut times = VecDeque::new();
        let now = 1_700_000_000_000;
        assert_eq!(admit(&mut times, 1, u64::MAX, now), Ok(()));
        assert_eq!(admit(&mut times, 1, u64::MAX, now + 5), Err(u64::MAX - now - 5));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_eq!(bucket(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(bucket(a), bucket(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(bucket(v4), v4);
        assert_eq!(bucket("::ffff:192.0.2.7".parse().unwrap()), v4);
        assert_ne!(bucket("192.0.2.8".parse().unwrap()), v4);
    }

    #[test]
    fn throttle_refuses_past_the_limit_per_64_and_recovers_after_the_window() {
        let mut t = Throttle::new(Some((3, 60_000)));
        let host = |i: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, i, i, i, i));
        for i in 0..3 {
            assert_eq!(t.allow(host(i), 1_000 + u64::from(i)), Ok(()));
        }
        // A fourth address of the same /64 is the same bucket.
        assert_eq!(t.allow(host(9), 2_000), Err(59_000));
        assert_eq!(t.allow(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1)), 2_000), Ok(()));
        assert_eq!(t.allow(host(9), 61_000), Ok(()));
        t.prune(200_000);
        assert!(t.recent.is_empty());
        assert_eq!(Throttle::new(None).allow(host(1), 0), Ok(()));
    }
}
