//! open_clip's default `clean='lower'` text cleaning.

use crate::pretok::in_ranges;
use crate::tables::PY_LOWER_CHANGES;
use crate::{ftfy, html};

/// Python's `str.isspace`, which drives `str.strip` and `str.split`.
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\x1c'..='\x20'
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

/// Cleans text exactly as open_clip does before BPE: ftfy `fix_text`, HTML
/// unescape twice, strip, whitespace runs collapsed to one space, lowercase.
pub fn clean_text(text: &str) -> String {
    // Plain printable ASCII without '&' passes ftfy and unescaping unchanged.
    let fixed;
    let text = if text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'&') {
        text
    } else {
        fixed = html::unescape(&html::unescape(&ftfy::fix_text(text)));
        &fixed
    };
    let mut out = String::with_capacity(text.len());
    for word in text.split(is_py_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.is_ascii() {
        out.make_ascii_lowercase();
        out
    } else {
        py_lower(&out)
    }
}

/// A char the Rust standard library lowercases but CPython 3.11 (Unicode 14)
/// leaves alone, i.e. one from a newer Unicode version.
fn newer_cased(c: char) -> bool {
    !c.is_ascii() && !in_ranges(PY_LOWER_CHANGES, c) && c.to_lowercase().ne(std::iter::once(c))
}

/// Python's `str.lower()`: Rust's `to_lowercase` (same mappings and
/// final-sigma rule) except for chars Python's Unicode data does not know.
fn py_lower(text: &str) -> String {
    if !text.chars().any(newer_cased) {
        return text.to_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    for run in text.split_inclusive(newer_cased) {
        let mut chars = run.chars();
        match chars.next_back() {
            Some(last) if newer_cased(last) => {
                out.push_str(&chars.as_str().to_lowercase());
                out.push(last);
            }
            _ => out.push_str(&run.to_lowercase()),
        }
    }
    out
}
