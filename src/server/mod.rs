//! sottod's core, sans I/O: the connection state machines (`core`), the
//! generated dispatch table, the request handlers, the sessions and their
//! proof tokens, rooms, mailboxes and contacts; plus what the binary drives
//! them with: storage (`store`), the worker pool (`worker`) and the log.
//!
//! Invariant: the public surface is what `server/main.rs` and
//! `server/event_loop.rs` need, plus the fuzzing seam (`fuzz`, only under
//! `cfg(fuzzing)`); handlers, sessions and proof tokens are crate-private, so
//! nothing outside this crate can run a handler or forge a session.

pub mod accounts;
pub mod acct;
pub mod admin;
pub mod announce;
pub mod core;
pub mod files;
pub mod jetstream;
pub mod log;
pub mod mailbox;
pub mod prekeys;
pub mod relay;
pub mod remote;
pub mod retired;
pub mod room;
pub mod store;
pub mod tickets;
pub mod worker;

pub(crate) mod backoff;
pub(crate) mod checked;
pub(crate) mod contacts;
pub(crate) mod dispatch;
pub(crate) mod handler;
pub(crate) mod session;
pub(crate) mod throttle;

#[cfg(any(test, fuzzing))]
pub mod fuzz;

#[cfg(test)]
mod acct_tests;
#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod dm_tests;
#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod moderation_tests;
#[cfg(test)]
mod prekey_tests;
#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod remote_tests;
#[cfg(test)]
mod resume_tests;
