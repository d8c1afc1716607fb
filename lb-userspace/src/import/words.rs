//! Words, the two ways keepalived 2.2.7 splits a line into them.
//!
//! Keywords and their arguments: on whitespace, where `"..."` makes one word
//! of what it encloses (spaces included) and nothing is escaped. Scripts
//! (`script`, `misc_path`, `notify*`): keepalived reads the line again with
//! both `"` and `'` quotes and shell-like escapes (`\n`, `\t`, `\x41`,
//! `\101`, `\cA`, `\"` ...), and once more the script's own string to get
//! its arguments.

use super::diag::Pos;

/// One character of a line and where it was written (a character that a
/// definition put there carries the position of the definition's use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ch {
    pub c: char,
    pub at: Pos,
}

/// A word with the position of its first character and of each character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub at: Pos,
    pub chars: Vec<Ch>,
}

impl Word {
    fn new(chars: Vec<Ch>, at: Pos) -> Word {
        Word { text: chars.iter().map(|c| c.c).collect(), at, chars }
    }
}

pub(crate) fn text(chars: &[Ch]) -> String {
    chars.iter().map(|c| c.c).collect()
}

/// keepalived's white space.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Keywords and arguments (keepalived's `alloc_strvec`).
pub(crate) fn plain(line: &[Ch]) -> Result<Vec<Word>, (Pos, String)> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if is_space(line[i].c) {
            i += 1;
            continue;
        }
        let at = line[i].at;
        if line[i].c == '"' {
            let Some(end) = line[i + 1..].iter().position(|c| c.c == '"') else {
                return Err((at, "this quote is not closed on its line".to_owned()));
            };
            words.push(Word::new(line[i + 1..i + 1 + end].to_vec(), at));
            i += end + 2;
        } else {
            let end = line[i..].iter().position(|c| is_space(c.c) || c.c == '"').map_or(line.len(), |n| i + n);
            words.push(Word::new(line[i..end].to_vec(), at));
            i = end;
        }
    }
    Ok(words)
}

/// Script lines (keepalived's `alloc_strvec_quoted_escaped`).
pub(crate) fn escaped(line: &[Ch]) -> Result<Vec<Word>, (Pos, String)> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if is_space(line[i].c) {
            i += 1;
            continue;
        }
        let at = line[i].at;
        let mut word = Vec::new();
        let mut quote: Option<(char, Pos)> = None;
        while i < line.len() {
            let ch = line[i];
            match (ch.c, quote) {
                ('\\', _) => {
                    let (c, used) = escape(&line[i + 1..])
                        .ok_or_else(|| (ch.at, "`\\` at the end of the line escapes nothing".to_owned()))?;
                    word.push(Ch { c, at: ch.at });
                    i += 1 + used;
                }
                (c, Some((q, _))) if c == q => {
                    quote = None;
                    i += 1;
                }
                (_, Some(_)) => {
                    word.push(ch);
                    i += 1;
                }
                ('"' | '\'', None) => {
                    quote = Some((ch.c, ch.at));
                    i += 1;
                }
                (c, None) if is_space(c) => break,
                (_, None) => {
                    word.push(ch);
                    i += 1;
                }
            }
        }
        if let Some((q, qat)) = quote {
            return Err((qat, format!("this {q} is not closed")));
        }
        words.push(Word::new(word, at));
    }
    Ok(words)
}

/// The character an escape after `\` stands for, and how many characters it took.
fn escape(rest: &[Ch]) -> Option<(char, usize)> {
    let first = rest.first()?.c;
    let hex = |c: char| c.to_digit(16);
    let octal = |c: char| c.to_digit(8);
    Some(match first {
        'x' if rest.get(1).is_some_and(|c| hex(c.c).is_some()) => {
            let digits = rest[1..].iter().take_while(|c| hex(c.c).is_some()).count();
            // keepalived keeps the low byte of however many digits follow.
            let value = rest[1..=digits].iter().fold(0u8, |v, c| (v << 4) | hex(c.c).unwrap_or(0) as u8);
            (char::from(value), 1 + digits)
        }
        'c' if rest.len() > 1 => (char::from((rest[1].c as u32 & 0x1f) as u8), 2),
        '0'..='7' => {
            let digits = rest.iter().take(3).take_while(|c| octal(c.c).is_some()).count();
            let value = rest[..digits].iter().fold(0u32, |v, c| (v << 3) | octal(c.c).unwrap_or(0));
            (char::from(value as u8), digits)
        }
        'a' => ('\x07', 1),
        'b' => ('\x08', 1),
        'E' => ('\x1b', 1),
        'f' => ('\x0c', 1),
        'n' => ('\n', 1),
        'r' => ('\r', 1),
        't' => ('\t', 1),
        'v' => ('\x0b', 1),
        other => (other, 1),
    })
}

#[cfg(test)]
pub(crate) fn chars(s: &str, line: u32) -> Vec<Ch> {
    s.chars().enumerate().map(|(i, c)| Ch { c, at: Pos { file: 0, line, column: i as u32 + 1 } }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_texts(s: &str) -> Vec<String> {
        plain(&chars(s, 1)).unwrap().into_iter().map(|w| w.text).collect()
    }

    fn escaped_texts(s: &str) -> Vec<String> {
        escaped(&chars(s, 1)).unwrap().into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn plain_words_keep_double_quoted_spaces_and_no_escapes() {
        assert_eq!(plain_texts("  script \"/bin/x a b\"  "), ["script", "/bin/x a b"]);
        assert_eq!(plain_texts("a\"b c\"d"), ["a", "b c", "d"]);
        assert_eq!(plain_texts("x 'a b' \\n"), ["x", "'a", "b'", "\\n"]);
        let words = plain(&chars("weight   -20", 3)).unwrap();
        assert_eq!((words[1].at.line, words[1].at.column), (3, 10));
    }

    #[test]
    fn plain_refuses_an_open_quote_where_it_opens() {
        let (at, message) = plain(&chars("script \"/bin/x", 2)).unwrap_err();
        assert_eq!((at.line, at.column), (2, 8));
        assert!(message.contains("not closed"), "{message}");
    }

    #[test]
    fn escaped_words_take_both_quotes_and_escapes() {
        assert_eq!(escaped_texts(r#"notify "/x.sh master" root"#), ["notify", "/x.sh master", "root"]);
        assert_eq!(escaped_texts(r#"/bin/sh -c 'echo "a b"'"#), ["/bin/sh", "-c", "echo \"a b\""]);
        assert_eq!(escaped_texts(r"a\ b \x41\102\cA\t\E\q"), ["a b", "AB\x01\t\x1bq"]);
        assert_eq!(escaped_texts(r#""a"'b'c"#), ["abc"]);
        assert_eq!(escaped_texts(r#""\"""#), ["\""]);
    }

    #[test]
    fn escaped_refuses_open_quotes_and_a_trailing_backslash() {
        let (at, message) = escaped(&chars("x 'abc", 1)).unwrap_err();
        assert_eq!(at.column, 3);
        assert!(message.contains("' is not closed"), "{message}");
        let (at, _) = escaped(&chars("x \\", 1)).unwrap_err();
        assert_eq!(at.column, 3);
    }
}
