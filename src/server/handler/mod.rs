//! Request handlers, one file per area; named by opcodes.toml `handler`.
//!
//! Each handler receives a frame whose opcode, exact size and session state
//! the dispatch table already checked.

pub mod account;
pub mod direct;
pub mod heartbeat;
pub mod room;
