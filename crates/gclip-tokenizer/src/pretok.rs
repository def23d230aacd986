//! Pre-tokenisation: a scanner equivalent to open_clip's pattern
//! `<specials>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//! compiled with `regex.IGNORECASE`, used through `re.findall` (so text that
//! matches no alternative, i.e. whitespace, is skipped).

use crate::tables::{LETTERS, NUMBERS};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Special(u32),
    Word(&'a str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    /// Matched by no alternative: `\s`, plus U+0345, which under the
    /// reference's case-insensitive matching is neither `\p{L}` nor in the
    /// negated class.
    Skip,
    Other,
}

pub(crate) fn in_ranges(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// `\s` of the Python `regex` module.
fn is_regex_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

fn classify(c: char) -> Class {
    if c.is_ascii() {
        return if c.is_ascii_alphabetic() {
            Class::Letter
        } else if c.is_ascii_digit() {
            Class::Number
        } else if is_regex_space(c) {
            Class::Skip
        } else {
            Class::Other
        };
    }
    if in_ranges(LETTERS, c) {
        Class::Letter
    } else if in_ranges(NUMBERS, c) {
        Class::Number
    } else if is_regex_space(c) || c == '\u{345}' {
        Class::Skip
    } else {
        Class::Other
    }
}

/// Case-insensitive match of one text char against an ASCII pattern char,
/// with the simple case folding the reference regex applies (`ſ` folds to `s`).
fn ci_eq(c: char, p: u8) -> bool {
    let p = p as char;
    c == p || c == p.to_ascii_uppercase() || (p == 's' && c == '\u{17f}')
}

/// Length in bytes of the prefix of `s` matching ASCII `pat` case-insensitively.
fn ci_prefix(s: &str, pat: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    for &p in pat.as_bytes() {
        let (_, c) = chars.next()?;
        if !ci_eq(c, p) {
            return None;
        }
    }
    Some(chars.next().map_or(s.len(), |(i, _)| i))
}

pub(crate) struct Pieces<'a> {
    text: &'a str,
    pos: usize,
    specials: &'a [(String, u32)],
}

impl<'a> Pieces<'a> {
    pub(crate) fn new(text: &'a str, specials: &'a [(String, u32)]) -> Self {
        Pieces {
            text,
            pos: 0,
            specials,
        }
    }

    /// Byte length of the run starting at the text's start whose chars all have class `class`.
    fn run(rest: &str, class: Class) -> usize {
        // ASCII fast path, then the general one.
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                if classify(b as char) != class {
                    return i;
                }
                i += 1;
            } else {
                // Safe: `i` is on a char boundary since we only step whole chars.
                let c = rest[i..].chars().next().unwrap_or(' ');
                if classify(c) != class {
                    return i;
                }
                i += c.len_utf8();
            }
        }
        i
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        loop {
            let rest = &self.text[self.pos..];
            let c = rest.chars().next()?;
            // Special tokens come first in the alternation.
            for (name, id) in self.specials {
                if let Some(n) = ci_prefix(rest, name) {
                    self.pos += n;
                    // Only the exact spelling is the special token; a
                    // case-folded match (e.g. with `ſ`) stays one piece that
                    // is BPE-encoded like a word, as in the reference.
                    return Some(if &rest[..n] == name {
                        Piece::Special(*id)
                    } else {
                        Piece::Word(&rest[..n])
                    });
                }
            }
            if c == '\'' {
                for pat in ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"] {
                    if let Some(n) = ci_prefix(rest, pat) {
                        self.pos += n;
                        return Some(Piece::Word(&rest[..n]));
                    }
                }
            }
            let class = classify(c);
            let n = match class {
                Class::Skip => {
                    self.pos += c.len_utf8();
                    continue;
                }
                Class::Number => c.len_utf8(),
                Class::Letter | Class::Other => Self::run(rest, class),
            };
            self.pos += n;
            return Some(Piece::Word(&rest[..n]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        let specials = vec![("<end_of_text>".to_string(), 7)];
        Pieces::new(s, &specials)
            .map(|p| match p {
                Piece::Word(w) => w.to_string(),
                Piece::Special(id) => format!("#{id}"),
            })
            .collect()
    }

    #[test]
    fn alternatives_apply_only_at_match_start() {
        assert_eq!(words("it's 12ab"), ["it", "'s", "1", "2", "ab"]);
        assert_eq!(words("..'s"), ["..'", "s"]);
        assert_eq!(words("x<end_of_text>y"), ["x", "#7", "y"]);
        assert_eq!(
            words("!<end_of_text>"),
            ["!<", "end", "_", "of", "_", "text", ">"]
        );
        assert_eq!(words("a\u{345}b"), ["a", "b"]);
        assert_eq!(words("it'\u{17f}"), ["it", "'\u{17f}"]);
        assert_eq!(words("<END_of_text>"), ["<END_of_text>"]);
    }
}
