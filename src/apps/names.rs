//! Chat names: which characters a name may not hold, and when two names are the same.
//!
//! A name that looks like another must not pass for a different one, and a name must not hide
//! or reorder the text around it. So names may not contain control characters (Unicode Cc),
//! format characters (Cf: zero-width spaces and joiners, the bidi embeddings, overrides and
//! isolates, the byte-order mark, soft hyphens, invisible operators, tags), nor the fillers
//! that print as nothing (Hangul fillers, the combining grapheme joiner, the blank Braille
//! pattern). Two names that differ only in the case of their ASCII letters are the same name
//! (Unicode's full case tables would cost the binary 15 KB of its 1 MiB).

/// Format characters (Unicode's Cf category) and characters that show as nothing.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{2800}', '\u{2800}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// The first character of `name` that a name may not hold, if any.
pub fn forbidden(name: &str) -> Option<char> {
    name.chars().find(|&c| {
        c.is_control()
            || INVISIBLE
                .iter()
                .any(|&(first, last)| (first..=last).contains(&c))
    })
}

/// Whether `a` and `b` are the same name (they differ at most in the case of ASCII letters).
pub fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_reordering_characters_are_found_and_visible_ones_pass() {
        for hidden in [
            "admin\u{200B}",
            "\u{202E}nimda",
            "\u{FEFF}",
            "a\u{2066}b",
            "soft\u{00AD}hyphen",
            "\u{3164}",
            "tag\u{E0041}",
            "bell\u{7}",
        ] {
            assert!(forbidden(hidden).is_some(), "{hidden:?} passed");
        }
        assert_eq!(forbidden("x\u{200B}y"), Some('\u{200B}'));
        for visible in ["ann", "Zoë", "山田", "مريم", "sam 2", "o'brien", "😀"] {
            assert_eq!(forbidden(visible), None, "{visible:?}");
        }
    }

    #[test]
    fn names_differing_only_in_the_case_of_ascii_letters_are_the_same() {
        assert!(same("Admin", "admin"));
        assert!(same("Zoë", "ZOë"));
        assert!(!same("ann", "anne"));
    }
}
