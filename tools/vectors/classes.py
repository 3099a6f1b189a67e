#!/usr/bin/env python3
"""Computes tests/vectors/classes.txt independently of the Rust code, from
docs/PROTOCOL.md §6 (room messages), §7 (direct messages: msg_ad, body, tag)
and §8 (size classes): for each class s, m, l, x, one room message and the
first DM of a Double Ratchet session.

Primitives come from the `cryptography` package (X25519, AES-128-CBC, HKDF)
and the standard library (HMAC-SHA256), through tools/vectors/ratchet.py,
whose X3DH and Double Ratchet functions this reuses; the room message, the
body, msg_ad and the DM's keys are written out here (the DM is also sealed
by ratchet.py's State and the two must agree). Run from anywhere:

    python3 tools/vectors/classes.py            # writes tests/vectors/classes.txt
    python3 tools/vectors/classes.py --check    # compares with the file instead
"""

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ratchet as r  # noqa: E402  (tools/vectors/ratchet.py)

# --- size classes (PROTOCOL.md §8) -------------------------------------------

CLASSES = [("s", 176), ("m", 1040), ("l", 4112), ("x", 16400)]
TEXT_MAX = 16384


def class_of(text: bytes) -> str:
    """The smallest class whose body holds u16 length || text."""
    assert len(text) <= TEXT_MAX
    return next(letter for letter, size in CLASSES if size >= len(text) + 2)


def body(text: bytes) -> bytes:
    """u16 length || text || zeros, to the body size of the text's class."""
    size = dict(CLASSES)[class_of(text)]
    b = struct.pack(">H", len(text)) + text
    return b + b"\0" * (size - len(b))


