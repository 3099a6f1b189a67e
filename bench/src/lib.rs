//! sotto-bench: load generator for sottod and, through IRC (plain and TLS),
//! for the peer servers it is compared with (docs/BENCHMARKS.md).

pub mod direct;
pub mod doc;
pub mod engine;
pub mod fanout;
pub mod hop;
pub mod irc;
pub mod peers;
pub mod peers_run;
pub mod proto;
pub mod report;
pub mod scp;
pub mod seal;
pub mod server;
pub mod stats;
pub mod sys;
pub mod threads;
pub mod w8;
pub mod w9;
pub mod work;
