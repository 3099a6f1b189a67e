//! docs/OPCODES.md is generated (build.rs from opcodes.toml) and committed for
//! auditors; this test fails when the committed copy is out of date.

#[test]
fn committed_opcodes_md_matches_the_generated_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPCODES.md");
    let committed = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}; run `make opcodes` to generate it"));
    if committed != sotto::opcodes::OPCODES_MD {
        let line = committed
            .lines()
            .zip(sotto::opcodes::OPCODES_MD.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "at the end".to_owned(), |n| format!("from line {}", n + 1));
        panic!("docs/OPCODES.md is out of date with opcodes.toml (differs {line}): run `make opcodes` and commit it");
    }
}

/// PROTOCOL.md §1 says how to compute the table hash: the canonical text
/// hashes to TABLE_HASH, and the worked example there is real (its lines are
/// lines of the canonical text) and hashes to the value it states.
#[test]
fn the_canonical_table_text_hashes_to_the_table_hash_and_the_worked_example_holds() {
    let canon = sotto::opcodes::CANONICAL_TABLE;
    assert_eq!(sotto::crypto::sha256(&[canon.as_bytes()]), sotto::opcodes::TABLE_HASH);
    assert!(canon.starts_with("sotto opcode table\nversion 3\nmagic SOTO\n") && canon.ends_with('\n'));

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    let from = doc.find("Worked example").expect("PROTOCOL.md has the worked example");
    let rest = &doc[from..];
    let open = rest.find("```\n").unwrap() + 4;
    let close = open + rest[open..].find("```").unwrap();
    let example = &rest[open..close];
    let after = &rest[close + 3..];
    let stated = after.split('`').nth(1).expect("the stated hash, in backquotes");
    assert_eq!(sotto::crypto::hex(&sotto::crypto::sha256(&[example.as_bytes()])), stated);
    for block in example.split("struct ").skip(1).chain(example.split("message ").skip(1)) {
        let block = block.split("\nmessage ").next().unwrap();
        assert!(canon.contains(block), "not in the canonical text: {block:?}");
    }
}
