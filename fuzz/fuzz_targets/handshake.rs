//! Both handshake messages, with fixed keys (`sotto_fuzz`). First byte mod 3:
//! 0: the rest is a ClientHello; 1: the same with its MAC recomputed, so the
//! version and table checks behind the MAC are reached; 2: the rest is the
//! ServerHello answering the fixed client, accepted only if the server signed it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto::crypto::hmac;
use sotto::handshake::{check_client_hello, HelloVerdict, CLIENT_HELLO_LEN, SERVER_HELLO_LEN};
use sotto::identity::RSA_BYTES;
use sotto::opcodes::{MAGIC, PROTOCOL_VERSION, TABLE_HASH};
use sotto_fuzz::{client, DEPLOYMENT_KEY, SERVER, SIGNED_SERVER_HELLO};

const MAC_AT: usize = CLIENT_HELLO_LEN - 32;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    match mode % 3 {
        0 => client_hello(body),
        1 if body.len() >= MAC_AT => {
            client_hello(&[&body[..MAC_AT], &hmac(&DEPLOYMENT_KEY, &[&body[..MAC_AT]])].concat())
        }
        1 => {}
        _ => {
            // RSA-PSS is randomised: any valid signature will do, but only over what the server signed.
            let accepted = client().0.handle_server_hello(&sotto_fuzz::CLIENT, body).is_ok();
            let signed = SERVER_HELLO_LEN - RSA_BYTES;
            assert!(
                !accepted || body.get(..signed) == SIGNED_SERVER_HELLO.get(..signed),
                "accepted a ServerHello the server never signed"
            );
        }
    }
});

/// The server's verdict against one computed here: drop unless the size, magic
/// and MAC are right; then accept exactly when version and table hash match.
fn client_hello(body: &[u8]) {
    let verdict = check_client_hello(&SERVER, body);
    let authentic = body.len() == CLIENT_HELLO_LEN
        && body[..4] == MAGIC
        && body[MAC_AT..] == hmac(&DEPLOYMENT_KEY, &[&body[..MAC_AT]]);
    let same = authentic && body[4..6] == PROTOCOL_VERSION.to_be_bytes() && body[8..40] == TABLE_HASH;
    match verdict {
        HelloVerdict::Drop => assert!(!authentic, "dropped an authentic ClientHello"),
        HelloVerdict::Accept => assert!(same, "accepted a ClientHello whose MAC, magic, version or table is wrong"),
        // The signed answer is made on a worker (`mismatch_hello`): an RSA
        // signature per input would slow the target down a thousandfold.
        HelloVerdict::Mismatch => {
            assert!(authentic && !same, "answered a mismatch to an unauthenticated or matching ClientHello")
        }
    }
}
