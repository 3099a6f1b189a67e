//! Front-end layer: how text that came from the network reaches a screen.
//!
//! Invariant: no character that a terminal acts on, or that reorders or hides
//! what follows it, is ever written as it is. Control characters (Unicode
//! category Cc: C0, DEL, C1), format characters (Cf: the bidi overrides and
//! isolates such as U+202E and U+2066–2069, zero-width characters, the BOM,
//! tag characters) and the line and paragraph separators are shown as a
//! visible `\u{…}` instead. Every front end writes network strings (names,
//! texts, reasons, room names) through here, or escapes them the same way.

use std::borrow::Cow;
use std::fmt::Write;

/// The format characters (Cf) of Unicode 15, as inclusive ranges.
const FORMAT: &[(u32, u32)] = &[
    (0x00ad, 0x00ad),
    (0x0600, 0x0605),
    (0x061c, 0x061c),
    (0x06dd, 0x06dd),
    (0x070f, 0x070f),
    (0x0890, 0x0891),
    (0x08e2, 0x08e2),
    (0x180e, 0x180e),
    (0x200b, 0x200f),
    (0x202a, 0x202e),
    (0x2060, 0x2064),
    (0x2066, 0x206f),
    (0xfeff, 0xfeff),
    (0xfff9, 0xfffb),
    (0x110bd, 0x110bd),
    (0x110cd, 0x110cd),
    (0x13430, 0x1343f),
    (0x1bca0, 0x1bca3),
    (0x1d173, 0x1d17a),
    (0xe0001, 0xe0001),
    (0xe0020, 0xe007f),
];

/// True for a character that must not reach a terminal as it is.
pub fn is_unsafe(c: char) -> bool {
    let u = u32::from(c);
    c.is_control() || matches!(u, 0x2028 | 0x2029) || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

/// `s` with every unsafe character shown as `\u{XXXX}` (and the backslash of
/// such an escape already in `s` left as it is: it is harmless text).
pub fn neutralise(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A whole block of output (lines of the client's own, which may hold network
/// strings): each line neutralised, the line breaks kept.
pub fn neutralise_lines(s: &str) -> String {
    s.split('\n').map(neutralise).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_zero_width_become_visible_escapes() {
        assert_eq!(neutralise("plain ü€😀"), "plain ü€😀");
        assert!(matches!(neutralise("plain"), Cow::Borrowed(_)));
        assert_eq!(neutralise("a\u{1b}[2Jb"), "a\\u{001b}[2Jb");
        assert_eq!(neutralise("\u{1b}]52;c;aGk=\u{7}"), "\\u{001b}]52;c;aGk=\\u{0007}", "OSC 52");
        assert_eq!(neutralise("x\u{9b}31m"), "x\\u{009b}31m", "C1 CSI");
        assert_eq!(neutralise("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        for c in [
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200b}',
            '\u{200d}',
            '\u{feff}',
            '\u{2028}',
            '\u{e0041}',
        ] {
            assert!(is_unsafe(c), "{:04x}", u32::from(c));
            assert!(!neutralise(&c.to_string()).contains(c));
        }
        assert_eq!(neutralise_lines("one\u{1b}\ntwo\u{202e}"), "one\\u{001b}\ntwo\\u{202e}");
    }
}
