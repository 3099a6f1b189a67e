//! Terminal layer shared by the front ends that take the terminal over (the
//! full screen, and plain mode's line editor): the terminal is given back
//! after a panic and after a terminating signal.
//!
//! Invariant: the panic hook restores the terminal before the panic message
//! is printed; SIGTERM, SIGHUP and SIGQUIT only set a flag (async-signal-safe),
//! which the front end turns into an error, so the run ends through its
//! normal path and every guard restores what it changed.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The terminating signal caught, or 0.
static TERMINATED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_terminate(sig: libc::c_int) {
    TERMINATED.store(sig, Ordering::SeqCst);
}

/// Restores the terminal with `restore` before any panic message.
pub fn restore_on_panic(restore: fn()) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// Catches SIGTERM, SIGHUP and SIGQUIT (with the terminal in raw mode, the
/// keys send no signal themselves).
pub fn catch_terminate() -> io::Result<()> {
    // No SA_RESTART: the driver's poll(2) returns, and the front end sees the flag.
    let action = SigAction::new(SigHandler::Handler(on_terminate), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// An error once a terminating signal was caught (its reason also kept in `last_error`).
pub fn check_signal(last_error: &mut Option<String>) -> io::Result<()> {
    match TERMINATED.load(Ordering::SeqCst) {
        0 => Ok(()),
        sig => {
            let why = format!("ended by signal {sig}");
            *last_error = Some(why.clone());
            Err(io::Error::other(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    fn restore() {
        ORDER.lock().unwrap().push("restore");
    }

    #[test]
    fn a_panic_restores_the_terminal_before_its_message_is_printed() {
        // The hook is process-wide: stand in for the message printer, then put the default back.
        std::panic::set_hook(Box::new(|_| ORDER.lock().unwrap().push("message")));
        restore_on_panic(restore);
        let result = std::panic::catch_unwind(|| panic!("boom"));
        let _ = std::panic::take_hook();
        assert!(result.is_err());
        let order = ORDER.lock().unwrap().clone();
        assert_eq!(order, ["restore", "message"]);
    }
}
