//! Front-end layer: the input line of the full-screen client and of plain
//! mode's line editor, its history and tab completion.
//!
//! Invariant: the buffer only ever holds printable characters (no control or
//! format character, `text::is_unsafe`), whatever keys or paste arrive, so no
//! escape sequence typed or pasted can reach another user; the cursor is
//! always a valid index (0..=len); every edit is total (no panic on any key);
//! a moved cursor ends a completion, so Tab never replaces text it did not put there.

use zeroize::{Zeroize, Zeroizing};

/// Most lines kept in the history.
const HISTORY: usize = 200;

/// The line being typed.
#[derive(Default)]
pub struct Editor {
    buf: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Position while walking the history (Up/Down); `None` when editing a new line.
    walk: Option<usize>,
    /// The line being typed before the walk started.
    draft: String,
    /// The last completion: where the completed word starts, the candidates, which one is shown.
    completion: Option<(usize, Vec<String>, usize)>,
}

fn is_word(c: char) -> bool {
    !c.is_whitespace()
}

impl Editor {
    /// Applies an action that only edits the line (insert, move, delete);
    /// false for any other, which the front end handles itself.
    pub fn edit(&mut self, action: &crate::keys::Action) -> bool {
        use crate::keys::Action;
        match action {
            Action::Insert(c) => self.insert(*c),
            Action::Left => self.left(),
            Action::Right => self.right(),
            Action::WordLeft => self.word_left(),
            Action::WordRight => self.word_right(),
            Action::Home => self.home(),
            Action::End => self.end(),
            Action::Backspace => self.backspace(),
            Action::Delete => self.delete(),
            Action::DeleteWord => self.delete_word(),
            _ => return false,
        }
        true
    }

    /// The text as typed.
    pub fn text(&self) -> String {
        self.buf.iter().collect()
    }

    /// The cursor, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Inserts one character at the cursor (a control or format character is dropped).
    pub fn insert(&mut self, c: char) {
        self.completion = None;
        if crate::text::is_unsafe(c) {
            return;
        }
        self.buf.insert(self.cursor, c);
        self.cursor += 1;
    }

    /// Inserts pasted text: line breaks and tabs become spaces, other controls are dropped.
    pub fn paste(&mut self, s: &str) {
        for c in s.chars() {
            self.insert(if matches!(c, '\n' | '\r' | '\t') { ' ' } else { c });
        }
    }

    /// Inserts pasted text keeping its line breaks (`\r\n`, `\r` and `\n`
    /// each become one `\n`; a trailing one is dropped); tabs become spaces,
    /// other controls are dropped (the full-screen front end, which sends a
    /// multi-line paste as one message).
    pub fn paste_lines(&mut self, s: &str) {
        let s = s.replace("\r\n", "\n").replace('\r', "\n");
        for c in s.trim_end_matches('\n').chars() {
            match c {
                '\n' => {
                    self.completion = None;
                    self.buf.insert(self.cursor, '\n');
                    self.cursor += 1;
                }
                '\t' => self.insert(' '),
                c => self.insert(c),
            }
        }
    }

