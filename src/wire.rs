//! Wire layer: fixed-size message views, status codes and the errors of decoding.
//!
//! Invariant: `decode::<T>` succeeds only on exactly `size_of::<T>()` bytes whose
//! header carries `T::OPCODE`; after that no accessor can panic.

use zerocopy::byteorder::big_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::opcodes::Header;

/// Everything that can be wrong with bytes claiming to be a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    Truncated,
    /// The length is not the one the opcode prescribes.
    WrongSize,
    /// The header names an opcode that is not in the table.
    UnknownOpcode,
    /// The header names a different opcode than the one expected.
    WrongOpcode,
    /// A string's length field exceeds its array, or it is not UTF-8.
    BadString,
    /// A value does not fit its fixed-size field.
    TooLong,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "message truncated",
            WireError::WrongSize => "message has the wrong size for its opcode",
            WireError::UnknownOpcode => "unknown opcode",
            WireError::WrongOpcode => "unexpected opcode",
            WireError::BadString => "malformed string field",
            WireError::TooLong => "value too long for its field",
        })
    }
}

impl std::error::Error for WireError {}

/// Header status byte (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// A request (client to server).
    Request = 0,
    /// The request succeeded.
    Ok = 1,
    /// Accepted; another step is needed.
    Pending = 2,
    /// The request failed; see the code.
    Error = 3,
    /// The last response of a multi-part answer.
    Done = 4,
}

impl Status {
    /// Parses the header byte.
    pub fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Request,
            1 => Status::Ok,
            2 => Status::Pending,
            3 => Status::Error,
            4 => Status::Done,
            _ => return None,
        })
    }
}

/// Three-digit response codes (DESIGN §2).
pub mod code {
    /// Success.
    pub const OK: u16 = 200;
    /// Accepted, another step is needed.
    pub const PENDING: u16 = 202;
    /// Malformed or invalid request.
    pub const BAD_REQUEST: u16 = 400;
    /// Wrong credentials, or not logged in.
    pub const UNAUTHORIZED: u16 = 401;
    /// Not allowed in this state or for this user.
    pub const FORBIDDEN: u16 = 403;
    /// No such user or room.
    pub const NOT_FOUND: u16 = 404;
    /// Already exists.
    pub const CONFLICT: u16 = 409;
    /// Too large.
    pub const TOO_LARGE: u16 = 413;
    /// Too many attempts; retry later.
    pub const RATE_LIMITED: u16 = 429;
    /// Server failure.
    pub const INTERNAL: u16 = 500;
    /// Opcode known but not implemented by this server.
    pub const NOT_IMPLEMENTED: u16 = 501;
    /// The server could not make the change durable (disk full or failing): not acknowledged.
    pub const INSUFFICIENT_STORAGE: u16 = 507;
    /// The cluster's storage (NATS JetStream) is unreachable: not acknowledged; retry later.
    pub const SERVICE_UNAVAILABLE: u16 = 503;
    /// The recipient's mailbox is full (its cap of waiting events or bytes): nothing was stored.
    pub const MAILBOX_FULL: u16 = 508;
}

/// Session state a request requires (opcodes.toml `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Handshake done, not logged in.
    AwaitLogin,
    /// Password accepted, passphrase outstanding.
    AwaitPassphrase,
    /// Fully logged in.
    Authenticated,
}

impl State {
    /// The name used in opcodes.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            State::AwaitLogin => "await_login",
            State::AwaitPassphrase => "await_passphrase",
            State::Authenticated => "authenticated",
        }
    }
}

/// Who sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client, answering a request.
    Response,
    /// Server to client, unsolicited or as the final answer of a request.
    Event,
    /// sottoctl to sottod, on the admin socket only (PROTOCOL.md §12).
    AdminRequest,
    /// sottod to sottoctl, on the admin socket only.
    AdminResponse,
}

impl Direction {
    /// The name used in opcodes.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
            Direction::Event => "event",
            Direction::AdminRequest => "admin_request",
            Direction::AdminResponse => "admin_response",
        }
    }
}

