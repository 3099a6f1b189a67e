#!/usr/bin/env python3
"""Computes tests/vectors/x3dh.txt and tests/vectors/ratchet.txt independently
of the Rust code, from docs/PROTOCOL.md §7 and Signal's Double Ratchet
specification (https://signal.org/docs/specifications/doubleratchet/).

Primitives come from the `cryptography` package (X25519, AES-128-CBC, HKDF);
HMAC-SHA256 from Python's standard library; everything else is written out
here. Run from the repository root:

    python3 tools/vectors/ratchet.py            # writes both files
    python3 tools/vectors/ratchet.py --check    # compares with the files instead
"""

import copy
import hashlib
import hmac as std_hmac
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# --- primitives -------------------------------------------------------------


def pub(secret: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def dh(secret: bytes, public: bytes) -> bytes:
    # `exchange` raises on an all-zero (non-contributory) output.
    return X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(public))


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac(key: bytes, data: bytes) -> bytes:
    return std_hmac.new(key, data, hashlib.sha256).digest()


def cbc_encrypt(key: bytes, iv: bytes, pt: bytes) -> bytes:
    assert len(pt) % 16 == 0 and pt
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return e.update(pt) + e.finalize()


def cbc_decrypt(key: bytes, iv: bytes, ct: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return d.update(ct) + d.finalize()


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def pattern(start: int) -> bytes:
    """32 bytes start, start+1, ... (mod 256)."""
    return bytes((start + i) % 256 for i in range(32))


# --- X3DH (docs/PROTOCOL.md §7) ----------------------------------------


def spk_binding(deployment_id, uid, spk_id, spk_pub):
    return b"sotto/v2 signed prekey\0" + deployment_id + u64(uid) + u32(spk_id) + spk_pub


def session_ad(deployment_id, a_uid, a_ik, b_uid, b_ik):
    return deployment_id + u64(a_uid) + a_ik + u64(b_uid) + b_ik


def x3dh_sk(dhs, ad):
    return hkdf(b"\0" * 32, b"\xff" * 32 + b"".join(dhs), b"sotto/v2 x3dh\0" + ad, 32)


# --- Double Ratchet (Signal's pseudocode, §3.3-3.5) -------------------------

MAX_SKIP = 1000


def kdf_rk(rk, dh_out):
    okm = hkdf(rk, dh_out, b"sotto/v2 ratchet root\0", 64)
    return okm[:32], okm[32:]


def kdf_ck(ck):
    return hmac(ck, b"\x02"), hmac(ck, b"\x01")


def message_keys(mk):
    okm = hkdf(b"\0" * 32, mk, b"sotto/v2 message keys\0", 64)
    return okm[:16], okm[16:48], okm[48:]


def header_bytes(dh_pub, pn, n):
    return dh_pub + u32(pn) + u32(n)


MAC_LABEL = b"sotto/v2 dm message\0"


class State:
    def __init__(self):
        self.trace = None

    @staticmethod
    def init_alice(sk, bob_spk_pub, dhs_secret):
        s = State()
        s.DHs = dhs_secret
        s.DHr = bob_spk_pub
        s.RK, s.CKs = kdf_rk(sk, dh(s.DHs, s.DHr))
        s.CKr = None
        s.Ns = s.Nr = s.PN = 0
        s.MKSKIPPED = {}
        return s

    @staticmethod
    def init_bob(sk, spk_secret):
        s = State()
        s.DHs = spk_secret
        s.DHr = None
        s.RK = sk
        s.CKs = s.CKr = None
        s.Ns = s.Nr = s.PN = 0
        s.MKSKIPPED = {}
        return s

    def encrypt(self, body, ad):
        ck = self.CKs
        self.CKs, mk = kdf_ck(ck)
        header = header_bytes(pub(self.DHs), self.PN, self.Ns)
        self.Ns += 1
        aes, mac, iv = message_keys(mk)
        ct = cbc_encrypt(aes, iv, body)
        tag = hmac(mac, MAC_LABEL + ad + header + ct)
        self.trace = dict(chain_key=ck, message_key=mk, aes_key=aes, mac_key=mac, iv=iv)
        return header, ct, tag

    def decrypt(self, header, ct, tag, ad, generate):
        dh_pub, pn, n = header[:32], struct.unpack(">I", header[32:36])[0], struct.unpack(">I", header[36:40])[0]
        if (dh_pub, n) in self.MKSKIPPED:
            mk = self.MKSKIPPED.pop((dh_pub, n))
            return self._decrypt(mk, header, ct, tag, ad)
        if dh_pub != self.DHr:
            self._skip(pn)
            self._dh_ratchet(dh_pub, generate)
        self._skip(n)
        self.CKr, mk = kdf_ck(self.CKr)
        self.Nr += 1
        return self._decrypt(mk, header, ct, tag, ad)

    def _decrypt(self, mk, header, ct, tag, ad):
        aes, mac, iv = message_keys(mk)
        if not std_hmac.compare_digest(hmac(mac, MAC_LABEL + ad + header + ct), tag):
            raise ValueError("bad tag")
        return cbc_decrypt(aes, iv, ct)

    def _skip(self, until):
        if self.Nr + MAX_SKIP < until:
            raise ValueError("too many skipped")
        if self.CKr is not None:
            while self.Nr < until:
                self.CKr, mk = kdf_ck(self.CKr)
                self.MKSKIPPED[(self.DHr, self.Nr)] = mk
                self.Nr += 1

    def _dh_ratchet(self, dh_pub, generate):
        self.PN = self.Ns
        self.Ns = 0
        self.Nr = 0
        self.DHr = dh_pub
        self.RK, self.CKr = kdf_rk(self.RK, dh(self.DHs, self.DHr))
        self.DHs = generate()
        self.RK, self.CKs = kdf_rk(self.RK, dh(self.DHs, self.DHr))


def body(text: str) -> bytes:
    """Protocol-2 body: u16 length || UTF-8 text || zero fill to 176 bytes."""
    t = text.encode()
    assert len(t) <= 174
    return struct.pack(">H", len(t)) + t + b"\0" * (174 - len(t))


# --- the vectors --------------------------------------------------------------

DEPLOYMENT_ID = bytes.fromhex("cea0ae454c42910bcd51a6b8c1eecc02")
A_UID, B_UID = 0x0000000000000101, 0x0000000000000202
IK_A, IK_B = pattern(0x40), pattern(0x60)
SPK_B, OPK_B, EK_A = pattern(0x80), pattern(0xA0), pattern(0xC0)
SPK_ID, OPK_ID = 0x00000001, 0x00000002
# Ratchet key secrets, in the order they are generated.
A_R1, B_R1, A_R2, B_R2 = pattern(0x10), pattern(0x30), pattern(0x50), pattern(0x70)


def x3dh_vectors():
    ad = session_ad(DEPLOYMENT_ID, A_UID, pub(IK_A), B_UID, pub(IK_B))
    out = []
    for with_opk in (True, False):
        dh1, dh2, dh3 = dh(IK_A, pub(SPK_B)), dh(EK_A, pub(IK_B)), dh(EK_A, pub(SPK_B))
        # The responder's view gives the same values.
        assert (dh1, dh2, dh3) == (dh(SPK_B, pub(IK_A)), dh(IK_B, pub(EK_A)), dh(SPK_B, pub(EK_A)))
        dhs = [dh1, dh2, dh3]
        v = [
            ("deployment_id", DEPLOYMENT_ID.hex()),
            ("initiator_uid", u64(A_UID).hex()),
            ("responder_uid", u64(B_UID).hex()),
            ("ik_a_secret", IK_A.hex()),
            ("ik_a_pub", pub(IK_A).hex()),
            ("ik_b_secret", IK_B.hex()),
            ("ik_b_pub", pub(IK_B).hex()),
            ("spk_id", u32(SPK_ID).hex()),
            ("spk_b_secret", SPK_B.hex()),
            ("spk_b_pub", pub(SPK_B).hex()),
            ("spk_binding", spk_binding(DEPLOYMENT_ID, B_UID, SPK_ID, pub(SPK_B)).hex()),
        ]
        if with_opk:
            dh4 = dh(EK_A, pub(OPK_B))
            assert dh4 == dh(OPK_B, pub(EK_A))
            dhs.append(dh4)
            v += [("opk_id", u32(OPK_ID).hex()), ("opk_b_secret", OPK_B.hex()), ("opk_b_pub", pub(OPK_B).hex())]
        v += [("ek_a_secret", EK_A.hex()), ("ek_a_pub", pub(EK_A).hex()), ("ad", ad.hex())]
        v += [(f"dh{i + 1}", d.hex()) for i, d in enumerate(dhs)]
        v.append(("sk", x3dh_sk(dhs, ad).hex()))
        out.append(v)
    return out, ad


TEXTS = [
    "m0: hello bob, this is alice",
    "m1: sent second, opened first",
    "m2: hi alice, bob here",
    "m3: alice's second chain",
    "m4: and the last one",
]


def ratchet_vectors(sk: bytes, ad: bytes):
    a = State.init_alice(sk, pub(SPK_B), A_R1)
    b = State.init_bob(sk, SPK_B)
    sealed = {}
    fields = {i: [] for i in range(5)}

    def seal(i, side, secret):
        st = a if side == "a" else b
        assert st.DHs == secret
        h, ct, tag = st.encrypt(body(TEXTS[i]), ad)
        sealed[i] = (h, ct, tag)
        t = st.trace
        fields[i] += [
            ("message", str(i)),
            ("from", side),
            ("sender_ratchet_secret", secret.hex()),
            ("header", h.hex()),
            ("chain_key", t["chain_key"].hex()),
            ("message_key", t["message_key"].hex()),
            ("aes_key", t["aes_key"].hex()),
            ("mac_key", t["mac_key"].hex()),
            ("iv", t["iv"].hex()),
            ("text", TEXTS[i]),
            ("body", body(TEXTS[i]).hex()),
            ("ciphertext", ct.hex()),
            ("tag", tag.hex()),
        ]

    def open_(i, side, new_secret=None):
        st = a if side == "a" else b
        used = []

        def generate():
            assert new_secret is not None, f"m{i}: unexpected DH ratchet step"
            used.append(new_secret)
            return new_secret

        h, ct, tag = sealed[i]
        assert st.decrypt(h, ct, tag, ad, generate) == body(TEXTS[i])
        assert bool(used) == (new_secret is not None), f"m{i}: expected a DH ratchet step"
        if new_secret is not None:
            fields[i].append(("receiver_ratchet_secret", new_secret.hex()))
        # A replay fails (tried on a copy: the spec discards a failed attempt's state).
        try:
            copy.deepcopy(st).decrypt(h, ct, tag, ad, lambda: pattern(0xEE))
        except (ValueError, TypeError):
            pass
        else:
            raise AssertionError(f"m{i} opened twice")

    # The schedule (tests/vectors.rs follows it too).
    seal(0, "a", A_R1)
    seal(1, "a", A_R1)
    open_(1, "b", B_R1)  # B's first DH ratchet step; m0's key is skipped
    open_(0, "b")  # from the skipped key
    seal(2, "b", B_R1)
    open_(2, "a", A_R2)
    seal(3, "a", A_R2)
    seal(4, "a", A_R2)
    open_(3, "b", B_R2)
    open_(4, "b")
    return [fields[i] for i in range(5)]


X3DH_HEADER = """\
# X3DH key agreement of protocol 2 (docs/PROTOCOL.md §7;
# sotto::x3dh::{spk_binding, session_ad, initiate_with, respond}).
# source: our own construction; computed independently by
# tools/vectors/ratchet.py (Python `cryptography` for X25519 and HKDF) and
# frozen here. Vector 0 uses a one-time prekey, vector 1 the same keys without.
# The RSA signature over spk_binding is randomised and has no vector.
#
#   spk_binding = "sotto/v2 signed prekey\\0" || deployment_id || uid (u64) || spk_id (u32) || spk_pub
#   ad          = deployment_id || initiator_uid (u64) || ik_a_pub || responder_uid (u64) || ik_b_pub
#   dh1 = X25519(ik_a, spk_b)  dh2 = X25519(ek_a, ik_b)  dh3 = X25519(ek_a, spk_b)
#   dh4 = X25519(ek_a, opk_b)  (only with a one-time prekey)
#   sk  = HKDF-SHA256(salt = 32 zero bytes, ikm = 32 bytes 0xff || dh1 || dh2 || dh3 [|| dh4],
#                     info = "sotto/v2 x3dh\\0" || ad), 32 bytes
"""

RATCHET_HEADER = """\
# The first five messages of a Double Ratchet session (docs/PROTOCOL.md §7;
# sotto::ratchet), started from x3dh.txt vector 0 (with the one-time prekey).
# source: Signal's Double Ratchet specification with our KDFs, computed
# independently by tools/vectors/ratchet.py (Python `cryptography` for X25519,
# HKDF and AES-CBC, the standard library's hmac) and frozen here.
#
# Vector 0 is the session: sk and ad from x3dh.txt; A (initiator) starts with
# ratchet secret a_ratchet_secret, B (responder) with its signed prekey.
# Vectors 1-5 are messages m0-m4 in the order they were sealed. Schedule:
#   A seals m0, m1;  B opens m1 (DH ratchet step: B's new ratchet secret is
#   m1's receiver_ratchet_secret; m0's key is skipped), then m0 (skipped key);
#   B seals m2;  A opens m2 (DH ratchet step);  A seals m3, m4;
#   B opens m3 (DH ratchet step), then m4.  Every replay is refused.
#
#   KDF_RK(rk, dh)  = HKDF-SHA256(salt = rk, ikm = dh, info = "sotto/v2 ratchet root\\0"), 64 bytes
#                     -> new rk (0..32) || chain key (32..64)
#   KDF_CK(ck)      : message_key = HMAC-SHA256(ck, 01), next ck = HMAC-SHA256(ck, 02)
#   message keys    = HKDF-SHA256(salt = 32 zero bytes, ikm = message_key,
#                     info = "sotto/v2 message keys\\0"), 64 bytes
#                     -> aes_key (16) || mac_key (32) || iv (16)
#   header          = ratchet public key (32) || pn (u32) || n (u32)
#   body            = len(text) (u16) || text (UTF-8) || zeros, 176 bytes
#   ciphertext      = AES-128-CBC(aes_key, iv, body), no padding
#   tag             = HMAC-SHA256(mac_key, "sotto/v2 dm message\\0" || ad || header || ciphertext)
# chain_key is the sending chain key the message key was derived from.
"""


def render(header: str, vectors) -> str:
    return header + "".join("\n" + "".join(f"{k} = {v}\n" for k, v in vec) for vec in vectors)


def write_or_check(files: dict) -> None:
    """Writes each path's text, or with --check compares it and exits 1 on a difference."""
    check = "--check" in sys.argv[1:]
    bad = False
    for path, text in files.items():
        if not check:
            path.write_text(text)
            print(f"wrote {path}")
        elif path.read_text() != text:
            print(f"{path}: differs", file=sys.stderr)
            bad = True
        else:
            print(f"{path}: same")
    sys.exit(1 if bad else 0)


def main():
    root = Path(__file__).resolve().parents[2] / "tests" / "vectors"
    x3, ad = x3dh_vectors()
    sk = bytes.fromhex(dict(x3[0])["sk"])
    session = [
        ("sk", sk.hex()),
        ("ad", ad.hex()),
        ("spk_b_secret", SPK_B.hex()),
        ("spk_b_pub", pub(SPK_B).hex()),
        ("a_ratchet_secret", A_R1.hex()),
        ("a_ratchet_pub", pub(A_R1).hex()),
    ]
    files = {
        "x3dh.txt": render(X3DH_HEADER, x3),
        "ratchet.txt": render(RATCHET_HEADER, [session] + ratchet_vectors(sk, ad)),
    }
    write_or_check({root / name: text for name, text in files.items()})

if __name__ == "__main__":
    main()
