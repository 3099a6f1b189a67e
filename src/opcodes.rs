//! Generated protocol items, from opcodes.toml by build.rs.
//!
//! Defines: `PROTOCOL_VERSION`, `MAGIC`, `TABLE_HASH`, `MAX_MESSAGE`; the
//! structs `Header`, `ClientHello`, `ServerHello`, `UserRecord`; one struct per
//! message (`Register`, `Login`, `Passphrase`, ..., `StatusReply`, `Connected`)
//! implementing [`Message`]; one `u32` constant per mnemonic (`CREA`, `AUTH`,
//! ...); and `OPCODES`, the audit metadata sorted by opcode.

#![allow(missing_docs, clippy::all)]

use crate::wire::{fixed_str, set_fixed_str, Classed, Direction, Message, OpcodeInfo, State, WireError};
use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

include!(concat!(env!("OUT_DIR"), "/opcodes.rs"));

/// docs/OPCODES.md as this build generated it.
pub const OPCODES_MD: &str = include_str!(concat!(env!("OUT_DIR"), "/OPCODES.md"));

/// Looks up a message's audit row by opcode.
pub fn info(opcode: u32) -> Option<&'static OpcodeInfo> {
    OPCODES.binary_search_by_key(&opcode, |i| i.opcode).ok().and_then(|i| OPCODES.get(i))
}

/// The built-in roles and their bits (opcodes.toml `roles`, PROTOCOL.md §11).
pub const ROLES: [(&str, u8); 3] = [("user", 1), ("moderator", 2), ("admin", 4)];

/// `user,admin` for a role mask, `-` for none.
pub fn role_names(mask: u8) -> String {
    let names: Vec<&str> = ROLES.iter().filter(|(_, b)| mask & b != 0).map(|(n, _)| *n).collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

/// The plain-text audit table printed by `sottod --opcodes`.
pub fn audit_table() -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "sotto protocol {PROTOCOL_VERSION}, table hash {}\n{:>7}  {:<4}  {:<14}  {:<20}  {:>5}  {:<16}  {:<15}  {:<22}  {}\n",
        crate::crypto::hex(&TABLE_HASH),
        "opcode",
        "mnem",
        "dir",
        "struct",
        "bytes",
        "state",
        "roles",
        "handler",
        "description"
    );
    for i in OPCODES.iter() {
        let _ = writeln!(
            out,
            "{:>7}  {:<4}  {:<14}  {:<20}  {:>5}  {:<16}  {:<15}  {:<22}  {}",
            i.opcode,
            i.mnemonic,
            i.direction.as_str(),
            i.struct_name,
            i.size,
            i.state.map_or("-", State::as_str),
            role_names(i.roles),
            i.handler.unwrap_or("-"),
            i.doc
        );
    }
    out
}
