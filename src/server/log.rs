//! Logging: one line per event on stderr, `<RFC 3339 UTC time> <LEVEL>
//! <message>` (`2026-12-04T16:05:02.123Z INFO conn 7: ...`), messages naming
//! the connection as `conn N`. Under systemd (its `JOURNAL_STREAM` is set:
//! stderr goes to the journal, which stamps every line) the time is left out.
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

/// The most verbose level written, by name (`INFO`).
pub fn level_name() -> &'static str {
    [Level::Error, Level::Warn, Level::Info, Level::Debug]
        .into_iter()
        .rfind(|l| enabled(*l))
        .map_or("ERROR", Level::name)
}

/// Whether `level` is written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line if `level` is enabled (use the `log!` macro).
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    if enabled(level) {
        if journal() {
            eprintln!("{} {args}", level.name());
        } else {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            eprintln!("{} {} {args}", rfc3339(now as u64), level.name());
        }
    }
}

/// Whether stderr goes to systemd's journal (read once).
fn journal() -> bool {
    static JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *JOURNAL.get_or_init(|| std::env::var_os("JOURNAL_STREAM").is_some())
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (days to a civil date: Howard Hinnant's algorithm).
pub fn rfc3339(ms: u64) -> String {
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `log!(Info, "conn {id}: ...")`.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::server::log::write($crate::server::log::Level::$level, format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z", "a leap day");
        assert_eq!(rfc3339(1_796_400_302_123), "2026-12-04T16:05:02.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
