//! The Double Ratchet of protocol-2 direct messages, exactly as Signal's
//! specification defines it (<https://signal.org/docs/specifications/doubleratchet/>),
//! without header encryption (docs/PROTOCOL.md §7). Pure: no I/O; the
//! caller saves the state ([`Ratchet::to_bytes`]) before it shows a plaintext.
//!
//! Invariant: a message key is used at most once — a chain key yields the next
//! chain key and one message key, a skipped key is deleted once used, and a
//! header below the receiving counter that is not a stored skipped key is
//! refused — so a replayed message never opens, even after a save and restore.
//! [`Ratchet::open`] is transactional: on any failure the state is exactly
//! unchanged; it checks the tag (constant time) before decrypting. Every DH
//! output is contributory or refused. One header never skips more than
//! [`MAX_SKIP`] keys of a chain, and at most [`MAX_SKIPPED_KEYS`] skipped keys
//! are kept (the oldest evicted first). Secrets are zeroized when dropped.
//!
//! Saved state ([`Ratchet::to_bytes`]), all integers big-endian:
//!
//! ```text
//! version (u8) = 1
//! flags   (u8)  bit 0: DHr present, bit 1: CKs present, bit 2: CKr present,
//!               bit 3: sent_any, bit 4: received_any; other bits zero;
//!               CKr present requires DHr present
//! DHs secret (32) || RK (32)
//! [DHr (32)] [CKs (32)] [CKr (32)]   each when its flag is set, in this order
//! Ns (u32) || Nr (u32) || PN (u32)
//! count (u16, at most MAX_SKIPPED_KEYS)
//! count × (DH public key (32) || n (u32) || message key (32)), oldest first
//! ```
//!
//! [`Ratchet::from_bytes`] checks the version, the flags and the count before
//! allocating, and refuses trailing bytes.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use crate::crypto::{self, Invalid, BLOCK};
use crate::x3dh::{dh, public_key};

/// The most message keys one header may skip in one chain (Signal's MAX_SKIP):
/// a peer can make us derive at most this many keys per chain for one message.
pub const MAX_SKIP: u32 = 1000;
/// The most skipped message keys a session keeps; beyond it the oldest is
/// evicted (its message then never opens). Bounds the saved state to about 68 KB.
pub const MAX_SKIPPED_KEYS: usize = 1000;
/// Length of an encoded [`Header`].
pub const HEADER_LEN: usize = 40;
/// Version byte of the saved state.
const STATE_VERSION: u8 = 1;

const ROOT_LABEL: &[u8] = b"sotto/v2 ratchet root\0";
const KEYS_LABEL: &[u8] = b"sotto/v2 message keys\0";
const MAC_LABEL: &[u8] = b"sotto/v2 dm message\0";

const F_DHR: u8 = 0x01;
const F_CKS: u8 = 0x02;
const F_CKR: u8 = 0x04;
const F_SENT: u8 = 0x08;
const F_RECEIVED: u8 = 0x10;
const SKIPPED_LEN: usize = 32 + 4 + 32;

/// A message header, sent in clear: the sender's ratchet public key, the
/// length of its previous sending chain and the message's number in this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's current ratchet public key.
    pub dh: [u8; 32],
    /// Number of messages in the sender's previous sending chain.
    pub pn: u32,
    /// Number of this message in its sending chain.
    pub n: u32,
}

impl Header {
    /// `dh || pn || n`.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..32].copy_from_slice(&self.dh);
        b[32..36].copy_from_slice(&self.pn.to_be_bytes());
        b[36..].copy_from_slice(&self.n.to_be_bytes());
        b
    }

    /// Parses exactly [`HEADER_LEN`] bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Header, Invalid> {
        let b: &[u8; HEADER_LEN] = b.try_into().map_err(|_| Invalid)?;
        let mut dh = [0u8; 32];
        dh.copy_from_slice(&b[..32]);
        let pn = u32::from_be_bytes([b[32], b[33], b[34], b[35]]);
        let n = u32::from_be_bytes([b[36], b[37], b[38], b[39]]);
        Ok(Header { dh, pn, n })
    }
}

