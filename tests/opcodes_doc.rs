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
