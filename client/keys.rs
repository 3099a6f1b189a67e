//! Front-end layer: terminal key events as editing and window actions,
//! shared by the full-screen client and the line editor of plain mode.
//!
//! Invariant: a key is an event, never text: only a plain printable
//! character becomes `Insert`; every other key is an action or ignored, so
//! no escape sequence a key sends is ever taken as typed text.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

/// What a key asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A printable character.
    Insert(char),
    /// Pasted text.
    Paste(String),
    Left,
    Right,
    WordLeft,
    WordRight,
    Home,
    End,
    Backspace,
    Delete,
    DeleteWord,
    Up,
    Down,
    Complete,
    Submit,
    PageUp,
    PageDown,
    /// Mouse wheel up: scroll the conversation back a few lines.
    ScrollUp,
    /// Mouse wheel down: scroll it forward.
    ScrollDown,
    /// Window by position (0-based).
    Window(usize),
    NextWindow,
    PrevWindow,
    /// Ctrl-C: cancel a prompt, else quit.
    Interrupt,
    /// Ctrl-D: quit on an empty line, else delete.
    EndOfInput,
}

/// The action of a terminal event; `None` for what is ignored (key
/// releases, unbound keys, mouse clicks and moves, focus; a resize is
/// handled by the next draw; the wheel scrolls).
pub fn action(ev: Event) -> Option<Action> {
    match ev {
        Event::Key(key) => key_action(key),
        Event::Paste(s) => Some(Action::Paste(s)),
        Event::Mouse(m) if m.kind == MouseEventKind::ScrollUp => Some(Action::ScrollUp),
        Event::Mouse(m) if m.kind == MouseEventKind::ScrollDown => Some(Action::ScrollDown),
        _ => None,
    }
}

fn key_action(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Action::Interrupt,
        KeyCode::Char('d') if ctrl => Action::EndOfInput,
        KeyCode::Char('n') if ctrl => Action::NextWindow,
        KeyCode::Char('p') if ctrl => Action::PrevWindow,
        KeyCode::Char('a') if ctrl => Action::Home,
        KeyCode::Char('e') if ctrl => Action::End,
        KeyCode::Char('b') if ctrl => Action::Left,
        KeyCode::Char('f') if ctrl => Action::Right,
        KeyCode::Char('w') if ctrl => Action::DeleteWord,
        KeyCode::Char('b') if alt => Action::WordLeft,
        KeyCode::Char('f') if alt => Action::WordRight,
        KeyCode::Char(c @ '1'..='9') if alt => Action::Window(usize::from(c as u8 - b'1')),
        KeyCode::Char(_) if ctrl || alt => return None,
        KeyCode::Char(c) => Action::Insert(c),
        KeyCode::Left if ctrl || alt => Action::WordLeft,
        KeyCode::Right if ctrl || alt => Action::WordRight,
        KeyCode::Left => Action::Left,
        KeyCode::Right => Action::Right,
        KeyCode::Home => Action::Home,
        KeyCode::End => Action::End,
        KeyCode::Backspace => Action::Backspace,
        KeyCode::Delete => Action::Delete,
        KeyCode::Up => Action::Up,
        KeyCode::Down => Action::Down,
        KeyCode::Tab => Action::Complete,
        KeyCode::Enter => Action::Submit,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::MouseEvent;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn keys_become_actions_never_text() {
        let none = KeyModifiers::NONE;
        assert_eq!(action(key(KeyCode::Left, none)), Some(Action::Left));
        assert_eq!(action(key(KeyCode::Char('x'), none)), Some(Action::Insert('x')));
        assert_eq!(action(key(KeyCode::Char('3'), KeyModifiers::ALT)), Some(Action::Window(2)));
        assert_eq!(action(key(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Action::Interrupt));
        assert_eq!(action(key(KeyCode::Char('z'), KeyModifiers::CONTROL)), None);
        assert_eq!(action(key(KeyCode::F(5), none)), None);
        assert_eq!(action(key(KeyCode::Esc, none)), None);
        let mouse = |kind| Event::Mouse(MouseEvent { kind, column: 1, row: 1, modifiers: none });
        assert_eq!(action(mouse(MouseEventKind::ScrollUp)), Some(Action::ScrollUp));
        assert_eq!(action(mouse(MouseEventKind::ScrollDown)), Some(Action::ScrollDown));
        assert_eq!(action(mouse(MouseEventKind::Moved)), None);
    }
}
