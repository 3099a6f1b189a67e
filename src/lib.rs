//! sotto: what the server and the client share — wire codec, crypto, handshake,
//! record layer and account rules. Nothing here touches a socket or the clock.

pub mod account;
pub mod build_info;
pub mod crypto;
pub mod dm;
pub mod frame;
pub mod handshake;
pub mod identity;
pub mod opcodes;
pub mod record;
pub mod room;
pub mod wire;
