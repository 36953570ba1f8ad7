//! Object strings (names, label values) shown to people: in `explain` and `graph` text,
//! in script comments and in log records. The API server refuses control characters in
//! names, but nftpol also reads files nobody validated, and a newline or an escape
//! sequence in a name must not forge a line or repaint a terminal.

use std::fmt;

/// Whether `c` is shown as an escape: control characters (C0, DEL, C1), the Unicode line
/// and paragraph separators, the bidirectional controls (which reorder what a terminal
/// shows), and the backslash, so that an escape in the output always means one.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with every character of [`needs_escape`] written as Rust writes it in a string
/// literal (`\n`, `\u{1b}`, `\\`); anything else unchanged. Use as `{}` in a format.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found at i");
            write!(f, "{}", c.escape_default())?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// [`Escaped`] as a string, borrowed when nothing needs escaping.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(needs_escape) {
        Escaped(s).to_string().into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(escape("web-0.db ünï"), "web-0.db ünï");
        assert!(matches!(escape("x"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn controls_become_visible_escapes() {
        let s = escape("a\nb\rc\u{1b}[31md\te\\f\u{202e}g\u{85}h\u{7f}");
        assert_eq!(s, "a\\nb\\rc\\u{1b}[31md\\te\\\\f\\u{202e}g\\u{85}h\\u{7f}");
        assert!(!s.chars().any(needs_escape_but_backslash));
    }

    fn needs_escape_but_backslash(c: char) -> bool {
        c != '\\' && needs_escape(c)
    }
}
