#!/usr/bin/env python3
"""Computes tests/vectors/resumption.txt independently of the Rust code, from
docs/PROTOCOL.md §3 (resumption): a session's resumption master and a
ticket's secret, a sealed ticket, and a resumed session's key schedule,
server MAC and binder.

Primitives come from the standard library (SHA-256, HMAC-SHA256; HKDF
written out per RFC 5869) and the `cryptography` package (AES-128-CBC).
Run from anywhere:

    python3 tools/vectors/resumption.py       # writes tests/vectors/resumption.txt
"""
import hashlib, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
H=lambda *p: hashlib.sha256(b''.join(p)).digest()
M=lambda k,*p: hmac.new(k,b''.join(p),hashlib.sha256).digest()
def hkdf(salt, ikm, info, L):
    prk=M(salt,ikm); out=b''; t=b''; i=1
    while len(out)<L:
        t=M(prk,t,info,bytes([i])); out+=t; i+=1
    return out[:L]
dk=bytes(range(32)); shared=bytes(range(0x20,0x40))
ch=bytes((0x40+i)%256 for i in range(160)); sh=bytes((0xa0+3*i)%256 for i in range(384))
tid=bytes(range(0x60,0x70))
master=hkdf(dk,shared,b"sotto/v3 resumption master\0"+H(ch,sh),32)
secret=M(master,b"sotto/v3 ticket secret\0",tid)
h=lambda b: b.hex()
out=[]
out.append(f"""# Session resumption (PROTOCOL.md §3, resumption; sotto::ticket).
# source: our own construction; expected values computed independently (Python
# hmac, hashlib and the cryptography package's AES) and frozen here, so any
# change to the construction fails the test. Three kinds of vector:
#
# kind = master: the resumption master of a full handshake and a ticket's secret
#   master = HKDF-SHA256(salt = deployment_key, ikm = shared,
#                        info = "sotto/v3 resumption master\\0" || SHA-256(client_hello || server_hello), L = 32)
#   ticket_secret = HMAC-SHA256(master, "sotto/v3 ticket secret\\0" || ticket_id)
#
# kind = ticket: a ticket sealed under a ticket key (48 bytes: AES-128 key, HMAC key)
#   plaintext = uid || issued || expires || generation (u64 BE each) || ticket_id (16) || secret (32)
#   ticket = key_id (u64 BE) || iv || AES-128-CBC(aes, iv, plaintext) || tag
#   tag = HMAC-SHA256(hmac key, "sotto/v3 ticket\\0" || key_id || iv || ciphertext)
#
# kind = schedule: a resumed session's keys, the server's MAC and the client's binder
#   th  = SHA-256(resume_hello || server_resume[0..128])
#   okm = HKDF-SHA256(salt = deployment_key, ikm = secret || shared,
#                     info = "sotto/v3 resumed session keys\\0" || th, L = 160)
#   c2s_enc = okm[0..16] c2s_mac = okm[16..48] s2c_enc = okm[48..64] s2c_mac = okm[64..96]
#   finished = okm[96..128] master = okm[128..160]
#   server_mac = HMAC-SHA256(finished, "sotto/v3 server resume\\0" || th)
#   binder = HMAC-SHA256(HMAC-SHA256(secret, "sotto/v3 binder key\\0"),
#                        "sotto/v3 resume binder\\0" || resume_hello[0..264])
#
# Hello inputs are fixed arbitrary bytes of the real sizes (ResumeHello 328,
# ServerResume 160; the ServerResume's last 32 bytes, its MAC, are not read).

kind = master
deployment_key = {h(dk)}
shared = {h(shared)}
client_hello = {h(ch)}
server_hello = {h(sh)}
ticket_id = {h(tid)}
master = {h(master)}
ticket_secret = {h(secret)}
""")
mat=bytes(range(0x80,0xb0)); kid=0x0011223344556677; iv=bytes(range(0xc0,0xd0))
uid=0x1122334455667788; issued=1_700_000_000_000; expires=issued+7*86400*1000; gen=5
pt=uid.to_bytes(8,'big')+issued.to_bytes(8,'big')+expires.to_bytes(8,'big')+gen.to_bytes(8,'big')+tid+secret
assert len(pt)==80
enc=Cipher(algorithms.AES(mat[:16]),modes.CBC(iv)).encryptor(); ct=enc.update(pt)+enc.finalize()
body=kid.to_bytes(8,'big')+iv+ct
tag=M(mat[16:],b"sotto/v3 ticket\0",body)
out.append(f"""kind = ticket
key_material = {h(mat)}
key_id = {kid:016x}
iv = {h(iv)}
uid = {uid:016x}
issued = {issued:016x}
expires = {expires:016x}
generation = {gen:016x}
ticket_id = {h(tid)}
secret = {h(secret)}
ticket = {h(body+tag)}
""")
rh=bytes((0x11+5*i)%256 for i in range(328)); sr=bytes((0x33+7*i)%256 for i in range(160))
th=H(rh,sr[:128])
okm=hkdf(dk,secret+shared,b"sotto/v3 resumed session keys\0"+th,160)
fin=okm[96:128]
smac=M(fin,b"sotto/v3 server resume\0",th)
bnd=M(M(secret,b"sotto/v3 binder key\0"),b"sotto/v3 resume binder\0",rh[:264])
out.append(f"""kind = schedule
deployment_key = {h(dk)}
secret = {h(secret)}
shared = {h(shared)}
resume_hello = {h(rh)}
server_resume = {h(sr)}
transcript_hash = {h(th)}
c2s_enc = {h(okm[0:16])}
c2s_mac = {h(okm[16:48])}
s2c_enc = {h(okm[48:64])}
s2c_mac = {h(okm[64:96])}
finished = {h(fin)}
master = {h(okm[128:160])}
server_mac = {h(smac)}
binder = {h(bnd)}
""")
open(__import__('os').path.join(__import__('os').path.dirname(__file__), '..', '..', 'tests', 'vectors', 'resumption.txt'),'w').write("\n".join(out))
