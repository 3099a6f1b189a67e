//! sotto: what the server and the client share — wire codec, crypto, handshake,
//! record layer and account rules — and `server`, sottod's protocol core.
//! Nothing here touches a socket or reads the clock, except `server::store`
//! (files), `server::worker` (threads) and `server::log` (stderr).

pub mod account;
pub mod body;
pub mod build_info;
pub mod crypto;
pub mod dm;
pub mod file;
pub mod frame;
pub mod handshake;
pub mod identity;
pub mod manpage;
#[cfg(feature = "nats-harness")]
pub mod nats_harness;
pub mod opcodes;
pub mod ratchet;
pub mod record;
pub mod room;
pub mod server;
pub mod ticket;
pub mod wire;
pub mod x3dh;
