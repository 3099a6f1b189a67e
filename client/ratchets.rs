//! Local-state layer: the Double Ratchet sessions with each contact and this
//! user's prekey secrets (PROTOCOL.md §7, DESIGN §7), sealed in
//! `<home>/<server_tag>/<user>/sessions` (see `vault`).
//!
//! Invariants:
//! - The file is saved after the received messages it opened are recorded
//!   (the inbox) and before any message sealed with it leaves or is kept in
//!   the outbox (`App::persist` saves inbox, sessions, outbox in that order):
//!   a crash never makes the client seal a second text with one message key,
//!   and a message key a crash left behind is spent when that message comes
//!   again (the inbox knows it as shown).
//! - A one-time prekey secret is deleted once a session was made with it; a
//!   signed prekey secret is kept [`SPK_KEEP_MS`] after its successor was
//!   published (for late first messages), then deleted. Every count is
//!   bounded: [`OPK_MAX`] one-time prekeys, [`SPK_MAX`] signed prekeys,
//!   [`PEERS_MAX`] peers of [`SESSIONS_MAX`] sessions each (the most recently
//!   used first; the least recently used is dropped beyond).
//!
//! Plaintext: `u32 next_opk_id || u8 n × (u32 id || secret (32) || u64
//! created_ms || u64 retired_ms) || u32 n × (u32 id || secret (32)) || u32 n ×
//! (u64 uid || u8 n × session)`, a session being `u8 initiator || u8
//! has_prekey || u32 spk_id || u32 opk_id || ek (32) || ad (96) || u32 len ||
//! ratchet state (`Ratchet::to_bytes`)`.

use std::collections::BTreeMap;

use sotto::crypto;
use sotto::dm::Prekey;
use sotto::ratchet::Ratchet;
use sotto::x3dh;
use zeroize::Zeroizing;

use crate::keystore::KeyFileError;
use crate::vault::{self, Kind, Reader};

/// The sessions file.
pub const KIND: Kind = Kind { file: "sessions", magic: *b"SOTD", name: "sessions", id: 7, what: "DM sessions" };

/// A signed prekey is replaced after a week.
pub const SPK_ROTATE_MS: u64 = 7 * 24 * 3600 * 1000;
/// A replaced signed prekey's secret is kept this long (first messages sent
/// just before the rotation, waiting in an offline mailbox).
pub const SPK_KEEP_MS: u64 = 30 * 24 * 3600 * 1000;
/// One-time prekeys uploaded at a time (and kept on the server, at most).
pub const OPK_BATCH: usize = 100;
/// A refill is uploaded when the server has fewer than this many left.
pub const OPK_LOW: u16 = 20;
/// One-time prekey secrets kept at most (the server's and those handed out).
pub const OPK_MAX: usize = 1000;
/// Signed prekey secrets kept at most.
pub const SPK_MAX: usize = 8;
/// Sessions per peer (simultaneous starts, a restarted peer).
pub const SESSIONS_MAX: usize = 4;
/// Peers with sessions.
pub const PEERS_MAX: usize = 100_000;
/// The largest ratchet state read (a thousand skipped keys and then some).
const STATE_MAX: usize = 128 * 1024;

/// One of this user's signed prekeys.
pub struct Spk {
    /// Its id (increasing, from 1).
    pub id: u32,
    /// The X25519 secret.
    pub secret: Zeroizing<[u8; 32]>,
    /// When it was made, Unix ms.
    pub created_ms: u64,
    /// When its successor was published (0 while it is the current one).
    pub retired_ms: u64,
}

/// One Double Ratchet session with a peer.
pub struct PeerSession {
    /// The ratchet.
    pub ratchet: Ratchet,
    /// `x3dh::session_ad` (initiator first).
    pub ad: Vec<u8>,
    /// This side started it (X3DH initiator).
    pub initiator: bool,
    /// The X3DH inputs: sent by the initiator until it has received an
    /// answer; for a responder, what identifies the session's prekey messages.
    pub prekey: Prekey,
}

/// Everything in the sessions file.
#[derive(Default)]
pub struct Sessions {
    spks: Vec<Spk>,
    opks: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    next_opk: u32,
    peers: BTreeMap<u64, Vec<PeerSession>>,
    dirty: bool,
}

impl Sessions {
    /// Empty.
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// True once after every change (then the caller saves).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Marks a change made through a `&mut` handed out (a ratchet step).
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// The signed prekey published now.
    pub fn current_spk(&self) -> Option<&Spk> {
        self.spks.last().filter(|s| s.retired_ms == 0)
    }

    /// The secret of signed prekey `id`, current or kept.
    pub fn spk_secret(&self, id: u32) -> Option<&Zeroizing<[u8; 32]>> {
        self.spks.iter().find(|s| s.id == id).map(|s| &s.secret)
    }

