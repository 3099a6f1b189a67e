//! Every generated decoder: the first byte picks a struct (`sotto_fuzz::decoder`), the
//! rest is decoded; what decodes re-encodes to the input and its strings are read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_fuzz::{decoder, MESSAGES};

fuzz_target!(
    init: {
        let listed: Vec<u32> = MESSAGES.iter().filter_map(|d| d.opcode).collect();
        let table: Vec<u32> = sotto::opcodes::OPCODES.iter().map(|i| i.opcode).collect();
        assert_eq!(listed, table, "fuzz/src/lib.rs MESSAGES must list every opcode, in order");
    },
    |data: &[u8]| {
        if let Some((&selector, bytes)) = data.split_first() {
            (decoder(selector).check)(bytes);
        }
    }
);