def repeat(pattern: str, n: int) -> bytes:
    """`pattern` (ASCII) repeated and cut to exactly n bytes."""
    p = pattern.encode("ascii")
    assert p and p == p.strip(), "no leading or trailing whitespace (the file format trims it)"
    return (p * (n // len(p) + 1))[:n]


def material(start: int, n: int) -> bytes:
    return bytes((start + i) % 256 for i in range(n))


# --- room messages (PROTOCOL.md §6, "Messages") -------------------------------

ROOM_MAC = b"sotto/v1 room message\0"
ROOM_SIGN = b"sotto/v1 room signature\0"


def room_ctx(name: str, sender_uid: int, msg_id: int, sent_time: int) -> bytes:
    n = name.encode("ascii")
    assert 1 <= len(n) <= 32 and all(c in b"abcdefghijklmnopqrstuvwxyz0123456789_-" for c in n)
    return bytes([len(n)]) + n + r.u64(sender_uid) + r.u64(msg_id) + r.u64(sent_time)


# (class, room, sender_uid, msg_id, sent_time, content material start, iv start, text pattern, text length)
ROOMS = [
    ("s", "lobby", 0x0101, 1, 1764850000000, 0x00, 0x30, "room/s: the quick brown fox;", 174),
    ("m", "general-chat", 0x0202, 2, 1764850000001, 0x40, 0x70, "room/m: jumps over the lazy dog|", 1038),
    ("l", "r_42", 0x0303, 0xFFFFFFFF, 1764850000002, 0x80, 0xB0, "room/l: 0123456789abcdef~", 4110),
    (
        "x",
        "abcdefghijklmnopqrstuvwxyz012345",
        0xFFFFFFFFFFFFFFFE,
        0x0123456789ABCDEF,
        1764850000003,
        0xC0,
        0xF0,
        "room/x: sotto size classes, the largest text.",
        TEXT_MAX,
    ),
]


def room_vector(cls, name, sender_uid, msg_id, sent_time, km_start, iv_start, pattern, n):
    content = material(km_start, 48)
    enc, mac = content[:16], content[16:]
    iv = material(iv_start, 16)
    text = repeat(pattern, n)
    assert class_of(text) == cls
    b = body(text)
    ct = r.cbc_encrypt(enc, iv, b)
    assert r.cbc_decrypt(enc, iv, ct) == b
    ctx = room_ctx(name, sender_uid, msg_id, sent_time)
    tag = r.hmac(mac, ROOM_MAC + ctx + iv + ct)
    signed = ROOM_SIGN + ctx + iv + ct + tag
    return [
        ("kind", "room"),
        ("class", cls),
        ("room", name),
        ("sender_uid", r.u64(sender_uid).hex()),
        ("msg_id", r.u64(msg_id).hex()),
        ("sent_time", r.u64(sent_time).hex()),
        ("content", content.hex()),
        ("enc", enc.hex()),
        ("mac", mac.hex()),
        ("iv", iv.hex()),
        ("text_pattern", pattern),
        ("text_len", str(n)),
        ("body", b.hex()),
        ("ciphertext", ct.hex()),
        ("tag", tag.hex()),
        ("signed_bytes", signed.hex()),
    ]


# --- direct messages (PROTOCOL.md §7, "Double Ratchet" and "Messages") --------

DM_MAC = b"sotto/v2 dm message\0"


def msg_ad(session_ad, sender_uid, recipient_uid, dm_id, sent_time, prekey, spk_id, opk_id, ek):
    m = session_ad + r.u64(sender_uid) + r.u64(recipient_uid) + r.u64(dm_id) + r.u64(sent_time)
    m += bytes([prekey]) + r.u32(spk_id) + r.u32(opk_id) + ek
    assert len(m) == 169
    return m


# (class, initiator's first ratchet secret start, dm_id, sent_time, text pattern, text length)
# The texts sit at the bottom of m, l and x (one byte past the class below).
DMS = [
    ("s", 0x11, 0x1111111111111111, 1764850001000, "dm/s: hello bob, alice here.", 28),
    ("m", 0x21, 0x2222222222222222, 1764850001001, "dm/m: one byte past class s;", 175),
    ("l", 0x31, 0x3333333333333333, 1764850001002, "dm/l: one byte past class m+", 1039),
    ("x", 0x41, 0xFFFFFFFFFFFFFFFF, 1764850001003, "dm/x: one byte past class l@", 4111),
]


def dm_vector(session, cls, dr_start, dm_id, sent_time, pattern, n):
    sk, ad = session["sk"], session["ad"]
    spk_pub, ek = r.pub(r.SPK_B), r.pub(r.EK_A)
    a_r = material(dr_start, 32)
    text = repeat(pattern, n)
    assert class_of(text) == cls
    b = body(text)
    mad = msg_ad(ad, r.A_UID, r.B_UID, dm_id, sent_time, 1, r.SPK_ID, r.OPK_ID, ek)

    # The first message of the initiator, written out (PROTOCOL.md §7):
    # RK, CKs = KDF_RK(SK, X25519(DHs, SPK_B)); CKs, mk = KDF_CK(CKs); keys(mk).
    okm = r.hkdf(sk, r.dh(a_r, spk_pub), b"sotto/v2 ratchet root\0", 64)
    ck = okm[32:]
    mk = r.hmac(ck, b"\x01")
    keys = r.hkdf(b"\0" * 32, mk, b"sotto/v2 message keys\0", 64)
    aes, mac, iv = keys[:16], keys[16:48], keys[48:]
    header = r.pub(a_r) + r.u32(0) + r.u32(0)
    ct = r.cbc_encrypt(aes, iv, b)
    tag = r.hmac(mac, DM_MAC + mad + header + ct)

    # ratchet.py's Double Ratchet agrees, and the responder opens it.
    a = r.State.init_alice(sk, spk_pub, a_r)
    assert a.encrypt(b, mad) == (header, ct, tag)
    assert a.trace == dict(chain_key=ck, message_key=mk, aes_key=aes, mac_key=mac, iv=iv)
    bob = r.State.init_bob(sk, r.SPK_B)
    assert bob.decrypt(header, ct, tag, mad, lambda: r.pattern(0xEE)) == b

    return [
        ("kind", "dm"),
        ("class", cls),
        ("deployment_id", r.DEPLOYMENT_ID.hex()),
        ("initiator_uid", r.u64(r.A_UID).hex()),
        ("ik_a_pub", r.pub(r.IK_A).hex()),
        ("responder_uid", r.u64(r.B_UID).hex()),
        ("ik_b_pub", r.pub(r.IK_B).hex()),
        ("session_ad", ad.hex()),
        ("sk", sk.hex()),
        ("spk_b_secret", r.SPK_B.hex()),
        ("spk_b_pub", spk_pub.hex()),
        ("a_ratchet_secret", a_r.hex()),
        ("sender_uid", r.u64(r.A_UID).hex()),
        ("recipient_uid", r.u64(r.B_UID).hex()),
        ("dm_id", r.u64(dm_id).hex()),
        ("sent_time", r.u64(sent_time).hex()),
        ("prekey", "01"),
        ("spk_id", r.u32(r.SPK_ID).hex()),
        ("opk_id", r.u32(r.OPK_ID).hex()),
        ("ek", ek.hex()),
        ("msg_ad", mad.hex()),
        ("text_pattern", pattern),
        ("text_len", str(n)),
        ("body", b.hex()),
        ("header", header.hex()),
        ("chain_key", ck.hex()),
        ("mk", mk.hex()),
        ("aes", aes.hex()),
        ("mac", mac.hex()),
        ("iv", iv.hex()),
        ("ciphertext", ct.hex()),
        ("tag", tag.hex()),
    ]


HEADER = """\
# A room message and a direct message in each size class (PROTOCOL.md §6,
# §7 "Messages", §8; sotto::room::{seal_with_iv, signed_bytes},
# sotto::dm::ad, sotto::ratchet::Ratchet::{initiator_with, seal_traced},
# sotto::body::pack).
# source: our own construction; computed independently of the Rust code by
# tools/vectors/classes.py (Python `cryptography` for X25519, HKDF and
# AES-CBC, the standard library's hmac; X3DH and Double Ratchet functions
# from tools/vectors/ratchet.py) and frozen here.
#
# Vectors 0-3 are room messages (kind = room), classes s, m, l, x; vectors
# 4-7 are DMs (kind = dm), classes s, m, l, x.
#
# The text of each message is text_pattern (ASCII) repeated and cut to
# text_len bytes. Room texts are the longest of their class (174, 1038,
# 4110, 16384 = the longest text of all); DM texts of m, l and x are one byte
# longer than class s, m and l hold (175, 1039, 4111).
#
#   body        = len(text) (u16) || text || zeros, to the smallest class holding it:
#                 176 (s), 1040 (m), 4112 (l) or 16400 (x) bytes
#
# Room message (uids, ids and times are u64, big-endian):
#   content     = 48 bytes of key material: enc = content[0..16], mac = content[16..48]
#   ctx         = u8 len(room) || room || sender_uid || msg_id || sent_time
#   ciphertext  = AES-128-CBC(enc, iv, body), no padding
#   tag         = HMAC-SHA256(mac, "sotto/v1 room message\\0" || ctx || iv || ciphertext)
#   signed_bytes= "sotto/v1 room signature\\0" || ctx || iv || ciphertext || tag
#                 (what the sender's RSA-PSS key signs; the signature is randomised: no vector)
#
# DM: the first message the initiator A seals on a session started by
# x3dh.txt vector 0 (sk, session_ad, spk_id, opk_id, ek are that agreement's),
# with a different first ratchet secret of A per class:
#   session_ad  = deployment_id || initiator_uid || ik_a_pub || responder_uid || ik_b_pub
#   RK, CKs     = KDF_RK(sk, X25519(a_ratchet_secret, spk_b_pub))
#                 = HKDF-SHA256(salt = sk, ikm = dh, info = "sotto/v2 ratchet root\\0"), 64 bytes
#   chain_key   = CKs;  mk = HMAC-SHA256(chain_key, 01)
#   aes || mac || iv = HKDF-SHA256(salt = 32 zero bytes, ikm = mk,
#                 info = "sotto/v2 message keys\\0"), 16 + 32 + 16 bytes
#   header      = X25519 public of a_ratchet_secret (32) || pn = 0 (u32) || n = 0 (u32)
#   msg_ad      = session_ad (96) || sender_uid || recipient_uid || dm_id || sent_time
#                 || prekey (u8) || spk_id (u32) || opk_id (u32) || ek (32), 169 bytes
#   ciphertext  = AES-128-CBC(aes, iv, body), no padding
#   tag         = HMAC-SHA256(mac, "sotto/v2 dm message\\0" || msg_ad || header || ciphertext)
# spk_b_secret is given so the responder can open it.
"""


def render() -> str:
    x3, ad = r.x3dh_vectors()
    v0 = dict(x3[0])
    assert "opk_id" in v0
    session = {"sk": bytes.fromhex(v0["sk"]), "ad": ad}
    vectors = [room_vector(*row) for row in ROOMS] + [dm_vector(session, *row) for row in DMS]
    return r.render(HEADER, vectors)


def main():
    r.write_or_check({Path(__file__).resolve().parents[2] / "tests" / "vectors" / "classes.txt": render()})

if __name__ == "__main__":
    main()