/// A sealed message: header, ciphertext (the length of the body) and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The header, authenticated by the tag.
    pub header: Header,
    /// AES-128-CBC of the body, no padding.
    pub ciphertext: Vec<u8>,
    /// HMAC-SHA256 over label, AD, header and ciphertext.
    pub tag: [u8; 32],
}

/// The keys one seal used: for test vectors and forward-secrecy tests only.
#[cfg(any(test, feature = "vectors"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The sending chain key the message key came from.
    pub ck: [u8; 32],
    /// The message key.
    pub mk: [u8; 32],
    /// AES-128 key derived from `mk`.
    pub aes: [u8; 16],
    /// HMAC key derived from `mk`.
    pub mac: [u8; 32],
    /// CBC IV derived from `mk`.
    pub iv: [u8; 16],
}

/// `KDF_RK`: `HKDF-SHA256(salt = rk, ikm = dh_out, info = label)`, 64 bytes → (new rk, chain key).
fn kdf_rk(rk: &[u8; 32], dh_out: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let mut okm = Zeroizing::new([0u8; 64]);
    crypto::hkdf(rk, dh_out, &[ROOT_LABEL], &mut okm[..]);
    let (mut root, mut chain) = (Zeroizing::new([0u8; 32]), Zeroizing::new([0u8; 32]));
    root.copy_from_slice(&okm[..32]);
    chain.copy_from_slice(&okm[32..]);
    (root, chain)
}

/// `KDF_CK`: (next chain key = HMAC(ck, 0x02), message key = HMAC(ck, 0x01)).
fn kdf_ck(ck: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let mk = Zeroizing::new(crypto::hmac(ck, &[&[0x01]]));
    let next = Zeroizing::new(crypto::hmac(ck, &[&[0x02]]));
    (next, mk)
}

/// The AES key, HMAC key and IV of one message key.
struct MessageKeys {
    aes: Zeroizing<[u8; 16]>,
    mac: Zeroizing<[u8; 32]>,
    iv: Zeroizing<[u8; 16]>,
}

impl MessageKeys {
    /// `HKDF-SHA256(salt = 0^32, ikm = mk, info = label)`, 64 bytes → aes (16) || mac (32) || iv (16).
    fn from_mk(mk: &[u8; 32]) -> MessageKeys {
        let mut okm = Zeroizing::new([0u8; 64]);
        crypto::hkdf(&[0u8; 32], mk, &[KEYS_LABEL], &mut okm[..]);
        let mut k = MessageKeys {
            aes: Zeroizing::new([0u8; 16]),
            mac: Zeroizing::new([0u8; 32]),
            iv: Zeroizing::new([0u8; 16]),
        };
        k.aes.copy_from_slice(&okm[..16]);
        k.mac.copy_from_slice(&okm[16..48]);
        k.iv.copy_from_slice(&okm[48..]);
        k
    }
}

