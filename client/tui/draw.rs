//! Full-screen front end: the screen as a pure function of the state
//! (`draw(&Ui, &mut Frame)`), so ratatui's `TestBackend` can check it whole.
//!
//! Invariant: every string that may come from the network (names, room
//! names, texts, reasons) is neutralised (`text::neutralise`) before it is
//! put on the screen; the marks of an unverified, replayed or key-changed
//! message are always drawn; with colours off no cell gets a colour.

use ratatui::layout::{Constraint, Direction, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use super::state::{Delivery, Entry, Kind, Link, Mark, Tone, Ui, Window};
use crate::text::neutralise;

/// Width of the side list of windows.
const SIDE: u16 = 18;
/// Width of the time gutter, `HH:MM `.
const GUTTER: usize = 6;

/// `HH:MM` of a Unix time in milliseconds, shifted by `offset_s`.
pub fn clock(ts_ms: u64, offset_s: i64) -> String {
    let secs = i64::try_from(ts_ms / 1000).unwrap_or(i64::MAX).saturating_add(offset_s);
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}", day / 3600, day / 60 % 60)
}

struct Styles {
    color: bool,
}

impl Styles {
    fn pick(&self, colored: Style, plain: Style) -> Style {
        if self.color {
            colored
        } else {
            plain
        }
    }
    fn mark(&self) -> Style {
        self.pick(
            Style::default().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    }
    fn time(&self) -> Style {
        self.pick(Style::default().fg(Color::DarkGray), Style::default())
    }
    fn sender(&self, own: bool) -> Style {
        let c = if own { Color::Green } else { Color::Cyan };
        self.pick(Style::default().fg(c).add_modifier(Modifier::BOLD), Style::default().add_modifier(Modifier::BOLD))
    }
    fn info(&self) -> Style {
        self.pick(Style::default().fg(Color::Yellow), Style::default())
    }
    fn alert(&self) -> Style {
        self.pick(
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD),
        )
    }
    fn bar(&self) -> Style {
        self.pick(Style::default().fg(Color::White).bg(Color::Blue), Style::default().add_modifier(Modifier::REVERSED))
    }
    fn selected(&self) -> Style {
        self.pick(Style::default().fg(Color::Black).bg(Color::Cyan), Style::default().add_modifier(Modifier::REVERSED))
    }
    fn online(&self) -> Style {
        self.pick(Style::default().fg(Color::Green), Style::default())
    }
    fn unread(&self) -> Style {
        self.pick(
            Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Style::default().add_modifier(Modifier::BOLD),
        )
    }
}

/// Draws the whole screen.
pub fn draw(ui: &Ui, frame: &mut Frame) {
    let styles = Styles { color: ui.color };
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Min(1), Constraint::Length(1), Constraint::Length(1)])
        .split(frame.area());
    let (body, bar, input) = (rows[0], rows[1], rows[2]);
    let side = if body.width >= 50 { SIDE } else { 0 };
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(side), Constraint::Min(1)])
        .split(body);
    draw_side(ui, &styles, frame, cols[0]);
    draw_conversation(ui.current(), ui, &styles, frame, cols[1]);
    draw_bar(ui, &styles, frame, bar);
    draw_input(ui, frame, input);
}

