//! open_clip's default `clean='lower'` text cleaning.

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
        out.to_lowercase()
    }
}
