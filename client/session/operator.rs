//! Protocol layer: what the server says about the account (PROTOCOL.md §11):
//! the login record after a login, why a login was refused, a kick, an
//! announcement; and the admins' `/kick` and `/announce` requests.
//!
//! Invariant: every text the server sent is checked against its length
//! field before use; nothing here changes local state other than the reason
//! held for the login answer that follows `lgrf`.

use std::net::{IpAddr, Ipv6Addr};

use sotto::opcodes::{self, Announce, Announcement, KickUser, Kicked, LoginEntry, LoginRecord, LoginRefused};
use sotto::wire::{self, Message};
use zerocopy::FromBytes;

use super::{Event, Failure, InFlight, Pending, Session};

/// Something the server said about the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    /// After a login: the previous login (time, address) and the failed logins since (time, address, reason).
    LoginRecord {
        /// The previous login, if there was one.
        last: Option<(u64, String)>,
        /// Failed logins since, newest first.
        failed: Vec<(u64, String, String)>,
    },
    /// An operator or an admin closed every session of the account.
    Kicked {
        /// Who.
        by: String,
        /// Why (may be empty).
        reason: String,
    },
    /// An announcement to every user.
    Announcement {
        /// Who.
        from: String,
        /// The text.
        text: String,
        /// When it was made, Unix ms.
        ts: u64,
    },
}

impl AccountEvent {
    /// The line people read.
    pub fn describe(&self) -> String {
        match self {
            AccountEvent::LoginRecord { last, failed } => {
                let visit = match last {
                    Some((ts, addr)) => format!("last login {} from {addr}", when(*ts)),
                    None => "first login".to_string(),
                };
                match failed.first() {
                    None => format!("{visit}; no failed logins since"),
                    Some((_, addr, _)) => {
                        let n = failed.len();
                        let s = if n == 1 { "" } else { "s" };
                        format!("{n} failed login{s} since your last visit, the last from {addr} ({visit})")
                    }
                }
            }
            AccountEvent::Kicked { by, reason } if reason.is_empty() => format!("disconnected by {by}"),
            AccountEvent::Kicked { by, reason } => format!("disconnected by {by}: {reason}"),
            AccountEvent::Announcement { from, text, .. } => format!("announcement from {from}: {text}"),
        }
    }
}

/// `2026-12-05 10:00 UTC` for a Unix time in ms.
pub fn when(ms: u64) -> String {
    let t = sotto::server::log::rfc3339(ms);
    match (t.get(..10), t.get(11..16)) {
        (Some(day), Some(hm)) => format!("{day} {hm} UTC"),
        _ => t,
    }
}

/// An address as the server stores it (IPv6, IPv4 mapped), in words.
fn addr(bytes: [u8; 16]) -> String {
    let v6 = Ipv6Addr::from(bytes);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4).to_string()
}

/// The reason code of a `LoginEntry` in words.
fn outcome(code: u8) -> &'static str {
    match code {
        0 => "logged in",
        1 => "wrong password",
        2 => "wrong passphrase",
        3 => "on hold",
        4 => "banned",
        5 => "blocked",
        6 => "session limit",
        _ => "refused",
    }
}