fn draw_side(ui: &Ui, styles: &Styles, frame: &mut Frame, area: Rect) {
    if area.width == 0 {
        return;
    }
    let width = usize::from(area.width).saturating_sub(1);
    let mut lines: Vec<Line> = ui
        .windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let count = if w.unread > 0 { format!(" {}", w.unread) } else { String::new() };
            // A contact known to be online is marked `*`.
            let on = matches!(&w.kind, Kind::Dm(u) if ui.online(u));
            let label = format!("{} {}{}", i + 1, neutralise(&w.label()), if on { "*" } else { "" });
            let name = cut(&label, width.saturating_sub(count.len()));
            let style = if i == ui.current { styles.selected() } else { Style::default() };
            Line::from(vec![Span::styled(name, style), Span::styled(count, styles.unread())])
        })
        .collect();
    // The current room's members, those online marked `*`.
    if let Kind::Room(room) = &ui.current().kind {
        if let Some(members) = ui.members.get(room) {
            lines.push(Line::from(""));
            let online = members.values().filter(|o| **o).count();
            lines.push(Line::styled(cut(&format!("members, {online} on"), width), styles.time()));
            for (name, on) in members {
                let mark = if *on { "*" } else { " " };
                let style = if *on { styles.online() } else { Style::default() };
                lines.push(Line::styled(cut(&format!("{mark}{}", neutralise(name)), width), style));
            }
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// Cuts `s` to at most `width` columns.
fn cut(s: &str, width: usize) -> String {
    let mut used = 0;
    s.chars()
        .take_while(|c| {
            used += c.width().unwrap_or(0);
            used <= width
        })
        .collect()
}

/// The spans of one entry, before wrapping.
fn spans(e: &Entry, offset_s: i64, styles: &Styles) -> Vec<(String, Style)> {
    let time = e.ts.map_or_else(|| " ".repeat(GUTTER - 1), |ts| clock(ts, offset_s));
    let mut out = vec![(format!("{time} "), styles.time())];
    for m in &e.marks {
        let text = match m {
            Mark::Unverified => "[UNVERIFIED]",
            Mark::Replayed => "[REPLAYED]",
            Mark::KeyChanged => "[KEY CHANGED]",
        };
        out.push((text.to_string(), styles.mark()));
        out.push((" ".to_string(), Style::default()));
    }
    if e.history {
        out.push(("(history) ".to_string(), styles.time()));
    }
    match e.tone {
        Tone::Message | Tone::Own => {
            let from = e.from.as_deref().unwrap_or("?");
            out.push((format!("{}:", neutralise(from)), styles.sender(e.tone == Tone::Own)));
            // Each line of the text neutralised on its own; a line break starts a new row.
            for (i, line) in e.text.split('\n').enumerate() {
                if i > 0 {
                    out.push((BREAK.to_string(), Style::default()));
                }
                let lead = if i == 0 { " " } else { "" };
                out.push((format!("{lead}{}", neutralise(line)), Style::default()));
            }
            if let Some(d) = e.delivery {
                let style = if d == Delivery::Failed { styles.alert() } else { styles.time() };
                out.push((format!(" {}", d.label()), style));
            }
        }
        Tone::Info => out.push((format!("-- {}", neutralise(&e.text)), styles.info())),
        Tone::Alert => out.push((format!("!! {}", neutralise(&e.text)), styles.alert())),
    }
    out
}

/// A span of exactly this ends the row (a line break in a message; a
/// neutralised text never holds a raw line break).
const BREAK: &str = "\n";

/// Wraps spans to `width` columns; continuation rows are indented past the time gutter.
fn wrap(spans: Vec<(String, Style)>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(GUTTER + 4);
    let mut rows = Vec::new();
    let mut row: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for (text, style) in spans {
        if text == BREAK {
            rows.push(Line::from(std::mem::take(&mut row)));
            row.push(Span::raw(" ".repeat(GUTTER)));
            used = GUTTER;
            continue;
        }
        let mut piece = String::new();
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width {
                row.push(Span::styled(std::mem::take(&mut piece), style));
                rows.push(Line::from(std::mem::take(&mut row)));
                row.push(Span::raw(" ".repeat(GUTTER)));
                used = GUTTER;
            }
            piece.push(c);
            used += w;
        }
        row.push(Span::styled(piece, style));
    }
    rows.push(Line::from(row));
    rows
}

/// The local day of a Unix time in milliseconds: days since 1970-01-01.
pub fn day(ts_ms: u64, offset_s: i64) -> i64 {
    i64::try_from(ts_ms / 1000).unwrap_or(i64::MAX).saturating_add(offset_s).div_euclid(86_400)
}

/// `YYYY-MM-DD` of a day since 1970-01-01 (the proleptic Gregorian calendar).
pub fn date(days: i64) -> String {
    // H. Hinnant's civil_from_days.
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe.saturating_add(era.saturating_mul(400)) + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn draw_conversation(w: &Window, ui: &Ui, styles: &Styles, frame: &mut Frame, area: Rect) {
    let height = usize::from(area.height);
    let width = usize::from(area.width);
    let offset_s = ui.utc_offset_s;
    // Only the newest entries that can show are wrapped (each takes a row at least).
    let want = height + w.scroll;
    let first = w.lines.len().saturating_sub(want);
    let (before, shown) = w.lines.split_at(first);
    let mut last_day = before.iter().rev().find_map(|e| e.ts).map(|ts| day(ts, offset_s));
    let mut rows: Vec<Line> = Vec::new();
    for e in shown {
        if let Some(d) = e.ts.map(|ts| day(ts, offset_s)) {
            // A separator where the day changes, and before the first line of another day than today.
            if last_day.map_or(d != ui.today, |last| last != d) {
                rows.push(Line::styled(format!("----- {} -----", date(d)), styles.time()));
            }
            last_day = Some(d);
        }
        rows.extend(wrap(spans(e, offset_s, styles), width));
    }
    let scroll = w.scroll.min(rows.len().saturating_sub(height));
    let end = rows.len().saturating_sub(scroll);
    let start = end.saturating_sub(height);
    let shown: Vec<Line> = rows.get(start..end).map(<[Line]>::to_vec).unwrap_or_default();
    // The newest line sits at the bottom, as in every chat client.
    let used = u16::try_from(shown.len()).unwrap_or(area.height).min(area.height);
    let area = Rect { y: area.y + (area.height - used), height: used, ..area };
    frame.render_widget(Paragraph::new(shown), area);
}

fn draw_bar(ui: &Ui, styles: &Styles, frame: &mut Frame, area: Rect) {
    let user = ui.user.as_deref().map_or_else(|| "not logged in".to_string(), |u| neutralise(u).into_owned());
    let link = match ui.link {
        Link::Up => "connected",
        Link::Reconnecting => "RECONNECTING",
    };
    let mut text = format!(" {} | {} | {} | {}", neutralise(&ui.server), user, link, neutralise(&ui.current().label()));
    if let Some(v) = ui.verification() {
        text.push_str(&format!(" | {}", neutralise(&v)));
    }
    if let Some((name, done, total)) = ui.transfers.values().next() {
        let more = ui.transfers.len() - 1;
        text.push_str(&format!(" | {} {}", neutralise(name), crate::transfer::bar(*done, *total)));
        if more > 0 {
            text.push_str(&format!(" (+{more} more: /files)"));
        }
    }
    if ui.current().scroll > 0 {
        text.push_str(" | scrolled back: PgDn");
    }
    let text = cut(&text, usize::from(area.width));
    frame.render_widget(Paragraph::new(Line::from(text)).style(styles.bar()), area);
}

fn draw_input(ui: &Ui, frame: &mut Frame, area: Rect) {
    let width = usize::from(area.width);
    if let Some(prompt) = &ui.prompt {
        // A secret: nothing of it is shown, not even its length.
        let prompt = cut(&format!("{prompt}(hidden) "), width);
        let x = u16::try_from(prompt.chars().count()).unwrap_or(0).min(area.width.saturating_sub(1));
        frame.render_widget(Paragraph::new(prompt), area);
        frame.set_cursor_position(Position::new(area.x + x, area.y));
        return;
    }
    let prefix = "> ";
    // A line break of a paste shows as ⏎ on the one input row.
    let chars: Vec<char> = ui.editor.text().chars().map(|c| if c == '\n' { '⏎' } else { c }).collect();
    let cursor = ui.editor.cursor().min(chars.len());
    let room = width.saturating_sub(prefix.len() + 1).max(1);
    // Scrolls horizontally so the cursor stays visible.
    let start = cursor.saturating_sub(room);
    let shown: String = chars.get(start..).unwrap_or_default().iter().collect();
    let shown = cut(&shown, room);
    let before: usize = chars.get(start..cursor).unwrap_or_default().iter().map(|c| c.width().unwrap_or(0)).sum();
    frame.render_widget(Paragraph::new(format!("{prefix}{shown}")), area);
    let x = u16::try_from(prefix.len() + before).unwrap_or(u16::MAX).min(area.width.saturating_sub(1));
    frame.set_cursor_position(Position::new(area.x + x, area.y));
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;

    fn message(from: &str, text: &str, ts: u64, marks: Vec<Mark>) -> Entry {
        Entry {
            ts: Some(ts),
            from: Some(from.into()),
            text: text.into(),
            marks,
            tone: Tone::Message,
            history: false,
            delivery: None,
            id: None,
        }
    }

    fn screen(ui: &Ui, w: u16, h: u16) -> (Vec<String>, ratatui::buffer::Buffer) {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| draw(ui, f)).unwrap();
        let buf = term.backend().buffer().clone();
        let rows =
            (0..h).map(|y| (0..w).map(|x| buf.cell((x, y)).map_or(" ", |c| c.symbol())).collect::<String>()).collect();
        (rows, buf)
    }

    fn sample(color: bool) -> Ui {
        let mut ui = Ui::new("127.0.0.1:7777", color, 0);
        ui.user = Some("alice".into());
        let lobby = ui.window(Kind::Room("lobby".into()));
        let dm = ui.window(Kind::Dm("bob".into()));
        ui.switch(lobby);
        // 2023-11-14 22:13:20 UTC
        ui.push(lobby, message("bob", "hello", 1_700_000_000_000, vec![]));
        ui.push(lobby, message("eve", "forged", 1_700_000_060_000, vec![Mark::Unverified]));
        ui.push(dm, message("bob", "psst", 1_700_000_120_000, vec![]));
        ui.push(dm, message("bob", "again", 1_700_000_120_000, vec![]));
        ui.editor.paste("typing");
        ui
    }

    #[test]
    fn draws_the_layout_at_80x24() {
        let (rows, _) = screen(&sample(true), 80, 24);
        let text = rows.join("\n");
        assert!(rows[0].starts_with("1 status"), "{text}");
        assert!(rows[1].starts_with("2 #lobby "), "current window listed: {text}");
        assert!(rows[2].starts_with("3 @bob 2"), "unread count of the DM window: {text}");
        assert!(rows[20].ends_with(&format!("22:13 bob: hello{}", " ".repeat(46))), "time, sender, text: {text}");
        assert!(rows[21].contains("22:14 [UNVERIFIED] eve: forged"), "loud mark: {text}");
        assert!(rows[22].starts_with(" 127.0.0.1:7777 | alice | connected | #lobby"), "status bar: {text}");
        assert_eq!(rows[23].trim_end(), "> typing");
    }

    #[test]
    fn neutralises_network_text_and_wraps_long_lines() {
        let mut ui = Ui::new("s", true, 3600);
        ui.push(0, message("m\u{1b}[31mallory", "a\u{202e}b \u{1b}]52;c;eA==\u{7}", 0, vec![Mark::Replayed]));
        ui.push(0, message("bob", &"x".repeat(100), 0, vec![Mark::KeyChanged]));
        let (rows, buf) = screen(&ui, 80, 24);
        let text = rows.join("\n");
        assert!(buf.content().iter().all(|c| !c.symbol().chars().any(crate::text::is_unsafe)), "{text}");
        assert!(text.contains("01:00 [REPLAYED] m\\u{001b}[31mallory: a\\u{202e}b \\u{001b}]52;c"), "{text}");
        assert!(text.contains("eA==\\u{0007}"), "{text}");
        let at = rows.iter().position(|r| r.contains("01:00 [KEY CHANGED] bob: xxx")).expect("the key-changed mark");
        assert!(rows[at + 1].starts_with(&format!("{}xxx", " ".repeat(usize::from(SIDE) + GUTTER))), "{text}");
    }

    #[test]
    fn no_color_draws_no_colour() {
        let (_, buf) = screen(&sample(false), 80, 24);
        assert!(buf.content().iter().all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
        let (_, buf) = screen(&sample(true), 80, 24);
        assert!(buf.content().iter().any(|c| c.bg == Color::Red), "the mark is red with colours");
    }

    #[test]
    fn own_messages_show_as_sending_then_their_mark_changes_in_place() {
        let mut ui = Ui::new("s", false, 0);
        ui.user = Some("alice".into());
        let dm = ui.window(Kind::Dm("bob".into()));
        let lobby = ui.window(Kind::Room("lobby".into()));
        ui.switch(dm);
        let own = |text: &str, id| Entry {
            ts: Some(0),
            from: Some("alice".into()),
            text: text.into(),
            marks: vec![],
            tone: Tone::Own,
            history: false,
            delivery: Some(Delivery::Sending),
            id,
        };
        ui.push(dm, own("one", Some(7)));
        ui.push(dm, own("two", Some(8)));
        let row = |ui: &Ui, what: &str| screen(ui, 80, 24).0.into_iter().find(|r| r.contains(what)).unwrap();
        assert!(row(&ui, "alice: one").contains("alice: one (sending)"));
        assert!(ui.mark_dm("bob", 7, Delivery::Queued));
        assert!(ui.mark_dm("bob", 8, Delivery::Delivered));
        assert!(!ui.mark_dm("bob", 9, Delivery::Delivered), "not shown: not marked");
        assert!(row(&ui, "alice: one").contains("alice: one (queued)"));
        assert!(ui.mark_dm("bob", 7, Delivery::Delivered));
        assert!(row(&ui, "alice: one").contains("alice: one (delivered)"));
        assert!(ui.mark_dm("bob", 8, Delivery::Queued), "found");
        assert!(row(&ui, "alice: two").contains("(delivered)"), "delivered is final");
        assert_eq!(ui.windows[dm].lines.len(), 2, "marked in place, no new line");
        ui.push(lobby, own("hi", None));
        ui.push(lobby, own("again", None));
        ui.switch(lobby);
        assert!(ui.mark_room("lobby", &[Delivery::Sending], Delivery::Stored));
        assert!(ui.mark_room("lobby", &[Delivery::Sending], Delivery::Waiting));
        assert!(row(&ui, "alice: hi").contains("alice: hi (sent)"));
        assert!(row(&ui, "alice: again").contains("alice: again (waiting to be sent)"));
        assert!(ui.mark_room("lobby", &[Delivery::Sending, Delivery::Waiting], Delivery::Stored));
        assert!(row(&ui, "alice: again").contains("alice: again (sent)"));
        assert!(!ui.mark_room("lobby", &[Delivery::Sending], Delivery::Stored));
    }

    #[test]
    fn the_status_bar_shows_the_verification_state_of_the_window() {
        let bar = |ui: &Ui| screen(ui, 120, 24).0[22].clone();
        let mut ui = sample(true);
        let dm = 2;
        ui.members.insert("lobby".into(), [("bob".to_string(), true), ("eve".to_string(), false)].into());
        assert!(bar(&ui).contains("| #lobby | member keys as pinned"), "{}", bar(&ui));
        ui.key_changed.insert("eve".into());
        assert!(bar(&ui).contains("| #lobby | KEY CHANGED: eve"), "{}", bar(&ui));
        ui.switch(dm);
        assert!(bar(&ui).contains("| @bob | not a contact"), "{}", bar(&ui));
        ui.contacts.insert("bob".into(), "1a2b3c4d5e6f".into());
        assert!(bar(&ui).contains("| @bob | trusted key 1a2b3c4d"), "{}", bar(&ui));
        ui.key_changed.insert("bob".into());
        assert!(bar(&ui).contains("| @bob | KEY CHANGED"), "{}", bar(&ui));
        ui.switch(0);
        assert!(bar(&ui).trim_end().ends_with("| status"), "{}", bar(&ui));
    }

    #[test]
    fn a_line_break_in_a_message_starts_a_new_row_and_each_line_is_neutralised() {
        let mut ui = Ui::new("s", true, 0);
        ui.push(0, message("bob", "first\nsecond \u{1b}[2J\r\nthird", 0, vec![]));
        let (rows, buf) = screen(&ui, 80, 24);
        let text = rows.join("\n");
        assert!(buf.content().iter().all(|c| !c.symbol().chars().any(crate::text::is_unsafe)), "{text}");
        let at = rows.iter().position(|r| r.contains("00:00 bob: first")).expect("the first line");
        assert!(rows[at].trim_end().ends_with("bob: first"), "{text}");
        let pad = " ".repeat(usize::from(SIDE) + GUTTER);
        assert!(rows[at + 1].starts_with(&format!("{pad}second \\u{{001b}}[2J\\u{{000d}}")), "{text}");
        assert!(rows[at + 2].starts_with(&format!("{pad}third")), "{text}");
        assert!(!text.contains("u{000a}"), "a line break is a new row, not an escape: {text}");
    }

    #[test]
    fn the_mouse_wheel_scrolls_the_conversation() {
        let mut ui = Ui::new("s", true, 0);
        for i in 0..50 {
            ui.info(0, format!("line {i}"));
        }
        ui.update(super::super::state::Action::ScrollUp, |_, _| Vec::new());
        let (rows, _) = screen(&ui, 80, 24);
        assert!(rows[21].contains("line 46") && rows[22].contains("scrolled back"), "{}", rows.join("\n"));
        ui.update(super::super::state::Action::ScrollDown, |_, _| Vec::new());
        let (rows, _) = screen(&ui, 80, 24);
        assert!(rows[21].contains("line 49") && !rows[22].contains("scrolled back"), "{}", rows.join("\n"));
    }

    #[test]
    fn the_side_list_marks_who_is_online() {
        let mut ui = sample(false);
        let (rows, _) = screen(&ui, 80, 24);
        assert!(rows[2].starts_with("3 @bob 2 "), "{}", rows.join("\n"));
        ui.members.insert("lobby".into(), [("bob".to_string(), true), ("eve".to_string(), false)].into());
        let (rows, _) = screen(&ui, 80, 24);
        let text = rows.join("\n");
        assert!(rows[2].starts_with("3 @bob* 2 "), "the contact online: {text}");
        assert!(rows[4].starts_with("members, 1 on "), "{text}");
        assert!(rows[5].starts_with("*bob ") && rows[6].starts_with(" eve "), "{text}");
        ui.members.get_mut("lobby").unwrap().remove("bob");
        let (rows, _) = screen(&ui, 80, 24);
        assert!(rows[2].starts_with("3 @bob 2 "), "left: not known online: {}", rows.join("\n"));
    }

    #[test]
    fn scrolls_back_a_page() {
        let mut ui = Ui::new("s", true, 0);
        for i in 0..50 {
            ui.info(0, format!("line {i}"));
        }
        let (rows, _) = screen(&ui, 80, 24);
        assert!(rows[21].contains("line 49"));
        ui.page = 22;
        ui.update(super::super::state::Action::PageUp, |_, _| Vec::new());
        let (rows, _) = screen(&ui, 80, 24);
        assert!(rows[21].contains("line 28") && rows[22].contains("scrolled back"), "{}", rows.join("\n"));
    }

    #[test]
    fn hides_secrets_and_fits_small_screens() {
        let mut ui = sample(true);
        ui.prompt = Some("Password: ".into());
        ui.editor.clear();
        ui.editor.paste("hunter2hunter2");
        let (rows, _) = screen(&ui, 80, 24);
        assert!(!rows.join("").contains("hunter2") && rows[23].starts_with("Password: "));
        screen(&ui, 10, 3);
        screen(&ui, 1, 1);
    }

    #[test]
    fn separates_other_days() {
        let mut ui = Ui::new("s", true, 0);
        ui.today = day(1_700_000_000_000, 0);
        ui.push(0, message("bob", "old", 1_699_900_000_000, vec![]));
        ui.push(0, message("bob", "new", 1_700_000_000_000, vec![]));
        ui.push(0, message("bob", "newer", 1_700_000_000_000, vec![]));
        let (rows, _) = screen(&ui, 80, 24);
        let text = rows.join("\n");
        let at = rows.iter().position(|r| r.contains("----- 2023-11-13 -----")).expect(&text);
        assert!(rows[at + 1].contains("bob: old") && rows[at + 2].contains("----- 2023-11-14 -----"), "{text}");
        assert!(rows[at + 3].contains("bob: new") && rows[at + 4].contains("bob: newer"), "{text}");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(day(1_709_164_800_000, 0)), "2024-02-29");
        date(i64::MAX);
        date(i64::MIN);
    }

    #[test]
    fn clock_is_hours_and_minutes() {
        assert_eq!(clock(0, 0), "00:00");
        assert_eq!(clock(1_700_000_000_000, 0), "22:13");
        assert_eq!(clock(1_700_000_000_000, 3600 * 2), "00:13");
        assert_eq!(clock(0, -60), "23:59");
        assert_eq!(clock(u64::MAX, i64::MAX), clock(u64::MAX, i64::MAX));
    }

    #[test]
    fn hostile_text_draws_at_every_small_size() {
        let texts = [
            "漢字漢字漢字漢字漢字漢字漢字漢字",
            "e\u{301}\u{301}\u{301}a\u{20dd}",
            "\u{301}leading combining",
            "👩\u{200d}👩\u{200d}👧 ❤\u{fe0f} 🇫🇷",
            "a\u{202e}b\u{2066}c\u{200b}d\u{feff}",
            "\n\n\r\n\u{1b}[2J\u{9b}1m\u{85}\u{2028}",
            "\u{fe0f}\u{fe0f}漢\u{fe0f}",
            "ｗｉｄｅ\u{3000}\u{3000}",
            "x\n\u{301}\u{302}\n\u{fe0f}y\n",
            &"漢".repeat(400),
        ];
        let mut ui = sample(true);
        ui.members.insert("lobby".into(), [("bob".to_string(), true)].into());
        ui.server = "\u{301}漢字\u{1b}]0;x\u{7}".into();
        for t in texts {
            ui.push(1, message("bob", t, 1_700_000_000_000, vec![Mark::Unverified]));
            ui.info(1, t);
            ui.alert(1, t);
            ui.editor.paste_lines(t);
        }
        ui.editor.home();
        for w in 0..30u16 {
            for h in 0..6u16 {
                let (_, buf) = screen(&ui, w, h);
                assert!(buf.content().iter().all(|c| !c.symbol().chars().any(crate::text::is_unsafe)));
            }
        }
        ui.editor.end();
        for w in [0u16, 1, 2, 3, 4, 11, 13, 49, 50, 51] {
            for h in [0u16, 1, 2, 3, 4] {
                screen(&ui, w, h);
            }
        }
    }
}