/// Checks the tag, then decrypts.
fn decrypt(mk: &[u8; 32], ad: &[u8], header: &[u8], ct: &[u8], tag: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, Invalid> {
    let k = MessageKeys::from_mk(mk);
    if !crypto::hmac_verify(&k.mac[..], &[MAC_LABEL, ad, header, ct], tag) {
        return Err(Invalid);
    }
    let mut pt = Zeroizing::new(ct.to_vec());
    crypto::cbc_decrypt(&k.aes, &k.iv, &mut pt)?;
    Ok(pt)
}

/// A stored skipped message key. The key is boxed so that moving entries
/// around (the deque growing) leaves no copy of it behind.
struct Skipped {
    dh: [u8; 32],
    n: u32,
    mk: Box<Zeroizing<[u8; 32]>>,
}

/// The chains and counters: what one `open` changes, copied and committed whole.
#[derive(Clone)]
struct Chains {
    dhs: Zeroizing<[u8; 32]>,
    dhs_pub: [u8; 32],
    dhr: Option<[u8; 32]>,
    rk: Zeroizing<[u8; 32]>,
    cks: Option<Zeroizing<[u8; 32]>>,
    ckr: Option<Zeroizing<[u8; 32]>>,
    ns: u32,
    nr: u32,
    pn: u32,
}

impl Chains {
    /// Signal's SkipMessageKeys: derives the receiving chain's keys up to
    /// (not including) `until` into `out`; refuses more than [`MAX_SKIP`].
    fn skip(&mut self, until: u32, out: &mut Vec<Skipped>) -> Result<(), Invalid> {
        if u64::from(self.nr) + u64::from(MAX_SKIP) < u64::from(until) {
            return Err(Invalid);
        }
        if let (Some(ck), Some(dhr)) = (self.ckr.as_mut(), self.dhr) {
            while self.nr < until {
                let (next, mk) = kdf_ck(ck);
                *ck = next;
                out.push(Skipped { dh: dhr, n: self.nr, mk: Box::new(mk) });
                self.nr += 1;
            }
        }
        Ok(())
    }

    /// Signal's DHRatchet, with the new key pair from `generate`.
    fn dh_ratchet(
        &mut self,
        peer: &[u8; 32],
        generate: &mut dyn FnMut() -> Zeroizing<[u8; 32]>,
    ) -> Result<(), Invalid> {
        self.pn = self.ns;
        self.ns = 0;
        self.nr = 0;
        self.dhr = Some(*peer);
        let (rk, ckr) = kdf_rk(&self.rk, &*dh(&self.dhs, peer)?);
        self.ckr = Some(ckr);
        self.dhs = generate();
        self.dhs_pub = public_key(&self.dhs);
        let (rk, cks) = kdf_rk(&rk, &*dh(&self.dhs, peer)?);
        self.rk = rk;
        self.cks = Some(cks);
        Ok(())
    }
}

/// One side of a Double Ratchet session.
pub struct Ratchet {
    c: Chains,
    /// Skipped message keys, oldest first.
    skipped: VecDeque<Skipped>,
    sent: bool,
    received: bool,
}

impl std::fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material, not even public keys: counters and flags only.
        f.debug_struct("Ratchet")
            .field("ns", &self.c.ns)
            .field("nr", &self.c.nr)
            .field("pn", &self.c.pn)
            .field("skipped", &self.skipped.len())
            .field("sent_any", &self.sent)
            .field("received_any", &self.received)
            .finish_non_exhaustive()
    }
}

impl Ratchet {
    /// The initiator's state after X3DH: a fresh ratchet key pair, and
    /// `RK, CKs = KDF_RK(SK, DH(DHs, SPK_B))`; no receiving chain yet.
    pub fn initiator(sk: &[u8; 32], peer_spk_pub: &[u8; 32]) -> Result<Ratchet, Invalid> {
        Ratchet::initiator_from(sk, peer_spk_pub, Zeroizing::new(crypto::random()))
    }

    /// As [`Ratchet::initiator`] with a chosen ratchet secret: for test
    /// vectors only (feature `vectors`).
    #[cfg(any(test, feature = "vectors"))]
    pub fn initiator_with(sk: &[u8; 32], peer_spk_pub: &[u8; 32], dh_secret: &[u8; 32]) -> Result<Ratchet, Invalid> {
        Ratchet::initiator_from(sk, peer_spk_pub, Zeroizing::new(*dh_secret))
    }

