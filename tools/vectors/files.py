#!/usr/bin/env python3
"""Computes tests/vectors/files.txt independently of the Rust code, from
docs/PROTOCOL.md §10 (files): the chunk keys, two chunks of one file (the
first, whole, and the last, short), and a manifest body.

Primitives come from the `cryptography` package (HKDF, AES-128-CBC) and the
standard library (HMAC-SHA256, SHA-256), through tools/vectors/ratchet.py.
Run from anywhere:

    python3 tools/vectors/files.py            # writes tests/vectors/files.txt
    python3 tools/vectors/files.py --check    # compares with the file instead
"""

import hashlib
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ratchet as r  # noqa: E402  (tools/vectors/ratchet.py)

CHUNK = 16384
KEY_INFO = b"sotto/v2 file keys"
CHUNK_LABEL = b"sotto/v2 file chunk\0"
MANIFEST_FLAG = 0x8000
MANIFEST_LEN = 8 + 8 + 4 + 4 + 32 + 32 + 1 + 255
CLASS_M = 1040

HEADER = """# File chunks and a manifest body (PROTOCOL.md §10; sotto::file::{FileKeys,
# pack_manifest}).
# source: our own construction; computed independently of the Rust code by
# tools/vectors/files.py (Python `cryptography` for HKDF and AES-CBC, the
# standard library's hmac and hashlib) and frozen here.
#
#   okm       = HKDF-SHA256(salt = file_id (u64), ikm = key, info = "sotto/v2 file keys", L = 48)
#   aes, mac  = okm[0..16], okm[16..48]
#   plain     = the chunk's bytes of the file, zero-filled to 16384
#   data      = AES-128-CBC(aes, iv, plain), no padding
#   tag       = HMAC-SHA256(mac, "sotto/v2 file chunk\\0" || file_id (u64) || index (u32)
#                                || chunk_count (u32) || iv || data)
#
# Vectors 0 and 1 (kind = chunk) are chunk 0 and chunk 2, the last, of a file
# of `size` bytes whose byte i is (i * 7 + 3) mod 256; `data_sha256` is the
# SHA-256 of the 16384 bytes of data (not written out). Vector 2 (kind =
# manifest) is the body of a manifest: u16 (0x8000 | 344) || FileManifest ||
# zeros to 1040 bytes (class m).
"""


def file_byte(i: int) -> int:
    return (i * 7 + 3) % 256


def chunk_vector(file_id: int, key: bytes, size: int, index: int, iv: bytes):
    count = -(-size // CHUNK)
    okm = r.hkdf(struct.pack(">Q", file_id), key, KEY_INFO, 48)
    aes, mac = okm[:16], okm[16:]
    start = index * CHUNK
    plain = bytes(file_byte(i) for i in range(start, min(start + CHUNK, size)))
    data = r.cbc_encrypt(aes, iv, plain + b"\0" * (CHUNK - len(plain)))
    context = struct.pack(">QII", file_id, index, count)
    tag = r.hmac(mac, CHUNK_LABEL + context + iv + data)
    return [
        ("kind", "chunk"),
        ("file_id", struct.pack(">Q", file_id).hex()),
        ("key", key.hex()),
        ("size", str(size)),
        ("chunk_count", str(count)),
        ("index", str(index)),
        ("aes", aes.hex()),
        ("mac", mac.hex()),
        ("plain_len", str(len(plain))),
        ("iv", iv.hex()),
        ("data_head", data[:32].hex()),
        ("data_sha256", hashlib.sha256(data).hexdigest()),
        ("tag", tag.hex()),
    ]


def manifest_vector(file_id: int, size: int, sha: bytes, key: bytes, name: str):
    count = -(-size // CHUNK)
    raw = name.encode("utf-8")
    manifest = struct.pack(">QQII", file_id, size, count, CHUNK) + sha + key + bytes([len(raw)]) + raw
    manifest += b"\0" * (MANIFEST_LEN - len(manifest))
    body = struct.pack(">H", MANIFEST_FLAG | MANIFEST_LEN) + manifest
    body += b"\0" * (CLASS_M - len(body))
    return [
        ("kind", "manifest"),
        ("file_id", struct.pack(">Q", file_id).hex()),
        ("size", str(size)),
        ("sha256", sha.hex()),
        ("key", key.hex()),
        ("name", name),
        ("body", body.hex()),
    ]


def render() -> str:
    file_id = 0x0102030405060708
    key = bytes(range(32))
    size = 2 * CHUNK + 7232
    vectors = [
        chunk_vector(file_id, key, size, 0, bytes(range(0x40, 0x50))),
        chunk_vector(file_id, key, size, 2, bytes(range(0x80, 0x90))),
        manifest_vector(file_id, size, hashlib.sha256(b"report").digest(), key, "report.pdf"),
    ]
    return r.render(HEADER, vectors)


def main():
    r.write_or_check({Path(__file__).resolve().parents[2] / "tests" / "vectors" / "files.txt": render()})

if __name__ == "__main__":
    main()