/// One row of the audit table.
#[derive(Debug, Clone, Copy)]
pub struct OpcodeInfo {
    /// Numeric opcode.
    pub opcode: u32,
    /// Four-letter mnemonic.
    pub mnemonic: &'static str,
    /// Who sends it.
    pub direction: Direction,
    /// Generated struct name.
    pub struct_name: &'static str,
    /// Exact size in bytes, header and padding included.
    pub size: usize,
    /// Required session state (requests only).
    pub state: Option<State>,
    /// Server handler (requests only).
    pub handler: Option<&'static str>,
    /// Role bits that may send it (network requests: 1 user, 2 moderator, 4 admin; 0 otherwise).
    pub roles: u8,
    /// One-line description.
    pub doc: &'static str,
}

/// A generated message struct.
pub trait Message: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Copy {
    /// Its opcode.
    const OPCODE: u32;
    /// Its mnemonic.
    const MNEMONIC: &'static str;
    /// Its header.
    fn header(&self) -> &Header;
    /// Its header, mutably.
    fn header_mut(&mut self) -> &mut Header;

    /// A zeroed message with the header filled in.
    fn new(status: Status, code: u16, msg_id: u64, timestamp_ms: u64) -> Self {
        let mut m = Self::new_zeroed();
        *m.header_mut() = Header {
            opcode: U32::new(Self::OPCODE),
            status: status as u8,
            flags: 0,
            code: U16::new(code),
            msg_id: U64::new(msg_id),
            timestamp: U64::new(timestamp_ms),
        };
        m
    }

    /// A request with the given id and time.
    fn request(msg_id: u64, timestamp_ms: u64) -> Self {
        Self::new(Status::Request, 0, msg_id, timestamp_ms)
    }
}

/// A member of a classed family (PROTOCOL.md §8): the family's shared head,
/// then a body whose size is its class's.
pub trait Classed: Message {
    /// The fields every class of the family shares.
    type Head;
    /// This member's class.
    const CLASS: crate::opcodes::Class;
    /// The shared fields.
    fn head(&self) -> &Self::Head;
    /// The shared fields, mutably.
    fn head_mut(&mut self) -> &mut Self::Head;
    /// The body (`CLASS.body()` bytes).
    fn body(&self) -> &[u8];
    /// The body, mutably.
    fn body_mut(&mut self) -> &mut [u8];
}

/// A member of a classed family seen without its type: any class.
#[derive(Clone, Copy)]
pub struct ClassedView<'a, H> {
    /// The common header.
    pub hdr: &'a Header,
    /// The family's shared fields.
    pub head: &'a H,
    /// The body, `class.body()` bytes.
    pub body: &'a [u8],
    /// Which class.
    pub class: crate::opcodes::Class,
}

/// The class of `opcode` in the family whose smallest member is `base`.
pub fn class_of(base: u32, opcode: u32) -> Option<crate::opcodes::Class> {
    crate::opcodes::Class::ALL.into_iter().find(|c| base.checked_add(c.opcode_offset()) == Some(opcode))
}

/// Views `bytes` as a member of the family `base` (its class-`s` opcode) with
/// head `H`: the opcode must be one of the family's and the size exactly its class's.
pub fn decode_classed<H: FromBytes + KnownLayout + Immutable + Unaligned>(
    bytes: &[u8],
    base: u32,
) -> Result<ClassedView<'_, H>, WireError> {
    let (hdr, rest) = Header::ref_from_prefix(bytes).map_err(|_| WireError::Truncated)?;
    let class = class_of(base, hdr.opcode.get()).ok_or(WireError::WrongOpcode)?;
    let info = crate::opcodes::info(hdr.opcode.get()).ok_or(WireError::UnknownOpcode)?;
    if bytes.len() != info.size {
        return Err(if bytes.len() < info.size { WireError::Truncated } else { WireError::WrongSize });
    }
    let (head, rest) = H::ref_from_prefix(rest).map_err(|_| WireError::Truncated)?;
    let body = rest.get(..class.body()).ok_or(WireError::Truncated)?;
    Ok(ClassedView { hdr, head, body, class })
}

