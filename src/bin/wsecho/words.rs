//! A `--run` command split into words as a shell would split it, and nothing more: blanks
//! separate words, 'single quotes' keep everything, "double quotes" keep all but `\"`, `\\`,
//! `\$` and `` \` ``, and a backslash outside quotes keeps the next character. No variables,
//! no globs, no pipes: the program is started directly, never through a shell.

/// The words of `command`; an error for an unfinished quote or a trailing backslash.
pub fn split(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(done) = word.take() {
                    words.push(done);
                }
            }
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err(format!("unfinished ' quote in {command:?}")),
                    }
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => current.push(c),
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => return Err(format!("unfinished \" quote in {command:?}")),
                        },
                        Some(c) => current.push(c),
                        None => return Err(format!("unfinished \" quote in {command:?}")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(format!("a backslash ends {command:?}")),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn words_split_as_a_shell_splits_them() {
        let cases: [(&str, &[&str]); 7] = [
            ("python3 count.py", &["python3", "count.py"]),
            ("  a   b\tc ", &["a", "b", "c"]),
            (
                "echo 'two words' \"and $three\"",
                &["echo", "two words", "and $three"],
            ),
            (
                r#"say "a \"quoted\" \\ word""#,
                &["say", r#"a "quoted" \ word"#],
            ),
            (r"a\ b c", &["a b", "c"]),
            ("x''y \"\"", &["xy", ""]),
            ("", &[]),
        ];
        for (command, expected) in cases {
            assert_eq!(split(command).unwrap(), expected, "{command}");
        }
    }

    #[test]
    fn an_unfinished_quote_is_an_error_that_says_so() {
        assert!(split("echo 'oops").unwrap_err().contains("unfinished '"));
        assert!(split("echo \"oops").unwrap_err().contains("unfinished \""));
        assert!(split("echo oops\\").unwrap_err().contains("backslash"));
    }
}
