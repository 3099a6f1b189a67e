//! Framing: `len (u32, big-endian) || body`, with the length bounded before buffering.
//!
//! Invariant: the deframer never holds more than one maximal frame plus the
//! bytes pushed since the last pop, and rejects an over-long length as soon
//! as its four bytes arrive.

/// Why a byte stream cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The announced body length exceeds the bound.
    TooLarge(u32),
    /// The announced body length is zero.
    Empty,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "announced frame length {n} is over the limit"),
            FrameError::Empty => f.write_str("empty frame"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits a byte stream into frame bodies.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
    max_body: usize,
}

impl Deframer {
    /// A deframer accepting bodies of at most `max_body` bytes.
    pub fn new(max_body: usize) -> Deframer {
        Deframer { buf: Vec::new(), start: 0, max_body }
    }

    /// Changes the bound (the handshake and the record layer differ).
    pub fn set_max_body(&mut self, max_body: usize) {
        self.max_body = max_body;
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame body, if one has arrived.
    pub fn pop(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let pending = &self.buf[self.start..];
        let Some(len) = pending.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len as usize > self.max_body {
            return Err(FrameError::TooLarge(len));
        }
        let total = 4 + len as usize;
        let Some(frame) = pending.get(4..total) else { return Ok(None) };
        let body = frame.to_vec();
        self.start += total;
        if self.start > 64 * 1024 || self.start == self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(body))
    }
}

/// Prefixes `body` with its length.
pub fn encode(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_frames_split_anywhere() {
        let mut wire = Vec::new();
        encode(b"hello", &mut wire);
        encode(b"world!", &mut wire);
        for split in 0..=wire.len() {
            let mut d = Deframer::new(16);
            d.push(&wire[..split]);
            let mut got = Vec::new();
            while let Some(f) = d.pop().unwrap() {
                got.push(f);
            }
            d.push(&wire[split..]);
            while let Some(f) = d.pop().unwrap() {
                got.push(f);
            }
            assert_eq!(got, vec![b"hello".to_vec(), b"world!".to_vec()], "split at {split}");
        }
    }

    #[test]
    fn rejects_oversized_length_before_the_body_arrives() {
        let mut d = Deframer::new(16);
        d.push(&u32::MAX.to_be_bytes());
        assert_eq!(d.pop(), Err(FrameError::TooLarge(u32::MAX)));
        let mut d = Deframer::new(16);
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.pop(), Err(FrameError::Empty));
    }
}
