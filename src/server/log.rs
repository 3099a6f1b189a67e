//! Logging: one line per event on stderr, `<unix ms> <LEVEL> <message>`,
//! messages naming the connection as `conn N`.
//!
//! Invariant: callers log names, UIDs, addresses, opcodes and reasons —
//! never a password, passphrase, key or message content (a test greps the
//! log of a whole conversation for them).

use std::sync::atomic::{AtomicU8, Ordering};

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The server cannot do its job.
    Error = 0,
    /// Something refused or failed that an operator may want to know.
    Warn = 1,
    /// Lifecycle: start, stop, logins, registrations, summaries.
    Info = 2,
    /// Every connection opened and closed.
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

impl Level {
    /// Parses `error`, `warn`, `info` or `debug`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// Sets the most verbose level written.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether `level` is written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line if `level` is enabled (use the `log!` macro).
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    if enabled(level) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        eprintln!("{now} {} {args}", level.name());
    }
}

/// `log!(Info, "conn {id}: ...")`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::server::log::write($crate::server::log::Level::$level, format_args!($($arg)*))
    };
}
