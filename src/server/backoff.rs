//! Failed-login back-off, per account and per address (DESIGN §5).
//!
//! Invariant: after `FREE` failures each further failure doubles the wait
//! (capped); a record is forgotten after a quiet period, so memory is bounded
//! by the failures of the last `FORGET_MS`.

use std::collections::HashMap;
use std::net::IpAddr;

/// Failures allowed before any wait.
pub const FREE: u32 = 3;
/// First wait after the free failures.
pub const BASE_MS: u64 = 1_000;
/// Longest wait.
pub const MAX_MS: u64 = 5 * 60_000;
/// A record with no failure for this long is dropped.
pub const FORGET_MS: u64 = 15 * 60_000;

#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    last_ms: u64,
}

impl Strikes {
    fn wait_until(&self) -> u64 {
        if self.count < FREE {
            return 0;
        }
        let shift = (self.count - FREE).min(20);
        self.last_ms.saturating_add((BASE_MS << shift).min(MAX_MS))
    }
}

/// Failure counters for accounts and addresses.
#[derive(Debug, Default)]
pub struct Backoff {
    accounts: HashMap<u64, Strikes>,
    addrs: HashMap<IpAddr, Strikes>,
}

impl Backoff {
    /// Milliseconds to wait before `uid` may be tried from `addr`, if any.
    pub fn check(&self, uid: Option<u64>, addr: IpAddr, now_ms: u64) -> Option<u64> {
        let by_account = uid.and_then(|u| self.accounts.get(&u)).map_or(0, Strikes::wait_until);
        let by_addr = self.addrs.get(&addr).map_or(0, Strikes::wait_until);
        let until = by_account.max(by_addr);
        (until > now_ms).then(|| until - now_ms)
    }

    /// Counts a failed attempt.
    pub fn fail(&mut self, uid: Option<u64>, addr: IpAddr, now_ms: u64) {
        let bump = |s: &mut Strikes| {
            s.count = s.count.saturating_add(1);
            s.last_ms = now_ms;
        };
        if let Some(u) = uid {
            bump(self.accounts.entry(u).or_insert(Strikes { count: 0, last_ms: now_ms }));
        }
        bump(self.addrs.entry(addr).or_insert(Strikes { count: 0, last_ms: now_ms }));
    }

    /// A full login of `uid` succeeded: its account counter restarts. The
    /// address counter does not, so one good account cannot launder guesses.
    pub fn succeed(&mut self, uid: u64) {
        self.accounts.remove(&uid);
    }

    /// Drops records quiet for `FORGET_MS`.
    pub fn prune(&mut self, now_ms: u64) {
        let fresh = |s: &mut Strikes| now_ms.saturating_sub(s.last_ms) < FORGET_MS;
        self.accounts.retain(|_, s| fresh(s));
        self.addrs.retain(|_, s| fresh(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn waits_double_after_free_failures_and_success_resets_account() {
        let mut b = Backoff::default();
        for _ in 0..FREE {
            assert_eq!(b.check(Some(1), ADDR, 0), None);
            b.fail(Some(1), ADDR, 0);
        }
        assert_eq!(b.check(Some(1), ADDR, 0), Some(BASE_MS));
        b.fail(Some(1), ADDR, 0);
        assert_eq!(b.check(Some(1), ADDR, 0), Some(2 * BASE_MS));
        assert_eq!(b.check(Some(1), ADDR, 2 * BASE_MS), None);
        b.succeed(1);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(b.check(Some(1), other, 0), None);
        assert_eq!(b.check(Some(2), ADDR, 0), Some(2 * BASE_MS), "the address stays counted");
        b.prune(FORGET_MS + 1);
        assert_eq!(b.check(Some(2), ADDR, FORGET_MS + 1), None);
    }
}