    fn initiator_from(sk: &[u8; 32], peer_spk_pub: &[u8; 32], dhs: Zeroizing<[u8; 32]>) -> Result<Ratchet, Invalid> {
        let (rk, cks) = kdf_rk(sk, &*dh(&dhs, peer_spk_pub)?);
        let dhs_pub = public_key(&dhs);
        let c = Chains { dhs, dhs_pub, dhr: Some(*peer_spk_pub), rk, cks: Some(cks), ckr: None, ns: 0, nr: 0, pn: 0 };
        Ok(Ratchet { c, skipped: VecDeque::new(), sent: false, received: false })
    }

    /// The responder's state after X3DH: its signed prekey is the first
    /// ratchet key pair, `RK = SK`; it can send only after it has opened a message.
    pub fn responder(sk: &[u8; 32], spk_secret: &[u8; 32]) -> Ratchet {
        let c = Chains {
            dhs: Zeroizing::new(*spk_secret),
            dhs_pub: public_key(spk_secret),
            dhr: None,
            rk: Zeroizing::new(*sk),
            cks: None,
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
        };
        Ratchet { c, skipped: VecDeque::new(), sent: false, received: false }
    }

    /// Has this side sealed any message?
    pub fn sent_any(&self) -> bool {
        self.sent
    }

    /// Has this side opened any message? Until it has, the initiator keeps
    /// sending the X3DH fields with each message.
    pub fn received_any(&self) -> bool {
        self.received
    }

    /// Seals `body` (whole 16-byte blocks, already padded by the caller)
    /// bound to `ad`. Fails, changing nothing, when there is no sending chain
    /// yet (a responder that has opened nothing), on a body that is empty or
    /// not whole blocks, or when the chain is exhausted (2^32 messages).
    pub fn seal(&mut self, body: &[u8], ad: &[u8]) -> Result<Sealed, Invalid> {
        self.seal_inner(body, ad).map(|(sealed, _, _)| sealed)
    }

    /// As [`Ratchet::seal`], also reporting the keys it used: for test
    /// vectors and forward-secrecy tests only (feature `vectors`).
    #[cfg(any(test, feature = "vectors"))]
    pub fn seal_traced(&mut self, body: &[u8], ad: &[u8]) -> Result<(Sealed, Trace), Invalid> {
        let (sealed, ck, mk) = self.seal_inner(body, ad)?;
        let k = MessageKeys::from_mk(&mk);
        Ok((sealed, Trace { ck: *ck, mk: *mk, aes: *k.aes, mac: *k.mac, iv: *k.iv }))
    }

    /// Seals and returns the chain key and message key used.
    #[allow(clippy::type_complexity)]
    fn seal_inner(
        &mut self,
        body: &[u8],
        ad: &[u8],
    ) -> Result<(Sealed, Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>), Invalid> {
        if body.is_empty() || body.len() % BLOCK != 0 {
            return Err(Invalid);
        }
        let ck = self.c.cks.as_ref().ok_or(Invalid)?;
        let next_ns = self.c.ns.checked_add(1).ok_or(Invalid)?;
        let (next_ck, mk) = kdf_ck(ck);
        let header = Header { dh: self.c.dhs_pub, pn: self.c.pn, n: self.c.ns };
        let k = MessageKeys::from_mk(&mk);
        let mut ciphertext = body.to_vec();
        crypto::cbc_encrypt(&k.aes, &k.iv, &mut ciphertext)?;
        let tag = crypto::hmac(&k.mac[..], &[MAC_LABEL, ad, &header.to_bytes(), &ciphertext]);
        let used = self.c.cks.replace(next_ck).ok_or(Invalid)?;
        self.c.ns = next_ns;
        self.sent = true;
        Ok((Sealed { header, ciphertext, tag }, used, mk))
    }

