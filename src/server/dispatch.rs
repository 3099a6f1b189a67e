//! The request dispatch table, generated from opcodes.toml.
//!
//! Defines `DISPATCH: [Entry; N]` (sorted by opcode) and, apart,
//! `ADMIN_DISPATCH: [AdminEntry; M]` for the local admin socket. Opcode, exact
//! size, required state, role and the account's denials are checked by
//! `Core::dispatch` before any handler runs; the handler variant carries the
//! proof its state requires. The two tables are disjoint (build.rs keeps the
//! admin directions in 300000-300099): a network frame can never name an
//! admin handler, nor an admin frame a network one.

use crate::wire::State;

use crate::server::admin::AdminPeer;
use crate::server::core::{ConnId, Core};
use crate::server::session::{Authenticated, PasswordAccepted};

/// A handler, typed by the session state it requires.
pub enum Handler {
    /// Before login (`await_login`).
    PreAuth(fn(&mut Core, ConnId, &[u8], u64)),
    /// Password verified (`await_passphrase`).
    Passphrase(fn(&mut Core, ConnId, &PasswordAccepted, &[u8], u64)),
    /// Logged in (`authenticated`).
    Authed(fn(&mut Core, ConnId, &Authenticated, &[u8], u64)),
}

/// One row of the dispatch table.
pub struct Entry {
    /// Request opcode.
    pub opcode: u32,
    /// Mnemonic, for logs.
    pub mnemonic: &'static str,
    /// Exact size of the request.
    pub size: usize,
    /// Required state (as the table says; the handler variant matches it).
    pub state: State,
    /// Role bits that may send it (opcodes.toml `roles`).
    pub roles: u8,
    /// The handler.
    pub handler: Handler,
}

/// One row of the admin socket's table.
pub struct AdminEntry {
    /// Admin request opcode.
    pub opcode: u32,
    /// Mnemonic, for logs.
    pub mnemonic: &'static str,
    /// Exact size of the request.
    pub size: usize,
    /// The handler; it receives the peer's credentials, checked at accept.
    pub handler: fn(&mut Core, ConnId, &AdminPeer, &[u8], u64),
}

include!(concat!(env!("OUT_DIR"), "/dispatch.rs"));

/// The entry for `opcode`, by binary search.
pub fn lookup(opcode: u32) -> Option<&'static Entry> {
    DISPATCH.binary_search_by_key(&opcode, |e| e.opcode).ok().and_then(|i| DISPATCH.get(i))
}

/// The admin socket's entry for `opcode`.
pub fn lookup_admin(opcode: u32) -> Option<&'static AdminEntry> {
    ADMIN_DISPATCH.binary_search_by_key(&opcode, |e| e.opcode).ok().and_then(|i| ADMIN_DISPATCH.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_matches_the_audit_metadata() {
        assert!(DISPATCH.windows(2).all(|w| w[0].opcode < w[1].opcode));
        for e in DISPATCH.iter() {
            let info = crate::opcodes::info(e.opcode).unwrap();
            assert_eq!((info.size, info.state, info.mnemonic), (e.size, Some(e.state), e.mnemonic));
            assert_eq!(info.roles, e.roles, "{}", e.mnemonic);
            assert!(e.roles != 0, "{}: some role may send it", e.mnemonic);
            let variant_state = match e.handler {
                Handler::PreAuth(_) => State::AwaitLogin,
                Handler::Passphrase(_) => State::AwaitPassphrase,
                Handler::Authed(_) => State::Authenticated,
            };
            assert_eq!(variant_state, e.state, "{}", e.mnemonic);
        }
        let requests = crate::opcodes::OPCODES.iter().filter(|i| i.state.is_some()).count();
        assert_eq!(requests, DISPATCH.len());
    }

    #[test]
    fn no_admin_opcode_is_reachable_from_the_network_table_and_no_network_one_from_the_admin_table() {
        use crate::wire::Direction;
        assert!(ADMIN_DISPATCH.windows(2).all(|w| w[0].opcode < w[1].opcode));
        for i in crate::opcodes::OPCODES.iter() {
            let admin_row = matches!(i.direction, Direction::AdminRequest | Direction::AdminResponse);
            assert_eq!(admin_row, (300_000..=300_099).contains(&i.opcode), "{}", i.mnemonic);
            if admin_row {
                assert!(lookup(i.opcode).is_none(), "{} reachable from the network", i.mnemonic);
            } else {
                assert!(lookup_admin(i.opcode).is_none(), "{} reachable from the admin socket", i.mnemonic);
            }
            assert_eq!(lookup_admin(i.opcode).is_some(), i.direction == Direction::AdminRequest, "{}", i.mnemonic);
        }
        for e in ADMIN_DISPATCH.iter() {
            assert!(lookup(e.opcode).is_none() && (300_000..=300_099).contains(&e.opcode), "{}", e.mnemonic);
            let info = crate::opcodes::info(e.opcode).unwrap();
            assert_eq!((info.size, info.mnemonic, info.state), (e.size, e.mnemonic, None));
        }
        for e in DISPATCH.iter() {
            assert!(lookup_admin(e.opcode).is_none(), "{}", e.mnemonic);
        }
        // Every opcode number at all: never in both.
        for op in 0..400_000u32 {
            assert!(!(lookup(op).is_some() && lookup_admin(op).is_some()), "{op}");
        }
    }
}
