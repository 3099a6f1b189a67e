//! The request dispatch table, generated from opcodes.toml.
//!
//! Defines `DISPATCH: [Entry; N]` (sorted by opcode). Opcode, exact size and
//! required state are checked by `Core::dispatch` before any handler runs;
//! the handler variant carries the proof its state requires.

use crate::wire::State;

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
    /// The handler.
    pub handler: Handler,
}

include!(concat!(env!("OUT_DIR"), "/dispatch.rs"));

/// The entry for `opcode`, by binary search.
pub fn lookup(opcode: u32) -> Option<&'static Entry> {
    DISPATCH.binary_search_by_key(&opcode, |e| e.opcode).ok().and_then(|i| DISPATCH.get(i))
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
}