    /// A new signed prekey (the current one is retired): its id and public key.
    pub fn rotate_spk(&mut self, now_ms: u64) -> (u32, [u8; 32]) {
        let id = self.spks.last().map_or(1, |s| s.id.saturating_add(1));
        for s in self.spks.iter_mut().filter(|s| s.retired_ms == 0) {
            s.retired_ms = now_ms;
        }
        let secret = Zeroizing::new(crypto::random::<32>());
        let public = x3dh::public_key(&secret);
        self.spks.push(Spk { id, secret, created_ms: now_ms, retired_ms: 0 });
        while self.spks.len() > SPK_MAX {
            self.spks.remove(0);
        }
        self.dirty = true;
        (id, public)
    }

    /// Deletes the signed prekeys retired more than [`SPK_KEEP_MS`] ago.
    pub fn expire(&mut self, now_ms: u64) {
        let before = self.spks.len();
        self.spks.retain(|s| s.retired_ms == 0 || now_ms.saturating_sub(s.retired_ms) < SPK_KEEP_MS);
        self.dirty |= self.spks.len() != before;
    }

    /// `n` new one-time prekeys: ids and public keys (the oldest secrets are
    /// dropped beyond [`OPK_MAX`]).
    pub fn new_opks(&mut self, n: usize) -> Vec<(u32, [u8; 32])> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            self.next_opk = self.next_opk.checked_add(1).unwrap_or(1);
            let id = self.next_opk;
            let secret = Zeroizing::new(crypto::random::<32>());
            out.push((id, x3dh::public_key(&secret)));
            self.opks.insert(id, secret);
        }
        while self.opks.len() > OPK_MAX {
            self.opks.pop_first();
        }
        self.dirty |= n > 0;
        out
    }

    /// The secret of one-time prekey `id`, if it is still here.
    pub fn opk_secret(&self, id: u32) -> Option<&Zeroizing<[u8; 32]>> {
        self.opks.get(&id)
    }

    /// Deletes one-time prekey `id` (a session was made with it).
    pub fn spend_opk(&mut self, id: u32) {
        self.dirty |= self.opks.remove(&id).is_some();
    }

    /// The sessions with `uid`, the most recently used first.
    pub fn with(&self, uid: u64) -> &[PeerSession] {
        self.peers.get(&uid).map_or(&[], Vec::as_slice)
    }

    /// The sessions with `uid`, mutably (call [`Sessions::touch`] after a change).
    pub fn with_mut(&mut self, uid: u64) -> Option<&mut Vec<PeerSession>> {
        self.peers.get_mut(&uid)
    }

    /// Makes session `i` with `uid` the one used to send (it just opened a message).
    pub fn promote(&mut self, uid: u64, i: usize) {
        if let Some(list) = self.peers.get_mut(&uid) {
            if i > 0 && i < list.len() {
                let s = list.remove(i);
                list.insert(0, s);
            }
        }
        self.dirty = true;
    }

    /// Adds a new session with `uid`, first (the least recently used goes beyond [`SESSIONS_MAX`]).
    pub fn add(&mut self, uid: u64, s: PeerSession) {
        if !self.peers.contains_key(&uid) && self.peers.len() >= PEERS_MAX {
            // Bounded: a peer with no session now starts a new one when it next writes.
            if let Some(k) = self.peers.keys().next().copied() {
                self.peers.remove(&k);
            }
        }
        let list = self.peers.entry(uid).or_default();
        list.insert(0, s);
        list.truncate(SESSIONS_MAX);
        self.dirty = true;
    }

    /// Forgets every session with `uid` (its keys changed and were trusted).
    pub fn forget(&mut self, uid: u64) {
        self.dirty |= self.peers.remove(&uid).is_some();
    }

    /// The plaintext of the file.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.extend_from_slice(&self.next_opk.to_be_bytes());
        out.push(self.spks.len() as u8);
        for s in &self.spks {
            out.extend_from_slice(&s.id.to_be_bytes());
            out.extend_from_slice(&s.secret[..]);
            out.extend_from_slice(&s.created_ms.to_be_bytes());
            out.extend_from_slice(&s.retired_ms.to_be_bytes());
        }
        vault::put_count(&mut out, self.opks.len());
        for (id, secret) in &self.opks {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&secret[..]);
        }
        vault::put_count(&mut out, self.peers.len());
        for (uid, list) in &self.peers {
            out.extend_from_slice(&uid.to_be_bytes());
            out.push(list.len() as u8);
            for s in list {
                out.push(u8::from(s.initiator));
                out.push(1);
                out.extend_from_slice(&s.prekey.spk_id.to_be_bytes());
                out.extend_from_slice(&s.prekey.opk_id.to_be_bytes());
                out.extend_from_slice(&s.prekey.ek);
                out.extend_from_slice(&s.ad);
                let state = s.ratchet.to_bytes();
                vault::put_count(&mut out, state.len());
                out.extend_from_slice(&state);
            }
        }
        out
    }

    /// Parses the plaintext; anything malformed refuses the whole file.
    pub fn decode(plain: &[u8]) -> Result<Sessions, KeyFileError> {
        let bad = |_| KeyFileError::Damaged;
        let mut r = Reader::new(plain);
        let next_opk = r.u32()?;
        let mut spks = Vec::new();
        let n = r.u8()?;
        if usize::from(n) > SPK_MAX {
            return Err(KeyFileError::Damaged);
        }
        for _ in 0..n {
            let id = r.u32()?;
            let secret = Zeroizing::new(r.array::<32>()?);
            spks.push(Spk { id, secret, created_ms: r.u64()?, retired_ms: r.u64()? });
        }
        let mut opks = BTreeMap::new();
        let n = r.u32()? as usize;
        if n > OPK_MAX {
            return Err(KeyFileError::Damaged);
        }
        for _ in 0..n {
            let id = r.u32()?;
            opks.insert(id, Zeroizing::new(r.array::<32>()?));
        }
        let mut peers = BTreeMap::new();
        let n = r.u32()? as usize;
        if n > PEERS_MAX {
            return Err(KeyFileError::Damaged);
        }
        for _ in 0..n {
            let uid = r.u64()?;
            let count = usize::from(r.u8()?);
            if count > SESSIONS_MAX {
                return Err(KeyFileError::Damaged);
            }
            let mut list = Vec::with_capacity(count);
            for _ in 0..count {
                let initiator = r.u8()? == 1;
                let _has_prekey = r.u8()?;
                let prekey = Prekey { spk_id: r.u32()?, opk_id: r.u32()?, ek: r.array::<32>()? };
                let ad = r.slice(x3dh::AD_LEN)?.to_vec();
                let len = r.u32()? as usize;
                if len > STATE_MAX {
                    return Err(KeyFileError::Damaged);
                }
                let ratchet = Ratchet::from_bytes(r.slice(len)?).map_err(bad)?;
                list.push(PeerSession { ratchet, ad, initiator, prekey });
            }
            peers.insert(uid, list);
        }
        r.end()?;
        Ok(Sessions { spks, opks, next_opk, peers, dirty: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(seed: u8) -> PeerSession {
        let ratchet = Ratchet::responder(&[seed; 32], &[seed.wrapping_add(1); 32]);
        let prekey = Prekey { spk_id: 1, opk_id: u32::from(seed), ek: [seed; 32] };
        PeerSession { ratchet, ad: vec![seed; x3dh::AD_LEN], initiator: seed % 2 == 0, prekey }
    }

    #[test]
    fn prekeys_rotate_expire_and_are_spent_once() {
        let mut s = Sessions::new();
        assert!(s.current_spk().is_none());
        let (a, _) = s.rotate_spk(1000);
        let (b, b_pub) = s.rotate_spk(2000);
        assert_eq!((a, b, s.current_spk().map(|k| k.id)), (1, 2, Some(2)));
        assert_eq!(x3dh::public_key(s.spk_secret(2).unwrap()), b_pub);
        assert!(s.spk_secret(1).is_some(), "kept for late first messages");
        s.expire(2000 + SPK_KEEP_MS);
        assert!(s.spk_secret(1).is_none() && s.spk_secret(2).is_some());
        let opks = s.new_opks(3);
        assert_eq!(opks.iter().map(|o| o.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(x3dh::public_key(s.opk_secret(2).unwrap()), opks[1].1);
        s.spend_opk(2);
        assert!(s.opk_secret(2).is_none());
        s.new_opks(OPK_MAX + 5);
        assert_eq!(s.opks.len(), OPK_MAX);
        assert!(s.opk_secret(1).is_none(), "the oldest went first");
    }

    #[test]
    fn sessions_are_bounded_most_recent_first_and_roundtrip() {
        let mut s = Sessions::new();
        s.rotate_spk(5);
        s.new_opks(2);
        for seed in 0..6u8 {
            s.add(42, session(seed));
        }
        assert_eq!(s.with(42).len(), SESSIONS_MAX);
        assert_eq!(s.with(42)[0].prekey.opk_id, 5);
        s.promote(42, 2);
        assert_eq!(s.with(42)[0].prekey.opk_id, 3);
        s.add(7, session(9));
        assert!(s.take_dirty() && !s.take_dirty());
        let back = Sessions::decode(&s.encode()).unwrap();
        assert_eq!(back.encode()[..], s.encode()[..]);
        assert_eq!(back.with(42).iter().map(|p| p.prekey.opk_id).collect::<Vec<_>>(), [3, 5, 4, 2]);
        assert!(back.with(42)[0].initiator == session(3).initiator);
        s.forget(42);
        assert!(s.with(42).is_empty() && s.take_dirty());
        let plain = back.encode();
        for cut in [1, 10, plain.len() / 2, plain.len() - 1] {
            assert!(Sessions::decode(&plain[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = plain.to_vec();
        longer.push(0);
        assert!(Sessions::decode(&longer).is_err());
    }
}