impl Session {
    /// lgrc, lgrf, kckd and anno; None for another opcode.
    pub(super) fn dispatch_account(&mut self, opcode: u32, pt: &[u8], ours: bool) -> Option<Option<Event>> {
        let ev = match opcode {
            opcodes::LGRC => match wire::decode::<LoginRecord>(pt) {
                Ok(m) => {
                    let last = (m.last_ts.get() != 0).then(|| (m.last_ts.get(), addr(m.last_addr)));
                    let n = usize::from(m.failed_count).min(m.failed.len() / core::mem::size_of::<LoginEntry>());
                    let failed = m
                        .failed
                        .chunks_exact(core::mem::size_of::<LoginEntry>())
                        .take(n)
                        .filter_map(|c| LoginEntry::read_from_bytes(c).ok())
                        .map(|e| (e.ts.get(), addr(e.addr), outcome(e.reason).to_string()))
                        .collect();
                    Some(Event::Account(AccountEvent::LoginRecord { last, failed }))
                }
                Err(e) => self.malformed(false, "lgrc", e),
            },
            opcodes::LGRF => match wire::decode::<LoginRefused>(pt) {
                Ok(m) if ours => {
                    let reason = m.reason().unwrap_or_default();
                    let text = match m.state {
                        1 => "awaiting approval".to_string(),
                        _ => {
                            let until = match m.until.get() {
                                0 => "indefinitely".to_string(),
                                t => format!("until {}", when(t)),
                            };
                            if reason.is_empty() {
                                format!("banned {until}")
                            } else {
                                format!("banned {until}: {reason}")
                            }
                        }
                    };
                    // Said with the 403 that follows.
                    self.refusal = Some(text);
                    None
                }
                Ok(_) => Some(Event::Notice("ignoring a lgrf (login refused) message for no pending login".into())),
                Err(e) => self.malformed(ours, "lgrf", e),
            },
            opcodes::KCKD => match wire::decode::<Kicked>(pt) {
                Ok(m) => Some(Event::Account(AccountEvent::Kicked {
                    by: m.by().unwrap_or("?").to_string(),
                    reason: m.reason().unwrap_or_default().to_string(),
                })),
                Err(e) => self.malformed(false, "kckd", e),
            },
            opcodes::ANNO => match wire::decode::<Announcement>(pt) {
                Ok(m) => Some(Event::Account(AccountEvent::Announcement {
                    from: m.from().unwrap_or("?").to_string(),
                    text: m.text().unwrap_or("(unreadable text)").to_string(),
                    ts: m.ts.get(),
                })),
                Err(e) => self.malformed(false, "anno", e),
            },
            _ => return None,
        };
        Some(ev)
    }

    /// A refused login's failure, with the reason `lgrf` gave, if it came.
    pub(super) fn login_failure(&mut self, mut f: Failure) -> Failure {
        if let Some(text) = self.refusal.take().filter(|_| f.code == 403) {
            f.message = text;
        }
        f
    }

    /// `/kick USER [REASON]` (admins; the server checks the role).
    pub fn kick(&mut self, user: &str, reason: &str, now_ms: u64) -> Result<(), Failure> {
        self.check_online("kick")?;
        let id = self.take_id();
        let mut m = KickUser::request(id, now_ms);
        let user = user.strip_prefix('@').unwrap_or(user).to_ascii_lowercase();
        if m.set_user(&user).is_err() || m.set_reason(reason).is_err() {
            return Err(Failure::new("kick", 400, "the user name is at most 32 bytes, the reason 128"));
        }
        self.queue(&mut m);
        self.in_flight = Some(InFlight { id, deadline_ms: super::deadline(now_ms), what: Pending::Simple("kick") });
        Ok(())
    }

    /// `/announce TEXT` (admins; the server checks the role).
    pub fn announce(&mut self, text: &str, now_ms: u64) -> Result<(), Failure> {
        self.check_online("announce")?;
        let id = self.take_id();
        let mut m = Announce::request(id, now_ms);
        if m.set_text(text).is_err() {
            return Err(Failure::new("announce", 400, "an announcement is at most 255 bytes"));
        }
        self.queue(&mut m);
        self.in_flight = Some(InFlight { id, deadline_ms: super::deadline(now_ms), what: Pending::Simple("announce") });
        Ok(())
    }

    fn check_online(&self, cmd: &str) -> Result<(), Failure> {
        if !self.logged_in() {
            return Err(Failure::new(cmd, 401, "log in first"));
        }
        self.check_idle(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_a_login_record_as_the_user_reads_it() {
        let ev = AccountEvent::LoginRecord {
            last: Some((0, "198.51.100.7".into())),
            failed: vec![
                (3, "203.0.113.5".into(), "wrong password".into()),
                (2, "203.0.113.9".into(), "wrong password".into()),
                (1, "203.0.113.9".into(), "wrong passphrase".into()),
            ],
        };
        assert_eq!(
            ev.describe(),
            "3 failed logins since your last visit, the last from 203.0.113.5 (last login 1970-01-01 00:00 UTC from 198.51.100.7)"
        );
        let first = AccountEvent::LoginRecord { last: None, failed: vec![] };
        assert_eq!(first.describe(), "first login; no failed logins since");
        assert_eq!(addr(std::net::Ipv4Addr::new(203, 0, 113, 5).to_ipv6_mapped().octets()), "203.0.113.5");
    }
}
