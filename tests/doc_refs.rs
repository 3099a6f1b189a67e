//! Section references in the repository: every "DESIGN §n" (also
//! "DESIGN.md §n", "docs/DESIGN.md §n") must name a `## n.` heading of
//! docs/DESIGN.md, and every "PROTOCOL §n" / "PROTOCOL.md §n" one of
//! docs/PROTOCOL.md. A list continues the reference ("DESIGN §5, §9",
//! "§6 and §7"), and a reference may wrap onto the next line, comment marker
//! and all. Only files inside the repository are read; `target/`, `.git/` and
//! the fuzzer's generated directories are skipped.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Directories never read (build output, VCS, fuzzer output and binary seeds).
const SKIP_DIRS: &[&str] = &["target", ".git", "corpus", "artifacts", "coverage"];
/// Files read: sources, docs, tables, vectors.
const EXTENSIONS: &[&str] = &["rs", "md", "toml", "txt", "sh", "py"];

/// The section numbers of a document: its `## n.` headings.
fn sections(doc: &str) -> BTreeSet<u32> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let after = rest[digits.len()..].chars().next();
            (after == Some('.')).then(|| digits.parse().ok()).flatten()
        })
        .collect()
}

/// A reference found: which document, which section, on which line.
#[derive(Debug, PartialEq)]
struct Ref {
    doc: &'static str,
    section: u32,
    line: usize,
}

/// Skips spaces and, across at most one line break, a comment marker of the next line.
fn skip_gap(b: &[u8], mut i: usize) -> usize {
    let mut newlines = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' => i += 1,
            b'\n' if newlines == 0 => {
                newlines += 1;
                i += 1;
                while i < b.len() && matches!(b[i], b' ' | b'\t' | b'/' | b'!' | b'#' | b'*' | b'>') {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    i
}

/// Reads `§n` at `i`: the number and the index after it.
fn section_at(b: &[u8], i: usize) -> Option<(u32, usize)> {
    let sign = "§".as_bytes();
    if !b[i..].starts_with(sign) {
        return None;
    }
    let start = skip_gap(b, i + sign.len());
    let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n = std::str::from_utf8(&b[start..end]).ok()?.parse().ok()?;
    Some((n, end))
}

/// Every DESIGN and PROTOCOL section reference in `text`.
fn references(text: &str) -> Vec<Ref> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for (doc, word) in [("DESIGN", &b"DESIGN"[..]), ("PROTOCOL", &b"PROTOCOL"[..])] {
        let mut from = 0;
        while let Some(pos) = text[from..].find(doc).map(|p| p + from) {
            from = pos + word.len();
            let before_ok = pos == 0 || !(b[pos - 1].is_ascii_alphanumeric() || b[pos - 1] == b'_');
            let mut i = pos + word.len();
            if b[i..].starts_with(b".md") {
                i += 3;
            }
            if !before_ok || b.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                continue;
            }
            let line = |at: usize| text[..at].matches('\n').count() + 1;
            let mut at = skip_gap(b, i);
            // The first section, then any list: ", §n", " and §n", ", and §n".
            while let Some((section, end)) = section_at(b, at) {
                out.push(Ref { doc, section, line: line(at) });
                let mut j = skip_gap(b, end);
                if b[j..].starts_with(b",") {
                    j = skip_gap(b, j + 1);
                }
                if b[j..].starts_with(b"and ") {
                    j = skip_gap(b, j + 4);
                }
                if b[j..].starts_with("§".as_bytes()) {
                    at = j;
                } else {
                    break;
                }
            }
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if !SKIP_DIRS.contains(&name.as_ref()) && !name.starts_with("target") {
                walk(&path, files);
            }
        } else if kind.is_file()
            && (name == "Makefile"
                || path.extension().is_some_and(|e| EXTENSIONS.contains(&e.to_string_lossy().as_ref())))
        {
            files.push(path);
        }
    }
}

/// Every reference in the repository that names no existing section, as
/// `path:line: DOC §n`.
fn dangling(root: &Path, design: &BTreeSet<u32>, protocol: &BTreeSet<u32>) -> (usize, Vec<String>) {
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    let mut seen = 0;
    let mut bad = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        for r in references(&text) {
            seen += 1;
            let known = if r.doc == "DESIGN" { design } else { protocol };
            if !known.contains(&r.section) {
                let rel = file.strip_prefix(root).unwrap_or(&file);
                bad.push(format!("{}:{}: {} §{}", rel.display(), r.line, r.doc, r.section));
            }
        }
    }
    (seen, bad)
}

#[test]
fn every_section_reference_names_an_existing_section() {
    let root = Path::new(ROOT);
    let design = sections(&fs::read_to_string(root.join("docs/DESIGN.md")).expect("docs/DESIGN.md"));
    let protocol = sections(&fs::read_to_string(root.join("docs/PROTOCOL.md")).expect("docs/PROTOCOL.md"));
    assert_eq!(design, (1..=11).collect(), "docs/DESIGN.md keeps sections 1 to 11 (source comments cite them)");
    assert!(protocol.len() >= 8, "docs/PROTOCOL.md sections: {protocol:?}");
    let (seen, bad) = dangling(root, &design, &protocol);
    // The repository cites both documents about a hundred times: a scanner
    // that finds none has stopped working, not the references.
    assert!(seen > 50, "only {seen} references found");
    assert!(bad.is_empty(), "references to sections that do not exist:\n{}", bad.join("\n"));
}

#[test]
fn the_scanner_finds_lists_wrapped_references_and_missing_sections() {
    // Built with format! so that this file holds no reference itself.
    let sign = "§";
    let text = format!(
        "a (DESIGN {sign}5, {sign}9) b\n// see PROTOCOL.md {sign}7 and {sign}12\n\
         //! DESIGN\n//! {sign}8 wraps; docs/DESIGN.md {sign}4.\nPROTOCOL_VERSION {sign}3 DESIGNS {sign}2"
    );
    let got: Vec<(&str, u32, usize)> = references(&text).iter().map(|r| (r.doc, r.section, r.line)).collect();
    assert_eq!(
        got,
        [
            ("DESIGN", 5, 1),
            ("DESIGN", 9, 1),
            ("DESIGN", 8, 4),
            ("DESIGN", 4, 4),
            ("PROTOCOL", 7, 2),
            ("PROTOCOL", 12, 2)
        ]
    );
    let design = sections("# t\n## 1. One\n### 1.1 not a section\n## 4. Four\n## 5. Five\n## 8. Eight\n## Nine\n");
    assert_eq!(design, [1, 4, 5, 8].into_iter().collect());
    let missing: Vec<_> = references(&text)
        .into_iter()
        .filter(|r| r.doc == "DESIGN" && !design.contains(&r.section))
        .map(|r| r.section)
        .collect();
    assert_eq!(missing, [9]);
}
