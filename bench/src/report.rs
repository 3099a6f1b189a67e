//! Results: tables for the terminal and docs/BENCHMARKS.md, and the named
//! figures the targets are computed from.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One table.
pub struct Section {
    pub title: String,
    pub note: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Everything one run measured.
#[derive(Default)]
pub struct Report {
    pub sections: Vec<Section>,
    /// Named figures (e.g. `w4.sotto.deliveries`), for targets and ratios.
    pub figures: BTreeMap<String, f64>,
    /// Verbatim texts (peer configurations): title, text.
    pub texts: Vec<(String, String)>,
}

impl Report {
    /// Starts a table.
    pub fn section(&mut self, title: &str, note: &str, header: &[&str]) -> usize {
        self.sections.push(Section {
            title: title.into(),
            note: note.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        });
        self.sections.len() - 1
    }

    /// The table titled `title` (started if missing).
    pub fn section_id(&mut self, title: &str) -> usize {
        self.sections.iter().position(|s| s.title == title).unwrap_or_else(|| self.section(title, "", &[]))
    }

    /// Keeps a verbatim text for the report.
    pub fn text(&mut self, title: &str, text: &str) {
        self.texts.push((title.into(), text.into()));
    }

    /// Adds a row to table `s` and prints it.
    pub fn row(&mut self, s: usize, cells: Vec<String>) {
        let sec = &mut self.sections[s];
        println!("  {}: {}", sec.title, cells.join(" | "));
        sec.rows.push(cells);
    }

    /// Records a named figure.
    pub fn fig(&mut self, name: &str, v: f64) {
        self.figures.insert(name.into(), v);
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures.get(name).copied()
    }

    /// Markdown tables of every section.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            let _ = writeln!(out, "### {}\n", s.title);
            if !s.note.is_empty() {
                let _ = writeln!(out, "{}\n", s.note);
            }
            let _ = writeln!(out, "| {} |", s.header.join(" | "));
            let _ = writeln!(out, "|{}|", s.header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
            for r in &s.rows {
                let _ = writeln!(out, "| {} |", r.join(" | "));
            }
            out.push('\n');
        }
        out
    }
}

/// A rate for tables: 12345.6 -> "12,346".
pub fn rate(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio for tables: "2.31×", or "n/a".
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rate(1234567.4), "1,234,567");
        assert_eq!(rate(12.0), "12");
        assert_eq!(ratio(Some(3.0), Some(1.5)), "2.00×");
        assert_eq!(ratio(Some(3.0), None), "n/a");
    }
}
