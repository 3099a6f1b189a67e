//! The entry points that take caller-chosen IVs, ephemeral secrets or nonces
//! exist only for test vectors and fuzzing (feature `vectors`, which only the
//! tests and the fuzz crate turn on): a build that talks to anyone cannot
//! call them. The tests themselves are built with the feature, so this reads
//! the source: each such function is gated, and the feature is not on by default.

const GATE: &str = "#[cfg(any(test, feature = \"vectors\"))]";

fn source(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn chosen_iv_and_secret_entry_points_are_test_only() {
    for (file, item) in [
        ("src/record.rs", "pub fn seal_with_iv("),
        ("src/room.rs", "pub fn seal_with_iv("),
        ("src/handshake.rs", "pub fn client_hello_with("),
        ("src/handshake.rs", "pub fn server_hello_with("),
        ("src/x3dh.rs", "pub fn initiate_with("),
        ("src/ratchet.rs", "pub fn initiator_with("),
        ("src/ratchet.rs", "pub fn seal_traced("),
        ("src/ratchet.rs", "pub fn open_with("),
        ("src/file.rs", "pub fn seal_with_iv("),
        ("src/file.rs", "pub fn keys("),
    ] {
        let text = source(file);
        let at = text.find(item).unwrap_or_else(|| panic!("{file}: no {item}"));
        let before: Vec<&str> = text[..at].lines().rev().map(str::trim).filter(|l| !l.is_empty()).take(1).collect();
        assert_eq!(before, [GATE], "{file}: {item} must be gated by {GATE}");
        assert_eq!(text.matches(item).count(), 1, "{file}: one {item}");
    }
    let manifest = source("Cargo.toml");
    assert!(manifest.contains("vectors = []"), "the feature exists and enables nothing else");
    assert!(!manifest.contains("default = ["), "no feature is on by default");
}
