//! Manual pages from the `--help` text of a binary, so that `man sottod` and
//! `sottod --help` never say different things (`make install` writes them).
//!
//! Invariant: the help text is reproduced line for line inside a no-fill
//! block; only the characters roff would act on are escaped.

/// A roff page: name, section, one-line summary, the help text, and the
/// `SEE ALSO` line.
pub fn render(name: &str, section: u8, summary: &str, help: &str, see_also: &str) -> String {
    let mut out = String::with_capacity(help.len() + 512);
    out.push_str(&format!(
        ".TH {} {section} \"\" \"sotto {}\" \"sotto\"\n",
        name.to_uppercase(),
        crate::build_info::VERSION
    ));
    out.push_str(&format!(".SH NAME\n{name} \\- {}\n", escape(summary)));
    out.push_str(".SH SYNOPSIS AND OPTIONS\n.nf\n");
    for line in help.lines() {
        out.push_str(&escape(line));
        out.push('\n');
    }
    out.push_str(".fi\n");
    out.push_str(&format!(".SH SEE ALSO\n{}\n", escape(see_also)));
    out
}

/// `line` made literal for roff: backslashes doubled as `\e`, and a leading
/// `.` or `'` (a request) guarded by `\&`.
fn escape(line: &str) -> String {
    let body = line.replace('\\', "\\e");
    if body.starts_with('.') || body.starts_with('\'') {
        format!("\\&{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_help_line_and_escapes_what_roff_would_act_on() {
        let help = "usage: x [--a]\n  --a   a \\ backslash\n.not a request\n'neither";
        let page = render("x", 1, "an example", help, "y(1)");
        assert!(page.starts_with(".TH X 1 "));
        assert!(page.contains(".SH NAME\nx \\- an example\n"));
        assert!(page.contains("\n.nf\nusage: x [--a]\n  --a   a \\e backslash\n\\&.not a request\n\\&'neither\n.fi\n"));
        assert!(page.ends_with(".SH SEE ALSO\ny(1)\n"));
    }
}