    /// Opens a message bound to `ad`. On any failure — bad tag, replay,
    /// too many skipped keys, a low-order ratchet key, a ciphertext that is
    /// empty or not whole blocks — the state is exactly unchanged.
    pub fn open(
        &mut self,
        header: &Header,
        ciphertext: &[u8],
        tag: &[u8; 32],
        ad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Invalid> {
        self.open_from(header, ciphertext, tag, ad, &mut || Zeroizing::new(crypto::random()))
    }

    /// As [`Ratchet::open`], with `dh_secret` as the new ratchet secret if
    /// this message starts a DH ratchet step (ignored otherwise): for test
    /// vectors only (feature `vectors`).
    #[cfg(any(test, feature = "vectors"))]
    pub fn open_with(
        &mut self,
        header: &Header,
        ciphertext: &[u8],
        tag: &[u8; 32],
        ad: &[u8],
        dh_secret: &[u8; 32],
    ) -> Result<Zeroizing<Vec<u8>>, Invalid> {
        self.open_from(header, ciphertext, tag, ad, &mut || Zeroizing::new(*dh_secret))
    }

    /// Signal's RatchetDecrypt, on a copy of the chains committed only on success.
    fn open_from(
        &mut self,
        header: &Header,
        ct: &[u8],
        tag: &[u8; 32],
        ad: &[u8],
        generate: &mut dyn FnMut() -> Zeroizing<[u8; 32]>,
    ) -> Result<Zeroizing<Vec<u8>>, Invalid> {
        if ct.is_empty() || ct.len() % BLOCK != 0 {
            return Err(Invalid);
        }
        let hb = header.to_bytes();
        // A skipped key opens its message once and is deleted; a failure keeps it.
        if let Some(i) = self.skipped.iter().position(|s| s.dh == header.dh && s.n == header.n) {
            let pt = self.skipped.get(i).map(|s| decrypt(&s.mk, ad, &hb, ct, tag)).ok_or(Invalid)??;
            self.skipped.remove(i);
            self.received = true;
            return Ok(pt);
        }
        let mut c = self.c.clone();
        let mut new_skipped = Vec::new();
        if c.dhr != Some(header.dh) {
            c.skip(header.pn, &mut new_skipped)?;
            c.dh_ratchet(&header.dh, generate)?;
        } else if header.n < c.nr {
            // Already used, or skipped and since used or evicted.
            return Err(Invalid);
        }
        c.skip(header.n, &mut new_skipped)?;
        let ck = c.ckr.as_mut().ok_or(Invalid)?;
        let (next, mk) = kdf_ck(ck);
        *ck = next;
        c.nr = c.nr.checked_add(1).ok_or(Invalid)?;
        let pt = decrypt(&mk, ad, &hb, ct, tag)?;
        // Commit.
        self.c = c;
        for s in new_skipped {
            if self.skipped.len() >= MAX_SKIPPED_KEYS {
                self.skipped.pop_front();
            }
            self.skipped.push_back(s);
        }
        self.received = true;
        Ok(pt)
    }

    /// The saved state (format in the module doc).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let c = &self.c;
        let mut flags = 0u8;
        for (on, bit) in [
            (c.dhr.is_some(), F_DHR),
            (c.cks.is_some(), F_CKS),
            (c.ckr.is_some(), F_CKR),
            (self.sent, F_SENT),
            (self.received, F_RECEIVED),
        ] {
            if on {
                flags |= bit;
            }
        }
        let len = 2 + 64 + 3 * 32 + 12 + 2 + self.skipped.len() * SKIPPED_LEN;
        // Reserved once, so that no reallocation leaves a copy of a key behind.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.push(STATE_VERSION);
        out.push(flags);
        out.extend_from_slice(&c.dhs[..]);
        out.extend_from_slice(&c.rk[..]);
        if let Some(dhr) = &c.dhr {
            out.extend_from_slice(dhr);
        }
        for ck in [&c.cks, &c.ckr].into_iter().flatten() {
            out.extend_from_slice(&ck[..]);
        }
        for v in [c.ns, c.nr, c.pn] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        // NOTE: the deque never holds more than MAX_SKIPPED_KEYS (< 2^16) entries.
        out.extend_from_slice(&(self.skipped.len() as u16).to_be_bytes());
        for s in &self.skipped {
            out.extend_from_slice(&s.dh);
            out.extend_from_slice(&s.n.to_be_bytes());
            out.extend_from_slice(&s.mk[..]);
        }
        out
    }

