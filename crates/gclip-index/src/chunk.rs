//! Splitting long texts into chunks per `textPreprocessing`: the text is cut into units
//! (sentences, words, characters or passages) and units are grouped into windows of
//! `split_length` stepping by `split_length - split_overlap`. Each chunk becomes one vector.

use crate::settings::{SplitMethod, TextPreprocessing};

/// The chunks of `text`; empty chunks are dropped, so an all-whitespace text gives none.
pub fn split(text: &str, tp: &TextPreprocessing) -> Vec<String> {
    let (units, sep): (Vec<&str>, &str) = match tp.split_method {
        SplitMethod::Word => (text.split_whitespace().collect(), " "),
        SplitMethod::Character => (
            text.char_indices()
                .map(|(i, c)| &text[i..i + c.len_utf8()])
                .collect(),
            "",
        ),
        SplitMethod::Sentence => (sentences(text), " "),
        SplitMethod::Passage => (
            text.split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect(),
            "\n\n",
        ),
    };
    let len = tp.split_length.max(1);
    let step = len.saturating_sub(tp.split_overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let end = (start + len).min(units.len());
        let chunk = units[start..end].join(sep);
        let chunk = chunk.trim();
        if !chunk.is_empty() {
            out.push(chunk.to_string());
        }
        if end == units.len() {
            break;
        }
        start += step;
    }
    out
}

/// Sentences end at `.`, `!` or `?` followed by whitespace (or the end); the terminator stays.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?') {
            let end = i + c.len_utf8();
            if chars.peek().is_none_or(|(_, n)| n.is_whitespace()) {
                let s = text[start..end].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = end;
            }
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(m: SplitMethod, len: usize, overlap: usize) -> TextPreprocessing {
        TextPreprocessing {
            split_length: len,
            split_overlap: overlap,
            split_method: m,
        }
    }

    #[test]
    fn windows_of_units() {
        let t = "One. Two! Three? Four. Five";
        assert_eq!(
            split(t, &tp(SplitMethod::Sentence, 2, 0)),
            ["One. Two!", "Three? Four.", "Five"]
        );
        assert_eq!(
            split("a b c d e", &tp(SplitMethod::Word, 2, 1)),
            ["a b", "b c", "c d", "d e"]
        );
        assert_eq!(
            split("abcde", &tp(SplitMethod::Character, 3, 0)),
            ["abc", "de"]
        );
        assert_eq!(
            split("p1 line\n\n\n\np2\n\np3", &tp(SplitMethod::Passage, 1, 0)),
            ["p1 line", "p2", "p3"]
        );
        assert!(split("   ", &tp(SplitMethod::Word, 2, 0)).is_empty());
        // A decimal point is not a sentence end.
        assert_eq!(
            split("Pi is 3.14 today.", &tp(SplitMethod::Sentence, 1, 0)).len(),
            1
        );
    }
}
