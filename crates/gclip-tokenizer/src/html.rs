//! HTML character references: CPython's `html.unescape` (HTML5 rules) and
//! ftfy's stricter `unescape_html`.

use std::sync::OnceLock;

use rustc_hash::FxHashMap;

use crate::tables::{
    FTFY_EXTRA_ENTITIES, HTML5_ENTITIES, HTML_INVALID_CHARREFS, HTML_INVALID_CODEPOINTS,
};

fn html5() -> &'static FxHashMap<&'static str, &'static str> {
    static MAP: OnceLock<FxHashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| HTML5_ENTITIES.iter().copied().collect())
}

fn ftfy_entities() -> &'static FxHashMap<&'static str, &'static str> {
    static MAP: OnceLock<FxHashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| {
        HTML5_ENTITIES
            .iter()
            .copied()
            .filter(|(k, _)| k.ends_with(';'))
            .chain(FTFY_EXTRA_ENTITIES.iter().copied())
            .collect()
    })
}

/// Replacement for a numeric reference, following the HTML5 rules CPython uses.
fn numeric(num: Option<u32>, out: &mut String) {
    let Some(num) = num.filter(|&n| n <= 0x10FFFF) else {
        out.push('\u{FFFD}');
        return;
    };
    if let Ok(i) = HTML_INVALID_CHARREFS.binary_search_by_key(&num, |&(k, _)| k) {
        out.push(char::from_u32(HTML_INVALID_CHARREFS[i].1).unwrap_or('\u{FFFD}'));
        return;
    }
    if (0xD800..=0xDFFF).contains(&num) {
        out.push('\u{FFFD}');
        return;
    }
    if HTML_INVALID_CODEPOINTS
        .binary_search_by_key(&num, |&(k, _)| k)
        .is_ok()
    {
        return;
    }
    out.push(char::from_u32(num).unwrap_or('\u{FFFD}'));
}

fn parse_num(digits: &str, radix: u32) -> Option<u32> {
    // Overlong numbers saturate: anything past U+10FFFF is replaced anyway.
    let mut v: u32 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        v = v.saturating_mul(radix).saturating_add(d);
    }
    Some(v)
}

/// Matches one reference at `s` (which starts right after `&`); returns the
/// consumed byte length, having pushed the replacement, or `None` when the
/// reference pattern does not match here.
fn charref(s: &str, out: &mut String) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (start, radix) = match b.get(1) {
            Some(b'x' | b'X') => (2, 16),
            _ => (1, 10),
        };
        let len = b[start..]
            .iter()
            .take_while(|c| {
                if radix == 16 {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        if len == 0 {
            return None;
        }
        let end = start + len;
        numeric(parse_num(&s[start..end], radix), out);
        return Some(end + usize::from(b.get(end) == Some(&b';')));
    }
    // Named: 1..=32 chars outside [\t\n\f <&#;], then an optional ';'.
    let mut end = 0;
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n == 32 || matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';') {
            break;
        }
        end = i + c.len_utf8();
    }
    if end == 0 {
        return None;
    }
    if b.get(end) == Some(&b';') {
        end += 1;
    }
    let name = &s[..end];
    if let Some(v) = html5().get(name) {
        out.push_str(v);
        return Some(end);
    }
    // Longest known prefix of at least two chars, the rest kept verbatim.
    let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &x in bounds.iter().rev() {
        if let Some(v) = html5().get(&name[..x]) {
            out.push_str(v);
            out.push_str(&name[x..]);
            return Some(end);
        }
    }
    out.push('&');
    out.push_str(name);
    Some(end)
}

/// CPython's `html.unescape`.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match charref(after, &mut out) {
            Some(n) => rest = &after[n..],
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// ftfy's `unescape_html`: only `&#?[0-9A-Za-z]{1,24};` is considered; known
/// names (plus upper-cased spellings of lower-case ones) and well-formed
/// numeric references are replaced.
pub(crate) fn ftfy_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let cand = &rest[i..];
        let b = cand.as_bytes();
        let hash = usize::from(b.get(1) == Some(&b'#'));
        let len = b[1 + hash..]
            .iter()
            .take(25)
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        let semi = 1 + hash + len;
        if (1..=24).contains(&len) && b.get(semi) == Some(&b';') {
            let ent = &cand[..=semi];
            if let Some(v) = ftfy_entities().get(&ent[1..]) {
                out.push_str(v);
            } else if hash == 1 {
                let un = unescape(ent);
                out.push_str(if un.contains(';') { ent } else { &un });
            } else {
                out.push_str(ent);
            }
            rest = &cand[semi + 1..];
        } else {
            out.push('&');
            rest = &cand[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_unescape_rules() {
        assert_eq!(unescape("&amp;amp;"), "&amp;");
        assert_eq!(unescape("&ampx &notit; &#128; &#0;"), "&x ¬it; € \u{FFFD}");
        assert_eq!(unescape("&#x1F600;&#99999999999;"), "😀\u{FFFD}");
        assert_eq!(unescape("&; & &# &#x;"), "&; & &# &#x;");
    }

    #[test]
    fn ftfy_unescape_rules() {
        assert_eq!(
            ftfy_unescape("&EACUTE; &eacute; &amp &#12a;"),
            "É é &amp &#12a;"
        );
    }
}