    /// Restores a state saved by [`Ratchet::to_bytes`]; anything else is `Invalid`.
    pub fn from_bytes(b: &[u8]) -> Result<Ratchet, Invalid> {
        let mut r = Reader(b);
        if r.u8()? != STATE_VERSION {
            return Err(Invalid);
        }
        let flags = r.u8()?;
        if flags & !(F_DHR | F_CKS | F_CKR | F_SENT | F_RECEIVED) != 0 || (flags & F_CKR != 0 && flags & F_DHR == 0) {
            return Err(Invalid);
        }
        let dhs = r.secret()?;
        let rk = r.secret()?;
        let dhr = if flags & F_DHR != 0 { Some(r.array()?) } else { None };
        let cks = if flags & F_CKS != 0 { Some(r.secret()?) } else { None };
        let ckr = if flags & F_CKR != 0 { Some(r.secret()?) } else { None };
        let (ns, nr, pn) = (r.u32()?, r.u32()?, r.u32()?);
        let count = usize::from(u16::from_be_bytes(r.array()?));
        if count > MAX_SKIPPED_KEYS || r.0.len() != count * SKIPPED_LEN {
            return Err(Invalid);
        }
        let mut skipped = VecDeque::with_capacity(count);
        for _ in 0..count {
            let dh = r.array()?;
            let n = r.u32()?;
            skipped.push_back(Skipped { dh, n, mk: Box::new(r.secret()?) });
        }
        let dhs_pub = public_key(&dhs);
        Ok(Ratchet {
            c: Chains { dhs, dhs_pub, dhr, rk, cks, ckr, ns, nr, pn },
            skipped,
            sent: flags & F_SENT != 0,
            received: flags & F_RECEIVED != 0,
        })
    }
}