    /// Moves one character left.
    pub fn left(&mut self) {
        self.completion = None;
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Moves one character right.
    pub fn right(&mut self) {
        self.completion = None;
        self.cursor = (self.cursor + 1).min(self.buf.len());
    }

    /// Moves to the start of the word before the cursor.
    pub fn word_left(&mut self) {
        self.completion = None;
        while self.cursor > 0 && !self.buf.get(self.cursor - 1).copied().is_some_and(is_word) {
            self.cursor -= 1;
        }
        while self.cursor > 0 && self.buf.get(self.cursor - 1).copied().is_some_and(is_word) {
            self.cursor -= 1;
        }
    }

    /// Moves past the end of the word after the cursor.
    pub fn word_right(&mut self) {
        self.completion = None;
        let len = self.buf.len();
        while self.cursor < len && !self.buf.get(self.cursor).copied().is_some_and(is_word) {
            self.cursor += 1;
        }
        while self.cursor < len && self.buf.get(self.cursor).copied().is_some_and(is_word) {
            self.cursor += 1;
        }
    }

    /// Moves to the start.
    pub fn home(&mut self) {
        self.completion = None;
        self.cursor = 0;
    }

    /// Moves to the end.
    pub fn end(&mut self) {
        self.completion = None;
        self.cursor = self.buf.len();
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        self.completion = None;
        if self.cursor > 0 {
            self.cursor -= 1;
            self.buf.remove(self.cursor);
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        self.completion = None;
        if self.cursor < self.buf.len() {
            self.buf.remove(self.cursor);
        }
    }

    /// Deletes the word before the cursor (Ctrl-W).
    pub fn delete_word(&mut self) {
        let end = self.cursor;
        self.word_left();
        self.buf.drain(self.cursor..end);
        self.completion = None;
    }

    /// Empties the line.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        self.walk = None;
        self.completion = None;
    }

    /// True when nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the line, adding it to the history.
    pub fn take(&mut self) -> String {
        let line = self.text();
        self.clear();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() >= HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    fn set(&mut self, s: &str) {
        self.buf = s.chars().collect();
        self.cursor = self.buf.len();
        self.completion = None;
    }

    /// Takes the line as a secret: not remembered, and the buffer wiped.
    pub fn take_secret(&mut self) -> Zeroizing<String> {
        let secret = Zeroizing::new(self.buf.iter().collect::<String>());
        self.buf.zeroize();
        self.clear();
        secret
    }

    /// The line before in the history.
    pub fn up(&mut self) {
        let at = match self.walk {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.walk = Some(at);
        if let Some(line) = self.history.get(at).cloned() {
            self.set(&line);
        }
    }

    /// The line after in the history, then the draft.
    pub fn down(&mut self) {
        let Some(i) = self.walk else { return };
        if i + 1 < self.history.len() {
            self.walk = Some(i + 1);
            if let Some(line) = self.history.get(i + 1).cloned() {
                self.set(&line);
            }
        } else {
            self.walk = None;
            let draft = std::mem::take(&mut self.draft);
            self.set(&draft);
        }
    }

    /// Completes the word before the cursor from `candidates(word, first)`,
    /// where `first` says whether it is the line's first word; pressed again,
    /// shows the next candidate.
    pub fn complete(&mut self, candidates: impl FnOnce(&str, bool) -> Vec<String>) {
        if let Some((start, list, shown)) = self.completion.take() {
            if !list.is_empty() {
                let next = (shown + 1) % list.len();
                self.replace_word(start, list.get(next).map_or("", String::as_str));
                self.completion = Some((start, list, next));
                return;
            }
        }
        let mut start = self.cursor;
        while start > 0 && self.buf.get(start - 1).copied().is_some_and(is_word) {
            start -= 1;
        }
        let word: String = self.buf.get(start..self.cursor).unwrap_or_default().iter().collect();
        let first = self.buf.get(..start).unwrap_or_default().iter().all(|c| c.is_whitespace());
        let list = candidates(&word, first);
        if let Some(pick) = list.first().cloned() {
            self.replace_word(start, &pick);
            self.completion = Some((start, list, 0));
        }
    }

    /// Replaces from `start` to the cursor with `word` and a space.
    fn replace_word(&mut self, start: usize, word: &str) {
        let start = start.min(self.cursor);
        let tail: Vec<char> = self.buf.split_off(self.cursor);
        self.buf.truncate(start);
        self.buf.extend(word.chars().filter(|c| !crate::text::is_unsafe(*c)));
        self.buf.push(' ');
        self.cursor = self.buf.len();
        self.buf.extend(tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Editor {
        let mut e = Editor::default();
        s.chars().for_each(|c| e.insert(c));
        e
    }

    #[test]
    fn edits_by_character_and_word() {
        let mut e = typed("abc");
        e.left();
        e.left();
        e.insert('X');
        assert_eq!(e.text(), "aXbc");
        let mut e = typed("one two three");
        e.word_left();
        assert_eq!(e.cursor(), 8);
        e.word_left();
        e.word_left();
        e.word_left();
        assert_eq!(e.cursor(), 0);
        e.word_right();
        assert_eq!(e.cursor(), 3);
        e.end();
        e.delete_word();
        assert_eq!(e.text(), "one two ");
        e.home();
        e.delete();
        e.backspace();
        assert_eq!(e.text(), "ne two ");
        e.right();
        e.right();
        e.backspace();
        assert_eq!(e.text(), "n two ");
    }

    #[test]
    fn drops_control_and_format_characters_from_keys_and_paste() {
        let mut e = typed("a\u{1b}[D\u{7}\u{202e}b");
        e.paste("c\nd\u{1b}]52;c;x\u{7}");
        assert_eq!(e.text(), "a[Dbc d]52;c;x");
    }

    #[test]
    fn walks_the_history_and_keeps_the_draft() {
        let mut e = typed("first");
        assert_eq!(e.take(), "first");
        e.paste("second");
        e.take();
        e.paste("secret");
        assert_eq!(e.take_secret().as_str(), "secret");
        e.paste("draft");
        e.up();
        assert_eq!(e.text(), "second");
        e.up();
        e.up();
        assert_eq!(e.text(), "first");
        e.down();
        e.down();
        assert_eq!(e.text(), "draft");
    }

    #[test]
    fn completes_and_cycles() {
        let mut e = typed("/jo");
        e.complete(|w, first| {
            assert!(first);
            crate::command::NAMES.iter().filter(|n| n.starts_with(w)).map(|n| n.to_string()).collect()
        });
        assert_eq!(e.text(), "/join ");
        let mut e = typed("/msg @b hi");
        e.home();
        e.word_right();
        e.word_right();
        e.complete(|w, first| {
            assert!(!first);
            ["@bob", "@bea"].iter().filter(|n| n.starts_with(w)).map(|n| n.to_string()).collect()
        });
        assert_eq!(e.text(), "/msg @bob  hi");
        e.complete(|_, _| Vec::new());
        assert_eq!(e.text(), "/msg @bea  hi");
    }

    #[test]
    fn tab_after_moving_the_cursor_starts_a_new_completion_and_loses_no_text() {
        let names =
            |w: &str, _: bool| ["@bob", "@bea"].iter().filter(|n| n.starts_with(w)).map(|n| n.to_string()).collect();
        let mut e = typed("/msg @b hi there");
        e.home();
        e.word_right();
        e.word_right();
        e.complete(names);
        assert_eq!(e.text(), "/msg @bob  hi there");
        e.end();
        e.complete(names);
        assert_eq!(e.text(), "/msg @bob  hi there", "no candidate for `there`: nothing typed is replaced");
    }
}
