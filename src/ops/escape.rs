//! Client-controlled text made safe to show, in the log and in refusal messages: control
//! characters (C0, DEL, C1) and the invisible direction marks and overrides that reorder what a
//! terminal shows are written as `\u{..}`, and a backslash as `\\`, so that a path or a header
//! cannot recolour, rewrite or disguise a log line.

use std::borrow::Cow;

/// `text`, with every character that could act on a terminal escaped.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_direction_overrides_are_written_out() {
        assert!(matches!(escape("/echo?a=1"), Cow::Borrowed("/echo?a=1")));
        assert_eq!(escape("/\u{9b}31m\u{202e}RED"), "/\\u{9b}31m\\u{202e}RED");
        assert_eq!(escape("a\x1b[2Jb\r\n"), "a\\u{1b}[2Jb\\u{d}\\u{a}");
        assert_eq!(escape("C:\\u{41}"), "C:\\\\u{41}");
        assert_eq!(escape("naïve ✓"), "naïve ✓");
    }
}
