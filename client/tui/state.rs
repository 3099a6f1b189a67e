//! Full-screen front end: the state of the screen (windows, their lines and
//! unread counts, the input line, the status) and how key events change it.
//!
//! Invariant: keys are events, never text: only a printable character is ever
//! inserted into the input line (`editor`); a secret prompt's answer is never
//! shown, never kept in the history and handed on only as a secret; every
//! string kept for display may hold network text and is neutralised when
//! drawn (`draw`), never here.

use std::collections::{BTreeMap, BTreeSet};

use zeroize::Zeroizing;

use crate::editor::Editor;
pub use crate::keys::Action;

/// Lines one step of the mouse wheel scrolls.
const WHEEL: usize = 3;

/// Most lines kept per window (older ones are dropped).
const SCROLLBACK: usize = 2000;

/// What a window shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Notices, errors and replies not tied to a room or contact.
    Status,
    /// A room, by canonical name.
    Room(String),
    /// Direct messages with a user.
    Dm(String),
}

/// A loud mark on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Its signature or integrity check failed.
    Unverified,
    /// Shown before (a replay), not new.
    Replayed,
    /// The server lists another key for its sender.
    KeyChanged,
}

/// How a line is styled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// A message from someone.
    Message,
    /// A message of our own.
    Own,
    /// Information from the client.
    Info,
    /// An error or warning.
    Alert,
}

/// Where a message of our own is on its way (its mark changes in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the session; no answer yet.
    Sending,
    /// A room line the server stored (`ok`).
    Stored,
    /// A room line waiting to go out (`pending`).
    Waiting,
    /// A direct message the recipient received.
    Delivered,
    /// A direct message the server keeps until its recipient comes online.
    Queued,
    /// A direct message kept in the outbox until the connection is back.
    Outbox,
    /// Refused (the error is said beside it).
    Failed,
}

impl Delivery {
    /// The mark drawn after the text.
    pub fn label(self) -> &'static str {
        match self {
            Delivery::Sending => "(sending)",
            Delivery::Stored => "(sent)",
            Delivery::Waiting => "(waiting to be sent)",
            Delivery::Delivered => "(delivered)",
            Delivery::Queued => "(queued)",
            Delivery::Outbox => "(in the outbox)",
            Delivery::Failed => "(NOT SENT)",
        }
    }
}

/// One line of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unix milliseconds, when known.
    pub ts: Option<u64>,
    /// The sender, for a message.
    pub from: Option<String>,
    /// The text.
    pub text: String,
    /// Loud marks.
    pub marks: Vec<Mark>,
    /// How it is styled.
    pub tone: Tone,
    /// From the room's history (sent before we joined or looked).
    pub history: bool,
    /// A message of our own: where it is on its way.
    pub delivery: Option<Delivery>,
    /// A direct message of our own, or a room message: its id.
    pub id: Option<u64>,
}

/// A window: a room, a contact, or the status window.
pub struct Window {
    /// What it shows.
    pub kind: Kind,
    /// Its lines, oldest first.
    pub lines: Vec<Entry>,
    /// Lines added while it was not the current window.
    pub unread: u32,
    /// Lines scrolled back from the newest (0: following new lines).
    pub scroll: usize,
}

impl Window {
    /// Its name in the list and the status bar.
    pub fn label(&self) -> String {
        match &self.kind {
            Kind::Status => "status".to_string(),
            Kind::Room(r) => format!("#{r}"),
            Kind::Dm(u) => format!("@{u}"),
        }
    }
}

/// The connection, as the status bar shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Connected.
    Up,
    /// Lost; reconnecting.
    Reconnecting,
}

/// What the front end must do after an action.
pub enum Output {
    /// A line was entered.
    Line(String),
    /// A secret was entered at a prompt.
    Secret(Zeroizing<String>),
    /// The prompt was cancelled.
    Cancelled,
    /// Leave.
    Quit,
}

/// The whole screen's state.
pub struct Ui {
    /// The server, as given.
    pub server: String,
    /// The logged-in user.
    pub user: Option<String>,
    /// The connection.
    pub link: Link,
    /// Status window first, then rooms and contacts in the order they appeared.
    pub windows: Vec<Window>,
    /// The current window (an index into `windows`).
    pub current: usize,
    /// The input line.
    pub editor: Editor,
    /// A secret prompt: what is asked; the input is hidden meanwhile.
    pub prompt: Option<String>,
    /// Whether colours are used (`NO_COLOR` unset).
    pub color: bool,
    /// Local time offset from UTC, seconds (for `HH:MM`).
    pub utc_offset_s: i64,
    /// Today, in local days since 1970-01-01 (other days get a date line).
    pub today: i64,
    /// Users whose listed keys changed (their messages are marked).
    pub key_changed: BTreeSet<String>,
    /// Users seen (for `@` completion).
    pub users: BTreeSet<String>,
    /// Contacts and the fingerprint of the key pinned for each (hex).
    pub contacts: BTreeMap<String, String>,
    /// Each room's members as last listed, and whether each is online.
    pub members: BTreeMap<String, BTreeMap<String, bool>>,
    /// Height of the conversation area at the last draw (for PageUp/PageDown).
    pub page: usize,
    /// Transfers under way, by file id: name, bytes done, bytes in all (the status bar's progress).
    pub transfers: BTreeMap<u64, (String, u64, u64)>,
}