/// A cursor over saved state: every read checks the remaining length.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Invalid> {
        if self.0.len() < n {
            return Err(Invalid);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Invalid> {
        self.take(N)?.try_into().map_err(|_| Invalid)
    }

    fn secret(&mut self) -> Result<Zeroizing<[u8; 32]>, Invalid> {
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(self.take(32)?);
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Invalid> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Invalid> {
        Ok(u32::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AD: &[u8] = b"session associated data";

    /// A pair: A initiator, B responder, from a fixed SK.
    fn pair() -> (Ratchet, Ratchet) {
        let (sk, spk) = ([9u8; 32], [3u8; 32]);
        (Ratchet::initiator(&sk, &public_key(&spk)).unwrap(), Ratchet::responder(&sk, &spk))
    }

    fn body(text: &str) -> Vec<u8> {
        let mut b = vec![0u8; 176];
        b[..2].copy_from_slice(&(text.len() as u16).to_be_bytes());
        b[2..2 + text.len()].copy_from_slice(text.as_bytes());
        b
    }

    fn open(r: &mut Ratchet, s: &Sealed) -> Result<Zeroizing<Vec<u8>>, Invalid> {
        r.open(&s.header, &s.ciphertext, &s.tag, AD)
    }

    #[test]
    fn round_trip_both_ways_out_of_order() {
        let (mut a, mut b) = pair();
        assert!(b.seal(&body("too early"), AD).is_err(), "the responder cannot send first");
        let m0 = a.seal(&body("m0"), AD).unwrap();
        let m1 = a.seal(&body("m1"), AD).unwrap();
        assert!(a.sent_any() && !a.received_any() && !b.received_any());
        assert_eq!(*open(&mut b, &m1).unwrap(), body("m1"));
        assert_eq!(*open(&mut b, &m0).unwrap(), body("m0"));
        assert!(b.received_any());
        let m2 = b.seal(&body("m2"), AD).unwrap();
        assert_eq!(*open(&mut a, &m2).unwrap(), body("m2"));
        let m3 = a.seal(&body("m3"), AD).unwrap();
        assert_eq!(m3.header.pn, 2);
        assert_eq!(m3.header.n, 0);
        assert_ne!(m3.header.dh, m0.header.dh);
        assert_eq!(*open(&mut b, &m3).unwrap(), body("m3"));
        for m in [&m0, &m1, &m3] {
            assert!(open(&mut b, m).is_err(), "replay");
        }
        assert!(open(&mut a, &m2).is_err(), "replay");
    }

    #[test]
    fn tampering_fails_and_changes_nothing() {
        let (mut a, mut b) = pair();
        let _skipped = a.seal(&body("skipped"), AD).unwrap();
        let m = a.seal(&body("hello"), AD).unwrap();
        let before = b.to_bytes();
        let mut cases = Vec::new();
        for i in [0, 31] {
            let mut t = m.clone();
            t.header.dh[i] ^= 1;
            cases.push(t);
        }
        for (pn, n) in [(1, 1), (0, 0), (0, 2), (0, 5000)] {
            let mut t = m.clone();
            t.header.pn = pn;
            t.header.n = n;
            cases.push(t);
        }
        for i in [0, 100, 175] {
            let mut t = m.clone();
            t.ciphertext[i] ^= 0x80;
            cases.push(t);
        }
        let mut t = m.clone();
        t.tag[31] ^= 1;
        cases.push(t);
        let mut t = m.clone();
        t.ciphertext.truncate(160);
        cases.push(t);
        let mut t = m.clone();
        t.ciphertext.push(0);
        cases.push(t);
        for (i, t) in cases.iter().enumerate() {
            assert!(open(&mut b, t).is_err(), "case {i}");
            assert_eq!(*b.to_bytes(), *before, "case {i} changed the state");
        }
        assert!(b.open(&m.header, &m.ciphertext, &m.tag, b"other ad").is_err());
        assert_eq!(*b.to_bytes(), *before);
        assert_eq!(*open(&mut b, &m).unwrap(), body("hello"));
        // A skipped key survives a failed attempt and opens its message later.
        assert!(!b.skipped.is_empty());
    }

    #[test]
    fn low_order_ratchet_keys_are_refused() {
        let sk = [9u8; 32];
        assert!(Ratchet::initiator(&sk, &[0; 32]).is_err());
        let (mut a, mut b) = pair();
        let m = a.seal(&body("x"), AD).unwrap();
        let mut one = [0u8; 32];
        one[0] = 1;
        for low in [[0u8; 32], one] {
            let before = b.to_bytes();
            let h = Header { dh: low, ..m.header };
            assert!(b.open(&h, &m.ciphertext, &m.tag, AD).is_err());
            assert_eq!(*b.to_bytes(), *before);
        }
    }

    #[test]
    fn skip_bounds_hold() {
        let (mut a, mut b) = pair();
        let first = a.seal(&body("first"), AD).unwrap();
        for _ in 0..MAX_SKIP {
            a.seal(&body("lost"), AD).unwrap();
        }
        // Message number MAX_SKIP + 1 would skip MAX_SKIP + 1 keys from 0: refused.
        let too_far = a.seal(&body("far"), AD).unwrap();
        assert_eq!(too_far.header.n, MAX_SKIP + 1);
        assert!(open(&mut b, &too_far).is_err());
        assert_eq!(b.skipped.len(), 0);
        // Opening `first` then `too_far` skips exactly MAX_SKIP: allowed.
        assert_eq!(*open(&mut b, &first).unwrap(), body("first"));
        assert_eq!(*open(&mut b, &too_far).unwrap(), body("far"));
        assert_eq!(b.skipped.len(), MAX_SKIPPED_KEYS);
        // One more skipped key evicts the oldest (message 1).
        let m = a.seal(&body("m"), AD).unwrap();
        let after = a.seal(&body("after"), AD).unwrap();
        assert_eq!(*open(&mut b, &after).unwrap(), body("after"));
        assert_eq!(b.skipped.len(), MAX_SKIPPED_KEYS);
        assert_eq!(b.skipped.front().map(|s| s.n), Some(2));
        assert_eq!(*open(&mut b, &m).unwrap(), body("m"));
        assert_eq!(b.skipped.len(), MAX_SKIPPED_KEYS - 1);
        let saved = b.to_bytes();
        assert_eq!(saved.len(), 2 + 64 + 96 + 12 + 2 + (MAX_SKIPPED_KEYS - 1) * SKIPPED_LEN);
    }

    #[test]
    fn bodies_must_be_whole_blocks() {
        let (mut a, _) = pair();
        for len in [0, 1, 15, 17] {
            assert!(a.seal(&vec![0; len], AD).is_err(), "len {len}");
        }
        assert!(!a.sent_any());
        assert!(a.seal(&[0; 16], AD).is_ok());
    }

    #[test]
    fn saved_state_round_trips() {
        let (mut a, mut b) = pair();
        let m0 = a.seal(&body("m0"), AD).unwrap();
        let m1 = a.seal(&body("m1"), AD).unwrap();
        for r in [&a, &b] {
            assert_eq!(*Ratchet::from_bytes(&r.to_bytes()).unwrap().to_bytes(), *r.to_bytes());
        }
        open(&mut b, &m1).unwrap();
        let mut b2 = Ratchet::from_bytes(&b.to_bytes()).unwrap();
        assert_eq!(*b2.to_bytes(), *b.to_bytes());
        assert_eq!(*open(&mut b2, &m0).unwrap(), body("m0"));
        assert!(open(&mut b2, &m1).is_err());
        let r = b2.seal(&body("r"), AD).unwrap();
        let mut a2 = Ratchet::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(*open(&mut a2, &r).unwrap(), body("r"));
        assert!(a2.sent_any() && a2.received_any());
    }

    #[test]
    fn garbage_and_truncated_state_is_refused_without_panic() {
        let (mut a, mut b) = pair();
        a.seal(&body("lost"), AD).unwrap();
        let m = a.seal(&body("m"), AD).unwrap();
        open(&mut b, &m).unwrap();
        let saved = b.to_bytes();
        for cut in 0..saved.len() {
            assert!(Ratchet::from_bytes(&saved[..cut]).is_err(), "cut {cut}");
        }
        let mut long = saved.to_vec();
        long.push(0);
        assert!(Ratchet::from_bytes(&long).is_err(), "trailing byte");
        let mut v = saved.to_vec();
        v[0] = 2;
        assert!(Ratchet::from_bytes(&v).is_err(), "version");
        for flags in [0x20, 0x80, F_CKR] {
            let mut v = saved.to_vec();
            v[1] = flags;
            assert!(Ratchet::from_bytes(&v).is_err(), "flags {flags:#x}");
        }
        // A count above the bound, or one the length does not match.
        let at = saved.len() - SKIPPED_LEN - 2;
        for count in [0u16, 2, 1001, u16::MAX] {
            let mut v = saved.to_vec();
            v[at..at + 2].copy_from_slice(&count.to_be_bytes());
            assert!(Ratchet::from_bytes(&v).is_err(), "count {count}");
        }
        // Pseudo-random garbage of every length up to a few hundred bytes.
        let mut x = 0x1234_5678u32;
        for len in 0..400 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = Ratchet::from_bytes(&v);
        }
    }

    #[test]
    fn header_round_trips() {
        let h = Header { dh: [7; 32], pn: 0x01020304, n: 0xa0b0c0d0 };
        let b = h.to_bytes();
        assert_eq!(&b[32..], &[1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0]);
        assert_eq!(Header::from_bytes(&b), Ok(h));
        assert!(Header::from_bytes(&b[..39]).is_err());
        assert!(Header::from_bytes(&[0; 41]).is_err());
    }
}
