//! Message bodies in size classes (PROTOCOL.md §8), shared by rooms and DMs.
//!
//! Invariant: a body is `u16 length || UTF-8 text || zero fill` in the
//! smallest class that holds it, so within a class every text has the same
//! size on the wire; only the class (s, m, l, x) shows how long a text is.
//! Reading one checks the length against the body before slicing.

use zeroize::Zeroizing;

use crate::crypto::Invalid;
use crate::opcodes::Class;

/// Longest text, in bytes of UTF-8 (the largest class holds 16,398).
pub const TEXT_MAX: usize = 16 * 1024;

/// The text's length does not fit any class (over [`TEXT_MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "messages are at most {TEXT_MAX} bytes")
    }
}

impl std::error::Error for TooLong {}

/// The class a text of `len` bytes is sent in.
pub fn class_for(len: usize) -> Result<Class, TooLong> {
    if len > TEXT_MAX {
        return Err(TooLong);
    }
    Class::fitting(len + 2).ok_or(TooLong)
}

/// The body for `text`: its class and `u16 length || text || zero fill`.
pub fn pack(text: &str) -> Result<(Class, Zeroizing<Vec<u8>>), TooLong> {
    let class = class_for(text.len())?;
    let mut body = Zeroizing::new(vec![0u8; class.body()]);
    body[..2].copy_from_slice(&(text.len() as u16).to_be_bytes());
    body[2..2 + text.len()].copy_from_slice(text.as_bytes());
    Ok((class, body))
}

/// The text of a decrypted body (of any class).
pub fn unpack(body: &[u8]) -> Result<String, Invalid> {
    let head = body.get(..2).ok_or(Invalid)?;
    let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
    let text = body.get(2..2 + len).filter(|_| len <= TEXT_MAX).ok_or(Invalid)?;
    String::from_utf8(text.to_vec()).map_err(|_| Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_class_that_holds_the_text() {
        let cases = [(0, Class::S), (174, Class::S), (175, Class::M), (1038, Class::M), (1039, Class::L)];
        for (len, class) in cases.into_iter().chain([(4110, Class::L), (4111, Class::X), (TEXT_MAX, Class::X)]) {
            assert_eq!(class_for(len), Ok(class), "{len}");
            let text = "a".repeat(len);
            let (c, body) = pack(&text).unwrap();
            assert_eq!((c, body.len()), (class, class.body()));
            assert_eq!(unpack(&body).unwrap(), text);
        }
        assert_eq!(class_for(TEXT_MAX + 1), Err(TooLong));
        assert_eq!(pack(&"a".repeat(TEXT_MAX + 1)).err(), Some(TooLong));
    }

    #[test]
    fn a_length_past_the_body_or_bad_utf8_is_refused() {
        let mut body = vec![0u8; 176];
        body[..2].copy_from_slice(&175u16.to_be_bytes());
        assert_eq!(unpack(&body), Err(Invalid));
        body[..2].copy_from_slice(&1u16.to_be_bytes());
        body[2] = 0xff;
        assert_eq!(unpack(&body), Err(Invalid));
        assert_eq!(unpack(&[0]), Err(Invalid));
        assert_eq!(unpack(&[0, 0]).unwrap(), "");
    }
}