impl Ui {
    /// A screen with only the status window.
    pub fn new(server: &str, color: bool, utc_offset_s: i64) -> Ui {
        Ui {
            server: server.to_string(),
            user: None,
            link: Link::Up,
            windows: vec![Window { kind: Kind::Status, lines: Vec::new(), unread: 0, scroll: 0 }],
            transfers: BTreeMap::new(),
            current: 0,
            editor: Editor::default(),
            prompt: None,
            color,
            utc_offset_s,
            today: 0,
            key_changed: BTreeSet::new(),
            users: BTreeSet::new(),
            contacts: BTreeMap::new(),
            members: BTreeMap::new(),
            page: 10,
        }
    }

    /// The index of the window of `kind`, made when there is none.
    pub fn window(&mut self, kind: Kind) -> usize {
        if let Some(i) = self.windows.iter().position(|w| w.kind == kind) {
            return i;
        }
        self.windows.push(Window { kind, lines: Vec::new(), unread: 0, scroll: 0 });
        self.windows.len() - 1
    }

    /// The current window.
    pub fn current(&self) -> &Window {
        // NOTE(unwrap): `current` is only set to an index of `windows`, which
        // starts with the status window and never shrinks.
        self.windows.get(self.current).or(self.windows.first()).expect("the status window is always there")
    }

    /// Adds a line to window `i`; counts it unread when that window is not current.
    pub fn push(&mut self, i: usize, entry: Entry) {
        if let Some(from) = &entry.from {
            if !matches!(entry.tone, Tone::Own) {
                self.users.insert(from.clone());
            }
        }
        let current = self.current;
        let Some(w) = self.windows.get_mut(i) else { return };
        if w.lines.len() >= SCROLLBACK {
            w.lines.remove(0);
        }
        let own = matches!(entry.tone, Tone::Own);
        w.lines.push(entry);
        if i != current && !own {
            w.unread = w.unread.saturating_add(1);
        } else if w.scroll > 0 {
            // Keep the view still while reading back (at most back to the oldest line kept).
            w.scroll = (w.scroll + 1).min(w.lines.len().saturating_sub(1));
        }
    }

    /// A line of the client's own in window `i`.
    pub fn info(&mut self, i: usize, text: impl Into<String>) {
        self.push(
            i,
            Entry {
                ts: None,
                from: None,
                text: text.into(),
                marks: Vec::new(),
                tone: Tone::Info,
                history: false,
                delivery: None,
                id: None,
            },
        );
    }

    /// An error or warning in window `i`.
    pub fn alert(&mut self, i: usize, text: impl Into<String>) {
        self.push(
            i,
            Entry {
                ts: None,
                from: None,
                text: text.into(),
                marks: Vec::new(),
                tone: Tone::Alert,
                history: false,
                delivery: None,
                id: None,
            },
        );
    }

    /// A line of the client's own in the current window.
    pub fn say(&mut self, text: impl Into<String>) {
        self.info(self.current, text);
    }

    /// An error in the current window.
    pub fn warn(&mut self, text: impl Into<String>) {
        self.alert(self.current, text);
    }

    /// Makes window `i` current, clearing its unread count.
    pub fn switch(&mut self, i: usize) {
        if let Some(w) = self.windows.get_mut(i) {
            w.unread = 0;
            self.current = i;
        }
    }

    /// Marks our direct message `id` in `user`'s window; false when it is not shown there.
    pub fn mark_dm(&mut self, user: &str, id: u64, delivery: Delivery) -> bool {
        let kind = Kind::Dm(user.to_string());
        let Some(w) = self.windows.iter_mut().find(|w| w.kind == kind) else { return false };
        let Some(e) = w.lines.iter_mut().rev().find(|e| e.tone == Tone::Own && e.id == Some(id)) else { return false };
        // Delivered is final: a late `queued` does not undo it.
        if e.delivery != Some(Delivery::Delivered) {
            e.delivery = Some(delivery);
        }
        true
    }

