//! Terminal layer of plain mode on a terminal: a line editor (the shared
//! `editor` with `keys`), drawn with carriage returns, spaces and the
//! characters themselves only.
//!
//! Invariant: the terminal is in a raw mode of our own (no canonical input,
//! no echo, no signals from keys, output processing kept, so `\n` still
//! starts a line) only while an `Editor` lives, and is restored on drop, on
//! panic, and after a terminating signal; nothing written here is an escape
//! sequence (not even to move the cursor), so plain mode's output stays
//! plain text; keys are read as events, every event ready at once, so no
//! input waits in a buffer poll(2) cannot see.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use nix::sys::termios::{self, InputFlags, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use unicode_width::UnicodeWidthChar;
use zeroize::Zeroizing;

use crate::editor::Editor;
use crate::keys::{self, Action};

/// The terminal mode before ours, for the panic hook.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Puts the terminal mode back (safe to call more than once).
fn restore() {
    let saved = SAVED.lock().map(|s| *s).unwrap_or(None);
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &Termios::from(saved));
    }
}

/// The line being typed, on the last line of the terminal.
pub struct LineEdit {
    editor: Editor,
    /// Lines entered and not yet taken.
    lines: VecDeque<Zeroizing<String>>,
    /// The prompt last drawn.
    prompt: String,
    /// Columns the prompt and input took when last drawn (0: nothing drawn).
    drawn: usize,
}

impl Drop for LineEdit {
    fn drop(&mut self) {
        restore();
    }
}

impl LineEdit {
    /// Takes the terminal over; `None` when stdin's mode cannot be read or set.
    pub fn start() -> io::Result<LineEdit> {
        let saved = termios::tcgetattr(io::stdin().as_fd())?;
        if let Ok(mut s) = SAVED.lock() {
            *s = Some(libc::termios::from(saved.clone()));
        }
        crate::term::restore_on_panic(restore);
        crate::term::catch_terminate()?;
        let mut raw = saved;
        raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG | LocalFlags::IEXTEN);
        raw.input_flags.remove(InputFlags::IXON | InputFlags::ICRNL);
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(LineEdit { editor: Editor::default(), lines: VecDeque::new(), prompt: String::new(), drawn: 0 })
    }

    /// The next line entered.
    pub fn next_line(&mut self) -> Option<Zeroizing<String>> {
        self.lines.pop_front()
    }

    /// Takes every key ready, and redraws the line.
    pub fn read_keys(&mut self) -> io::Result<()> {
        while event::poll(Duration::ZERO)? {
            let Some(action) = keys::action(event::read()?) else { continue };
            let e = &mut self.editor;
            match action {
                _ if e.edit(&action) => {}
                Action::Paste(s) => e.paste(&s),
                Action::Up => e.up(),
                Action::Down => e.down(),
                Action::Complete => e.complete(|word, first| {
                    let names = crate::command::NAMES.iter().map(|n| n.to_string());
                    names.filter(|n| first && n.starts_with(word) && n != word).collect()
                }),
                Action::Submit => {
                    let line = e.take();
                    // The line stays on screen, as the terminal's own echo would leave it.
                    self.draw_with(&line, line.chars().count())?;
                    self.end_line()?;
                    self.lines.push_back(Zeroizing::new(line));
                    continue;
                }
                Action::Interrupt => self.quit(),
                Action::EndOfInput if e.is_empty() => self.quit(),
                Action::EndOfInput => e.delete(),
                // Applied by `Editor::edit` in the first arm.
                Action::Insert(_)
                | Action::Left
                | Action::Right
                | Action::WordLeft
                | Action::WordRight
                | Action::Home
                | Action::End
                | Action::Backspace
                | Action::Delete
                | Action::DeleteWord => {}
                Action::PageUp
                | Action::PageDown
                | Action::ScrollUp
                | Action::ScrollDown
                | Action::Window(_)
                | Action::NextWindow
                | Action::PrevWindow => {}
            }
            if self.drawn > 0 {
                self.draw(&self.prompt.clone())?;
            }
        }
        Ok(())
    }

    fn quit(&mut self) {
        self.editor.clear();
        self.lines.push_back(Zeroizing::new("/quit".to_string()));
    }

    /// Draws `prompt` and the line being typed, the cursor in place.
    pub fn draw(&mut self, prompt: &str) -> io::Result<()> {
        self.prompt = prompt.to_string();
        let (text, cursor) = (self.editor.text(), self.editor.cursor());
        self.draw_with(&text, cursor)
    }

    fn draw_with(&mut self, text: &str, cursor: usize) -> io::Result<()> {
        // A terminal that does not know its size (0 columns) is taken as 80 wide.
        let width = match crossterm::terminal::size() {
            Ok((w, _)) if w > 0 => usize::from(w).max(8),
            _ => 80,
        };
        let (line, before) = visible(&self.prompt, text, cursor, width - 1);
        let used: usize = line.chars().map(|c| c.width().unwrap_or(0)).sum();
        let pad = " ".repeat(self.drawn.saturating_sub(used));
        // Without escape sequences: the line, blanks over what was longer,
        // then the line again up to the cursor, which leaves the cursor there.
        let mut out = io::stdout().lock();
        write!(out, "\r{line}{pad}\r{before}")?;
        out.flush()?;
        self.drawn = used.max(1);
        Ok(())
    }

    /// Wipes the prompt and the line being typed (output follows on that line).
    pub fn erase(&mut self) -> io::Result<()> {
        if self.drawn > 0 {
            let mut out = io::stdout().lock();
            write!(out, "\r{}\r", " ".repeat(self.drawn))?;
            out.flush()?;
            self.drawn = 0;
        }
        Ok(())
    }

    /// Ends the drawn line, keeping it on screen.
    fn end_line(&mut self) -> io::Result<()> {
        self.drawn = 0;
        let mut out = io::stdout().lock();
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Asks for a secret: nothing typed is shown. `None` when cancelled (Ctrl-C, Ctrl-D).
    pub fn read_secret(&mut self, prompt: &str) -> io::Result<Option<Zeroizing<String>>> {
        self.erase()?;
        let mut out = io::stdout();
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
        let mut secret = Zeroizing::new(String::new());
        let answer = loop {
            let mut signal_error = None;
            crate::term::check_signal(&mut signal_error)?;
            if !event::poll(Duration::from_millis(250))? {
                continue;
            }
            match event::read()? {
                Event::Key(KeyEvent { kind: KeyEventKind::Release, .. }) => {}
                Event::Key(KeyEvent { code: KeyCode::Enter, .. }) => break Some(secret),
                Event::Key(KeyEvent { code: KeyCode::Char('c' | 'd'), modifiers, .. })
                    if modifiers.contains(KeyModifiers::CONTROL) =>
                {
                    break None
                }
                Event::Key(KeyEvent { code: KeyCode::Backspace, .. }) => {
                    secret.pop();
                }
                Event::Key(KeyEvent { code: KeyCode::Char(c), modifiers, .. })
                    if !modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                        && !crate::text::is_unsafe(c) =>
                {
                    secret.push(c)
                }
                Event::Paste(s) => secret.extend(s.chars().filter(|c| !crate::text::is_unsafe(*c))),
                _ => {}
            }
        };
        self.end_line()?;
        Ok(answer)
    }
}