/// The bytes of a member of the family `base` with head `H`, in the class
/// whose body size is `body.len()` (a request: status 0, code 0).
pub fn encode_classed<H: IntoBytes + Immutable>(
    base: u32,
    msg_id: u64,
    timestamp_ms: u64,
    head: &H,
    body: &[u8],
) -> Result<Vec<u8>, WireError> {
    let class = crate::opcodes::Class::ALL.into_iter().find(|c| c.body() == body.len()).ok_or(WireError::TooLong)?;
    let opcode = base.checked_add(class.opcode_offset()).ok_or(WireError::UnknownOpcode)?;
    let size = crate::opcodes::info(opcode).ok_or(WireError::UnknownOpcode)?.size;
    let hdr = Header {
        opcode: U32::new(opcode),
        status: Status::Request as u8,
        flags: 0,
        code: U16::new(0),
        msg_id: U64::new(msg_id),
        timestamp: U64::new(timestamp_ms),
    };
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(hdr.as_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    if out.len() > size {
        return Err(WireError::WrongSize);
    }
    out.resize(size, 0);
    Ok(out)
}

/// Reads the header of any message.
pub fn header(bytes: &[u8]) -> Result<&Header, WireError> {
    Header::ref_from_prefix(bytes).map(|(h, _)| h).map_err(|_| WireError::Truncated)
}

/// Views `bytes` as `T`: exact size and matching opcode, or an error.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<&T, WireError> {
    let m = T::ref_from_bytes(bytes).map_err(|_| {
        if bytes.len() < core::mem::size_of::<T>() {
            WireError::Truncated
        } else {
            WireError::WrongSize
        }
    })?;
    if m.header().opcode.get() != T::OPCODE {
        return Err(WireError::WrongOpcode);
    }
    Ok(m)
}

/// Reads a fixed string field: `len` bytes of UTF-8 from `buf`.
pub fn fixed_str(buf: &[u8], len: u8) -> Result<&str, WireError> {
    let bytes = buf.get(..usize::from(len)).ok_or(WireError::BadString)?;
    std::str::from_utf8(bytes).map_err(|_| WireError::BadString)
}

/// Writes a fixed string field, zero-filling what follows.
pub fn set_fixed_str(buf: &mut [u8], len: &mut u8, value: &str) -> Result<(), WireError> {
    let n = value.len();
    if n > buf.len() || n > usize::from(u8::MAX) {
        return Err(WireError::TooLong);
    }
    buf.fill(0);
    buf[..n].copy_from_slice(value.as_bytes());
    *len = n as u8;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opcodes::{Class, SendRoomMessageHead, SendRoomMessageL, RVRS, SRMS};
    use zerocopy::FromZeros;

    #[test]
    fn classed_messages_encode_and_decode_in_every_class_and_nothing_else() {
        let mut head = SendRoomMessageHead::new_zeroed();
        head.set_room("lobby").unwrap();
        head.tag = [7; 32];
        for class in Class::ALL {
            let body = vec![class.letter() as u8; class.body()];
            let bytes = encode_classed(SRMS, 9, 10, &head, &body).unwrap();
            assert_eq!(bytes.len(), crate::opcodes::info(SRMS + class.opcode_offset()).unwrap().size);
            let v = decode_classed::<SendRoomMessageHead>(&bytes, SRMS).unwrap();
            assert_eq!((v.class, v.hdr.msg_id.get(), v.head.room().unwrap(), v.body), (class, 9, "lobby", &body[..]));
            assert_eq!(decode_classed::<SendRoomMessageHead>(&bytes, RVRS).err(), Some(WireError::WrongOpcode));
            assert!(decode_classed::<SendRoomMessageHead>(&bytes[..bytes.len() - 16], SRMS).is_err());
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0; 16]);
            assert_eq!(decode_classed::<SendRoomMessageHead>(&longer, SRMS).err(), Some(WireError::WrongSize));
        }
        assert_eq!(encode_classed(SRMS, 1, 1, &head, &[0; 177]).err(), Some(WireError::TooLong));
        // The typed view of a class agrees with the generic one.
        let bytes = encode_classed(SRMS, 1, 2, &head, &[3; 4112]).unwrap();
        let typed = decode::<SendRoomMessageL>(&bytes).unwrap();
        assert_eq!((typed.head().tag, typed.body()), ([7; 32], &[3u8; 4112][..]));
    }
}