    /// Marks the oldest of our lines in `room` that is in one of the states `from`; false when there is none.
    pub fn mark_room(&mut self, room: &str, from: &[Delivery], delivery: Delivery) -> bool {
        let kind = Kind::Room(room.to_string());
        let Some(w) = self.windows.iter_mut().find(|w| w.kind == kind) else { return false };
        let found = w.lines.iter_mut().find(|e| e.tone == Tone::Own && e.delivery.is_some_and(|d| from.contains(&d)));
        match found {
            Some(e) => {
                e.delivery = Some(delivery);
                true
            }
            None => false,
        }
    }

    /// Our oldest room line still sending or waiting in `room` is stored, as message `id`.
    pub fn mark_said(&mut self, room: &str, id: Option<u64>) {
        let kind = Kind::Room(room.to_string());
        let Some(w) = self.windows.iter_mut().find(|w| w.kind == kind) else { return };
        let waiting = [Delivery::Sending, Delivery::Waiting];
        if let Some(e) =
            w.lines.iter_mut().find(|e| e.tone == Tone::Own && e.delivery.is_some_and(|d| waiting.contains(&d)))
        {
            e.delivery = Some(Delivery::Stored);
            e.id = id;
        }
    }

    /// Marks room message `id` of `room` deleted where it is shown; whether it was.
    pub fn mark_deleted(&mut self, room: &str, id: u64) -> bool {
        let kind = Kind::Room(room.to_string());
        let Some(w) = self.windows.iter_mut().find(|w| w.kind == kind) else { return false };
        let Some(e) = w.lines.iter_mut().find(|e| e.id == Some(id) && matches!(e.tone, Tone::Message | Tone::Own))
        else {
            return false;
        };
        e.text = "(deleted)".to_string();
        true
    }

    /// Marks the oldest line of ours still sending, in a room (`room`) or a DM window, as refused.
    pub fn mark_failed(&mut self, room: bool) {
        let lines = self
            .windows
            .iter_mut()
            .filter(|w| matches!((&w.kind, room), (Kind::Room(_), true) | (Kind::Dm(_), false)))
            .flat_map(|w| w.lines.iter_mut());
        if let Some(e) = lines.filter(|e| e.delivery == Some(Delivery::Sending)).min_by_key(|e| e.ts) {
            e.delivery = Some(Delivery::Failed);
        }
    }

    /// True when `user` is listed online in a room (from `joined`, `who` and `member_joined`).
    pub fn online(&self, user: &str) -> bool {
        self.members.values().any(|m| m.get(user).copied().unwrap_or(false))
    }

    /// The verification state of the current window, for the status bar: a
    /// contact's trust (its pinned fingerprint, or KEY CHANGED), or whether
    /// any member of a room has a changed key.
    pub fn verification(&self) -> Option<String> {
        match &self.current().kind {
            Kind::Status => None,
            Kind::Dm(user) if self.key_changed.contains(user) => Some("KEY CHANGED: /fingerprint, then /trust".into()),
            Kind::Dm(user) => Some(match self.contacts.get(user) {
                Some(fp) => format!("trusted key {}", fp.get(..8).unwrap_or(fp)),
                None => "not a contact".to_string(),
            }),
            Kind::Room(room) => {
                let changed: Vec<&str> = self
                    .members
                    .get(room)
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .filter(|n| self.key_changed.contains(*n))
                    .map(String::as_str)
                    .collect();
                Some(if changed.is_empty() {
                    "member keys as pinned".to_string()
                } else {
                    format!("KEY CHANGED: {}", changed.join(", "))
                })
            }
        }
    }

    /// Sum of the unread counts (for the terminal title).
    pub fn unread(&self) -> u32 {
        self.windows.iter().map(|w| w.unread).fold(0, u32::saturating_add)
    }

