//! sotto-bench: load generator for sottod and, through IRC (plain and TLS),
//! for the peer servers it is compared with (docs/BENCHMARKS.md).

pub mod irc;
pub mod peers;
