//! Terminal layer: standard input as lines for the poll(2) loop, and secrets read with echo off.
//!
//! Invariant: fd 0 is read only here, into a buffer this reader owns (no hidden
//! buffer that poll(2) cannot see); a terminal's echo is always restored, even
//! when a signal interrupts a prompt; buffered input is zeroized when dropped.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::errno::Errno;
use zeroize::Zeroizing;

/// A line longer than this is cut and handed over as it is (bounds the buffer).
const MAX_LINE: usize = 64 * 1024;

/// Standard input, read in chunks and split into lines.
pub struct Input {
    stdin: io::Stdin,
    buf: Zeroizing<Vec<u8>>,
    eof: bool,
    tty: bool,
}

impl Input {
    /// Reads the process's standard input.
    pub fn stdin() -> Input {
        let stdin = io::stdin();
        let tty = nix::unistd::isatty(stdin.as_raw_fd()).unwrap_or(false);
        Input { stdin, buf: Zeroizing::new(Vec::new()), eof: false, tty }
    }

    /// True once end of input was read (buffered lines may remain).
    pub fn eof_seen(&self) -> bool {
        self.eof
    }

    /// True when end of input was read and every line was taken.
    pub fn exhausted(&self) -> bool {
        self.eof && self.buf.is_empty()
    }

    /// Reads once from fd 0 (call when poll(2) says it is readable, or to block).
    pub fn fill(&mut self) -> io::Result<()> {
        let mut chunk = Zeroizing::new([0u8; 4096]);
        match nix::unistd::read(self.stdin.as_raw_fd(), &mut chunk[..]) {
            Ok(0) => self.eof = true,
            Ok(n) => self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
        Ok(())
    }

    /// The next complete line, without its line ending; at end of input, the unterminated rest.
    pub fn next_line(&mut self) -> Option<Zeroizing<String>> {
        let raw = Zeroizing::new(take_line(&mut self.buf, self.eof)?);
        Some(Zeroizing::new(String::from_utf8_lossy(&raw).into_owned()))
    }

    /// Blocks for the next line; `None` at end of input.
    pub fn read_line(&mut self) -> io::Result<Option<Zeroizing<String>>> {
        loop {
            if let Some(line) = self.next_line() {
                return Ok(Some(line));
            }
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Prints `prompt` and reads a line with echo off when stdin is a terminal;
    /// `None` at end of input or when a signal cancelled the prompt.
    pub fn read_secret(&mut self, prompt: &str) -> io::Result<Option<Zeroizing<String>>> {
        let mut out = io::stdout().lock();
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
        drop(out);
        if !self.tty {
            // Nothing echoed the line: end the prompt's line ourselves.
            let line = self.read_line();
            println!();
            return line;
        }
        let guard = echo::Off::new(io::stdin())?;
        loop {
            if let Some(line) = self.next_line() {
                return Ok(Some(line));
            }
            if self.eof || guard.interrupted() {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stdin.as_fd()
    }
}

/// Removes and returns the first line of `buf` (without `\n` or `\r\n`).
fn take_line(buf: &mut Vec<u8>, eof: bool) -> Option<Vec<u8>> {
    let (take, cut) = match buf.iter().position(|&b| b == b'\n') {
        Some(nl) => (nl + 1, nl),
        None if buf.len() >= MAX_LINE => (MAX_LINE, MAX_LINE),
        None if eof && !buf.is_empty() => (buf.len(), buf.len()),
        None => return None,
    };
    let mut line: Vec<u8> = buf.drain(..take).collect();
    line.truncate(cut);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(line)
}

/// Echo control for secret prompts.
mod echo {
    use std::io;
    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicI32, Ordering};

    use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
    use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

    /// Signals that would otherwise end or stop the process with echo still off.
    const SIGNALS: [Signal; 5] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGTSTP];

    static CAUGHT: AtomicI32 = AtomicI32::new(0);

    extern "C" fn on_signal(sig: libc::c_int) {
        CAUGHT.store(sig, Ordering::SeqCst);
    }

    /// Echo off until dropped; a signal caught meanwhile is re-raised after the terminal is restored.
    pub struct Off {
        stdin: io::Stdin,
        saved: Termios,
        old: Vec<(Signal, SigAction)>,
    }

    impl Off {
        /// Turns echo off on standard input (keeping the newline echo).
        pub fn new(stdin: io::Stdin) -> io::Result<Off> {
            let saved = termios::tcgetattr(stdin.as_fd())?;
            CAUGHT.store(0, Ordering::SeqCst);
            let mut guard = Off { stdin, saved: saved.clone(), old: Vec::new() };
            // No SA_RESTART: the read of the secret returns EINTR, and the
            // prompt ends through Drop, which restores the terminal.
            let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
            for sig in SIGNALS {
                // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
                let old = unsafe { signal::sigaction(sig, &action) }?;
                guard.old.push((sig, old));
            }
            let mut quiet = saved;
            quiet.local_flags.remove(LocalFlags::ECHO);
            quiet.local_flags.insert(LocalFlags::ECHONL);
            termios::tcsetattr(guard.stdin.as_fd(), SetArg::TCSANOW, &quiet)?;
            Ok(guard)
        }

        /// True when a signal interrupted the prompt.
        pub fn interrupted(&self) -> bool {
            CAUGHT.load(Ordering::SeqCst) != 0
        }
    }

    impl Drop for Off {
        fn drop(&mut self) {
            let _ = termios::tcsetattr(self.stdin.as_fd(), SetArg::TCSANOW, &self.saved);
            for (sig, old) in self.old.drain(..).rev() {
                // SAFETY: reinstates the disposition that was in place before `new`.
                let _ = unsafe { signal::sigaction(sig, &old) };
            }
            let caught = CAUGHT.swap(0, Ordering::SeqCst);
            if let Ok(sig) = Signal::try_from(caught) {
                // Now that echo is back, let the signal do what it would have done.
                let _ = signal::raise(sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_keeps_partial_ones_until_eof() {
        let mut buf = b"/help\r\n/login a\nrest".to_vec();
        assert_eq!(take_line(&mut buf, false).unwrap(), b"/help");
        assert_eq!(take_line(&mut buf, false).unwrap(), b"/login a");
        assert_eq!(take_line(&mut buf, false), None);
        assert_eq!(take_line(&mut buf, true).unwrap(), b"rest");
        assert_eq!(take_line(&mut buf, true), None);
    }

    #[test]
    fn cuts_overlong_lines() {
        let mut buf = vec![b'x'; MAX_LINE + 10];
        assert_eq!(take_line(&mut buf, false).unwrap().len(), MAX_LINE);
        assert_eq!(buf.len(), 10);
    }
}
