//! Output layer of batch mode: a minimal writer of JSON objects (strings,
//! numbers, booleans, and arrays of objects).
//!
//! Invariant: every key and string value is escaped (quote, backslash, and
//! every character `text::is_unsafe` names, controls and format characters
//! such as U+202E, as `\uXXXX`), and arrays hold only objects built here, so
//! one event is always exactly one valid JSON line, harmless on a terminal.

use std::fmt::Write as _;

/// A JSON object under construction; an event starts with its `"type"` member.
pub struct Object {
    buf: String,
}

impl Object {
    /// `{"type":kind` — every batch event has a type.
    pub fn new(kind: &str) -> Object {
        let mut o = Object::bare();
        o.key("type");
        escape_into(&mut o.buf, kind);
        o
    }

    /// An object without a type, for an array element.
    pub fn bare() -> Object {
        Object { buf: String::from("{") }
    }

    /// Adds a boolean member.
    pub fn bool(mut self, key: &str, value: bool) -> Object {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds an array of objects.
    pub fn list(mut self, key: &str, items: impl IntoIterator<Item = Object>) -> Object {
        self.key(key);
        self.buf.push('[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            self.buf.push_str(&item.finish());
        }
        self.buf.push(']');
        self
    }

    /// Adds a string member.
    pub fn str(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        escape_into(&mut self.buf, value);
        self
    }

    /// Adds a number member.
    pub fn num(mut self, key: &str, value: u64) -> Object {
        self.key(key);
        let _ = write!(self.buf, "{value}");
        self
    }

    /// The finished object, without a newline.
    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }

    fn key(&mut self, key: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        escape_into(&mut self.buf, key);
        self.buf.push(':');
    }
}

/// Appends `s` as a quoted JSON string (RFC 8259 §7).
pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // Controls, and the format characters a terminal would act on
            // (bidi overrides, zero-width): escaped, so the line stays exact JSON
            // and harmless on a screen (`text`).
            c if crate::text::is_unsafe(c) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        let nasty = "a\"b\\c\nd\re\tf\u{0}g\u{1f}h\u{7f}ü€😀\u{202e}\u{e0041}\u{1b}]52;c;x\u{7}";
        let line = Object::new("error").str("message", nasty).num("code", 401).finish();
        assert!(!line.contains('\n') && !line.contains('\r'));
        assert!(line.contains("\\u000a") && line.contains("\\u0000") && line.contains("\\u001f"));
        assert!(line.contains("\\u202e") && line.contains("\\udb40\\udc41") && !line.contains('\u{1b}'));
        assert!(!line.chars().any(crate::text::is_unsafe), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["message"], nasty);
        assert_eq!(v["code"], 401);
    }

    #[test]
    fn builds_the_documented_shapes() {
        assert_eq!(Object::new("bye").finish(), r#"{"type":"bye"}"#);
        assert_eq!(Object::new("ok").str("cmd", "register").finish(), r#"{"type":"ok","cmd":"register"}"#);
        let members = ["alice", "b\"ob"].map(|n| Object::bare().str("name", n).bool("online", n == "alice"));
        let line = Object::new("joined").str("room", "lobby").list("members", members).finish();
        assert_eq!(
            line,
            r#"{"type":"joined","room":"lobby","members":[{"name":"alice","online":true},{"name":"b\"ob","online":false}]}"#
        );
        assert_eq!(Object::new("rooms").list("rooms", []).finish(), r#"{"type":"rooms","rooms":[]}"#);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["members"][1]["name"], "b\"ob");
    }
}
