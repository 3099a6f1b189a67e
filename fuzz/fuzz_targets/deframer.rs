//! The deframer fed a stream in arbitrary chunks: never panics, no body over the
//! bound, and the same bodies and error as when the stream arrives in one push.
//!
//! Input: bound (u16, big-endian), cut count k (u8, mod 17), k cut offsets (u16 each), stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto::frame::{self, Deframer, FrameError};

fuzz_target!(|data: &[u8]| {
    let [m0, m1, k, rest @ ..] = data else { return };
    let max = usize::from(u16::from_be_bytes([*m0, *m1]));
    let Some((cuts, stream)) = rest.split_at_checked(2 * usize::from(k % 17)) else { return };
    let mut at: Vec<usize> =
        cuts.chunks(2).map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])) % (stream.len() + 1)).collect();
    at.extend([0, stream.len()]);
    at.sort_unstable();
    let chunked = deframe(max, at.windows(2).map(|w| &stream[w[0]..w[1]]));
    assert_eq!(chunked, deframe(max, [stream]), "chunked vs one push, cuts {at:?}");
    let (bodies, error, left) = chunked;
    let mut again = Vec::new();
    bodies.iter().for_each(|b| frame::encode(b, &mut again));
    assert!(stream.starts_with(&again) && (error.is_some() || again.len() + left == stream.len()));
});

/// Pushes each chunk and pops all it completes: the bodies, the error that stopped it, bytes left.
fn deframe<'a>(max: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, Option<FrameError>, usize) {
    let (mut d, mut bodies) = (Deframer::new(max), Vec::new());
    for chunk in chunks {
        d.push(chunk);
        loop {
            match d.pop() {
                Ok(Some(b)) => {
                    assert!(!b.is_empty() && b.len() <= max, "body of {} bytes, bound {max}", b.len());
                    bodies.push(b);
                }
                Ok(None) => break,
                Err(e) => return (bodies, Some(e), 0),
            }
        }
    }
    (bodies, None, d.buffered())
}