/// The prompt and the part of `text` that fits in `width` columns around
/// the cursor; and the same up to the cursor.
fn visible(prompt: &str, text: &str, cursor: usize, width: usize) -> (String, String) {
    let chars: Vec<char> = text.chars().collect();
    let cursor = cursor.min(chars.len());
    let prompt_w: usize = prompt.chars().map(|c| c.width().unwrap_or(0)).sum();
    let room = width.saturating_sub(prompt_w).max(1);
    // Scrolls so the cursor stays visible.
    // (The columns from `start` to the cursor kept as a running total: linear in the line.)
    let mut start = 0;
    let mut col: usize = chars.get(..cursor).unwrap_or_default().iter().map(|c| c.width().unwrap_or(0)).sum();
    while col >= room && start < cursor {
        col -= chars.get(start).and_then(|c| c.width()).unwrap_or(0);
        start += 1;
    }
    let mut shown = String::new();
    let mut used = 0;
    for c in chars.get(start..).unwrap_or_default() {
        let w = c.width().unwrap_or(0);
        if used + w > room.saturating_sub(1) && used > 0 {
            break;
        }
        shown.push(*c);
        used += w;
    }
    let before: String = chars.get(start..cursor).unwrap_or_default().iter().collect();
    (format!("{prompt}{shown}"), format!("{prompt}{before}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_part_around_the_cursor() {
        assert_eq!(visible("> ", "abc", 1, 80), ("> abc".to_string(), "> a".to_string()));
        let long = "x".repeat(50) + "END";
        let (line, before) = visible("> ", &long, long.len(), 20);
        assert!(line.ends_with("END") && line.chars().count() <= 20, "{line}");
        assert_eq!(line, before);
        let (line, before) = visible("> ", &long, 0, 20);
        assert!(line.starts_with("> xxx") && line.chars().count() <= 20 && before == "> ", "{line}");
        visible("a very long prompt> ", "text", 2, 3);
    }

    #[test]
    fn a_long_paste_is_drawn_in_time_linear_in_its_length() {
        // Scrolling to the cursor took a sum over the line per character skipped: a paste
        // of some hundred thousand characters froze plain mode's editor for minutes.
        let long = "漢".repeat(200_000);
        let started = std::time::Instant::now();
        let (line, before) = visible("> ", &long, 200_000, 80);
        assert!(line.starts_with("> 漢") && line == before, "{line}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