    /// Applies an action; what the front end must do next, if anything.
    pub fn update(&mut self, action: Action, candidates: impl FnOnce(&str, bool) -> Vec<String>) -> Option<Output> {
        let e = &mut self.editor;
        match action {
            _ if e.edit(&action) => {}
            // A secret is one line; a message keeps the line breaks of a paste.
            Action::Paste(s) if self.prompt.is_some() => e.paste(&s),
            Action::Paste(s) => e.paste_lines(&s),
            Action::Up if self.prompt.is_none() => e.up(),
            Action::Down if self.prompt.is_none() => e.down(),
            Action::Up | Action::Down => {}
            Action::Complete if self.prompt.is_none() => e.complete(candidates),
            Action::Complete => {}
            Action::Submit => {
                if self.prompt.take().is_some() {
                    return Some(Output::Secret(e.take_secret()));
                }
                let line = e.take();
                return Some(Output::Line(line));
            }
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
            Action::PageUp => {
                let page = self.page.max(2) - 1;
                let w = self.windows.get_mut(self.current)?;
                w.scroll = (w.scroll + page).min(w.lines.len().saturating_sub(1));
            }
            Action::PageDown => {
                let page = self.page.max(2) - 1;
                let w = self.windows.get_mut(self.current)?;
                w.scroll = w.scroll.saturating_sub(page);
            }
            Action::ScrollUp => {
                let w = self.windows.get_mut(self.current)?;
                w.scroll = (w.scroll + WHEEL).min(w.lines.len().saturating_sub(1));
            }
            Action::ScrollDown => {
                let w = self.windows.get_mut(self.current)?;
                w.scroll = w.scroll.saturating_sub(WHEEL);
            }
            Action::Window(i) => self.switch(i),
            Action::NextWindow => self.switch((self.current + 1) % self.windows.len().max(1)),
            Action::PrevWindow => {
                self.switch((self.current + self.windows.len().max(1) - 1) % self.windows.len().max(1))
            }
            Action::Interrupt if self.prompt.is_some() => {
                self.prompt = None;
                e.take_secret();
                return Some(Output::Cancelled);
            }
            Action::Interrupt => return Some(Output::Quit),
            Action::EndOfInput if e.is_empty() => {
                if self.prompt.take().is_some() {
                    return Some(Output::Cancelled);
                }
                return Some(Output::Quit);
            }
            Action::EndOfInput => e.delete(),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_room_message_is_marked_where_it_is_shown() {
        let mut ui = Ui::new("s", true, 0);
        let lobby = ui.window(Kind::Room("lobby".into()));
        let line = |text: &str, tone, id, delivery| Entry {
            ts: Some(1),
            from: Some("bob".into()),
            text: text.into(),
            marks: Vec::new(),
            tone,
            history: false,
            delivery,
            id,
        };
        ui.push(lobby, line("keep", Tone::Message, Some(1), None));
        ui.push(lobby, line("drop", Tone::Message, Some(2), None));
        ui.push(lobby, line("mine", Tone::Own, None, Some(Delivery::Sending)));
        ui.mark_said("lobby", Some(3));
        assert!(ui.mark_deleted("lobby", 2) && ui.mark_deleted("lobby", 3));
        assert!(!ui.mark_deleted("lobby", 9) && !ui.mark_deleted("other", 1));
        let texts: Vec<&str> = ui.windows[lobby].lines.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["keep", "(deleted)", "(deleted)"]);
        assert_eq!(ui.windows[lobby].lines[2].delivery, Some(Delivery::Stored));
    }

    #[test]
    fn unread_counts_rise_elsewhere_and_clear_on_switch() {
        let mut ui = Ui::new("s", true, 0);
        let lobby = ui.window(Kind::Room("lobby".into()));
        ui.info(lobby, "one");
        ui.info(lobby, "two");
        ui.info(0, "here");
        assert_eq!((ui.windows[lobby].unread, ui.windows[0].unread, ui.unread()), (2, 0, 2));
        ui.update(Action::NextWindow, |_, _| Vec::new());
        assert_eq!((ui.current, ui.unread()), (lobby, 0));
        ui.update(Action::Window(0), |_, _| Vec::new());
        assert_eq!(ui.current, 0);
        ui.update(Action::Window(7), |_, _| Vec::new());
        assert_eq!(ui.current, 0, "no such window: unchanged");
    }

    #[test]
    fn secrets_are_not_kept_in_the_history() {
        let mut ui = Ui::new("s", true, 0);
        ui.prompt = Some("Password: ".into());
        ui.update(Action::Paste("hunter2hunter2".into()), |_, _| Vec::new());
        assert!(
            matches!(ui.update(Action::Submit, |_, _| Vec::new()), Some(Output::Secret(s)) if s.as_str() == "hunter2hunter2")
        );
        ui.update(Action::Up, |_, _| Vec::new());
        assert_eq!(ui.editor.text(), "");
        ui.prompt = Some("Password: ".into());
        assert!(matches!(ui.update(Action::Interrupt, |_, _| Vec::new()), Some(Output::Cancelled)));
        assert!(matches!(ui.update(Action::Interrupt, |_, _| Vec::new()), Some(Output::Quit)));
    }

    #[test]
    fn reading_back_while_lines_arrive_at_the_scrollback_limit_keeps_the_scroll_within_the_lines() {
        let mut ui = Ui::new("s", true, 0);
        for i in 0..SCROLLBACK {
            ui.info(0, format!("line {i}"));
        }
        ui.update(Action::ScrollUp, |_, _| Vec::new());
        for i in 0..3 * SCROLLBACK {
            ui.info(0, format!("more {i}"));
        }
        assert!(ui.windows[0].scroll < ui.windows[0].lines.len(), "scroll {}", ui.windows[0].scroll);
        ui.page = 10;
        for _ in 0..SCROLLBACK / 9 + 1 {
            ui.update(Action::PageDown, |_, _| Vec::new());
        }
        assert_eq!(ui.windows[0].scroll, 0, "PageDown through the kept lines comes back to the newest");
    }
}
