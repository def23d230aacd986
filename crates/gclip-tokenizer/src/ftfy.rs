//! The text fixes of ftfy 6.3's `fix_text` with its default configuration,
//! reimplemented from its documented behaviour so that CLIP sees the same
//! characters as the reference. Character sets and codec tables come from
//! `tables.rs` (generated from ftfy itself).

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::bytes::Regex as BytesRegex;
use regex::Regex;
use unicode_normalization::{IsNormalized, UnicodeNormalization};

use crate::html::ftfy_unescape;
use crate::pretok::in_ranges;
use crate::tables::*;

/// ftfy fixes text in segments of at most this many characters (per line).
const MAX_DECODE_LENGTH: usize = 1_000_000;

const LATIN_1: usize = 0;
const SLOPPY_1252: usize = 1;
const MACROMAN: usize = 8;

/// Python `str.isspace`, used by ftfy's `\s`.
const PY_SPACE_CLASS: &str = r"\t\n\x0B\x0C\r\x1C-\x1F \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}";

/// `fix_text`: splits into lines (and 1M-char chunks), fixing each until it
/// stops changing. HTML unescaping is disabled from the first segment
/// containing `<` onwards, as in ftfy's "auto" mode.
pub(crate) fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        if let Some((i, _)) = rest[..end].char_indices().nth(MAX_DECODE_LENGTH) {
            end = i;
        }
        let segment = &rest[..end];
        if unescape && segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
        rest = &rest[end..];
    }
    out
}

fn fix_segment(text: &str, unescape: bool) -> String {
    let mut text = text.to_string();
    loop {
        let orig = text.clone();
        if unescape {
            text = ftfy_unescape(&text);
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text).into_owned();
        text = map_chars(&text, |c, out| {
            match c {
                // fix_latin_ligatures
                '\u{132}' => out.push_str("IJ"),
                '\u{133}' => out.push_str("ij"),
                '\u{149}' => out.push_str("\u{2bc}n"),
                '\u{1f1}' => out.push_str("DZ"),
                '\u{1f2}' => out.push_str("Dz"),
                '\u{1f3}' => out.push_str("dz"),
                '\u{1c4}' => out.push_str("D\u{17d}"),
                '\u{1c5}' => out.push_str("D\u{17e}"),
                '\u{1c6}' => out.push_str("d\u{17e}"),
                '\u{1c7}' => out.push_str("LJ"),
                '\u{1c8}' => out.push_str("Lj"),
                '\u{1c9}' => out.push_str("lj"),
                '\u{1ca}' => out.push_str("NJ"),
                '\u{1cb}' => out.push_str("Nj"),
                '\u{1cc}' => out.push_str("nj"),
                '\u{fb00}' => out.push_str("ff"),
                '\u{fb01}' => out.push_str("fi"),
                '\u{fb02}' => out.push_str("fl"),
                '\u{fb03}' => out.push_str("ffi"),
                '\u{fb04}' => out.push_str("ffl"),
                '\u{fb05}' => out.push_str("\u{17f}t"),
                '\u{fb06}' => out.push_str("st"),
                _ => return false,
            }
            true
        });
        text = map_chars(&text, |c, out| {
            // fix_character_width
            let cp = c as u32;
            if cp == 0x3000 || (0xFF01..0xFFF0).contains(&cp) {
                if let Ok(i) = WIDTH_MAP.binary_search_by_key(&cp, |&(k, _)| k) {
                    out.push_str(WIDTH_MAP[i].1);
                    return true;
                }
            }
            false
        });
        text = map_chars(&text, |c, out| {
            // uncurl_quotes
            match c {
                '\u{2bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
                '\u{201c}'..='\u{201f}' => out.push('"'),
                _ => return false,
            }
            true
        });
        // fix_line_breaks
        if text.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']) {
            text = text
                .replace("\r\n", "\n")
                .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
        }
        // remove_terminal_escapes
        if text.contains('\x1b') {
            text = terminal_escape_re().replace_all(&text, "").into_owned();
        }
        // remove_control_chars
        text = map_chars(&text, |c, _| {
            matches!(c, '\0'..='\x08' | '\x0b' | '\x0e'..='\x1f' | '\x7f'
                | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
        });
        if unicode_normalization::is_nfc_quick(text.chars()) != IsNormalized::Yes {
            text = text.nfc().collect();
        }
        if text == orig {
            return text;
        }
    }
}

/// Rebuilds `text` only if `f` handles (returns true for) some char.
fn map_chars(text: &str, f: impl Fn(char, &mut String) -> bool) -> String {
    let mut probe = String::new();
    let Some(first) = text.char_indices().find(|&(_, c)| {
        probe.clear();
        f(c, &mut probe)
    }) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first.0]);
    for c in text[first.0..].chars() {
        if !f(c, &mut out) {
            out.push(c);
        }
    }
    out
}

fn terminal_escape_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\x1b\[(?:\d|;)*[a-zA-Z]").expect("valid regex"))
}

/// C1 controls (U+0080..U+009F) read as Windows-1252 bytes.
fn fix_c1_controls(text: &str) -> Cow<'_, str> {
    if !text.contains(|c: char| ('\u{80}'..='\u{9f}').contains(&c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if ('\u{80}'..='\u{9f}').contains(&c) {
                    char::from_u32(CHARMAPS[SLOPPY_1252][c as usize]).unwrap_or(c)
                } else {
                    c
                }
            })
            .collect(),
    )
}

// ---------------------------------------------------------------- mojibake

fn class(sets: &[&[(u32, u32)]]) -> String {
    let mut s = String::new();
    for set in sets {
        for &(a, b) in *set {
            s.push_str(&format!("\\x{{{a:X}}}"));
            if b != a {
                s.push_str(&format!("-\\x{{{b:X}}}"));
            }
        }
    }
    s
}

/// ftfy's badness heuristic: sequences of characters that are far more
/// likely to be mojibake than intended text.
fn badness_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let c1 = class(&[MOJI_C1]);
        let bad = class(&[MOJI_BAD]);
        let la = class(&[MOJI_LOWER_ACCENTED]);
        let ua = class(&[MOJI_UPPER_ACCENTED]);
        let bx = class(&[MOJI_BOX]);
        let sp = class(&[MOJI_START_PUNCTUATION]);
        let ep = class(&[MOJI_END_PUNCTUATION]);
        let cu = class(&[MOJI_CURRENCY]);
        let nu = class(&[MOJI_NUMERIC]);
        let law = class(&[MOJI_LAW]);
        let lc = class(&[MOJI_LOWER_COMMON]);
        let uc = class(&[MOJI_UPPER_COMMON]);
        let km = class(&[MOJI_KAOMOJI]);
        let co = class(&[MOJI_COMMON]);
        let ws = PY_SPACE_CLASS;
        let word = class(&[PY_WORD]);
        let rules = [
            format!("[{c1}]"),
            format!("[{bad}{la}{ua}{bx}{sp}{ep}{cu}{nu}{law}][{bad}]"),
            format!("[a-zA-Z][{lc}{uc}][{bad}]"),
            format!("[{bad}][{la}{ua}{bx}{sp}{ep}{cu}{nu}{law}]"),
            format!("[{la}{lc}{bx}{ep}{cu}{nu}][{ua}]"),
            format!("[{bx}{ep}{cu}{nu}][{la}]"),
            format!("[{la}{bx}{ep}][{cu}]"),
            format!("[{ws}][{ua}][{cu}]"),
            format!("[{ua}{bx}][{nu}{law}]"),
            format!("[{la}{ua}{bx}{cu}{ep}][{sp}][{nu}]"),
            format!("[{la}{ua}{cu}{nu}{bx}{law}][{ep}][{sp}]"),
            format!("[{cu}{nu}{bx}][{sp}]"),
            format!("[a-z][{ua}][{sp}{cu}]"),
            format!("[{bx}][{km}]"),
            format!("[{la}{ua}{cu}{nu}{sp}{ep}{law}][{bx}]"),
            format!("[{bx}][{ep}]"),
            format!("[{la}{ua}][{sp}{ep}][{word}]"),
            "[Œœ][^A-Za-z]".to_string(),
            format!("[{ua}]°"),
            format!("[ÂÃÎÐ][€œŠš¢£Ÿž\\x{{A0}}\\x{{AD}}®©°·»{sp}{ep}–—´]"),
            "×[²³]".to_string(),
            format!("[ØÙ][{co}{cu}{bad}{nu}{sp}ŸŠ®°µ»][ØÙ][{co}{cu}{bad}{nu}{sp}ŸŠ®°µ»]"),
            "à[²µ¹¼½¾]".to_string(),
            "√[±∂†≠®™´≤≥¥µø]".to_string(),
            "≈[°¢]".to_string(),
            "‚Ä[ìîïòôúùû†°¢π]".to_string(),
            "‚[âó][àä°ê]".to_string(),
            "вЂ".to_string(),
            format!("[ВГРС][{c1}{bad}{sp}{ep}{cu}°µ][ВГРС]"),
            "ГўВЂВ.[A-Za-z ]".to_string(),
            "Ã[\\x{A0}¡]".to_string(),
            format!("[a-z][{ws}]?[ÃÂ] "),
            "^[ÃÂ] ".to_string(),
            format!("[a-z.,?!{ep}]Â[ {sp}{ep}]"),
            "β€[™\\x{A0}Ά\\x{AD}®°]".to_string(),
            format!("[ΒΓΞΟ][{c1}{bad}{sp}{ep}{cu}°][ΒΓΞΟ]"),
            "ā€".to_string(),
        ];
        Regex::new(&rules.join("|")).expect("valid badness regex")
    })
}

pub(crate) fn is_bad(text: &str) -> bool {
    badness_re().is_match(text)
}

/// Runs of what look like UTF-8 sequences decoded in a single-byte codec
/// (without ftfy's look-behind, which `utf8_detector_find` applies).
fn utf8_detector_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let f2 = class(&[CLUE_UTF8_FIRST_OF_2]);
        let f3 = class(&[CLUE_UTF8_FIRST_OF_3]);
        let f4 = class(&[CLUE_UTF8_FIRST_OF_4]);
        let cont = class(&[CLUE_UTF8_CONTINUATION]);
        Regex::new(&format!(
            "(?:[{f2}][{cont}]|[{f3}][{cont}]{{2}}|[{f4}][{cont}]{{3}})+"
        ))
        .expect("valid detector regex")
    })
}

/// Next detector match at or after `pos` not preceded by a (strict, i.e.
/// not space) continuation character.
fn utf8_detector_find(text: &str, mut pos: usize) -> Option<(usize, usize)> {
    while pos <= text.len() {
        let m = utf8_detector_re().find_at(text, pos)?;
        let prev = text[..m.start()].chars().next_back();
        if prev.is_some_and(|c| in_ranges(CLUE_UTF8_CONTINUATION_STRICT, c)) {
            pos = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        return Some((m.start(), m.end()));
    }
    None
}

fn altered_utf8_re() -> &'static BytesRegex {
    static RE: OnceLock<BytesRegex> = OnceLock::new();
    RE.get_or_init(|| {
        BytesRegex::new(
            r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9] |[\xe2\xe3] [\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf] |\xf0 [\x80-\xbf][\x80-\xbf]|\xf0[\x80-\xbf] [\x80-\xbf]|\xf0[\x80-\xbf][\x80-\xbf] ",
        )
        .expect("valid regex")
    })
}

fn lossy_utf8_re() -> &'static BytesRegex {
    static RE: OnceLock<BytesRegex> = OnceLock::new();
    RE.get_or_init(|| {
        BytesRegex::new(
            r"(?-u)[\xc2-\xdf]\x1a|[\xc2-\xc3]\?|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a",
        )
        .expect("valid regex")
    })
}

/// Encodes `text` in single-byte codec `enc`, or `None` if some character
/// is outside it. Byte 0x1A is only reachable through the codec's own
/// mapping (ftfy's sloppy codecs map it to U+FFFD).
fn encode_charmap(text: &str, enc: usize) -> Option<Vec<u8>> {
    let table = &CHARMAPS[enc];
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let cp = c as u32;
        if cp < 0x80 && cp != 0x1A {
            out.push(cp as u8);
            continue;
        }
        let pos = (0x80..0x100).chain([0x1A]).find(|&b| table[b] == cp)?;
        out.push(pos as u8);
    }
    Some(out)
}

/// `restore_byte_a0`: spaces that stand for a lost 0xA0 byte inside UTF-8.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // "à " as the Portuguese/French word, unless followed by one of a few
    // continuations that make a space after 0xC3 plausible.
    let mut fixed = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xC3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            let blocked = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                .iter()
                .any(|p| after.starts_with(p));
            if !blocked {
                fixed.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        fixed.push(bytes[i]);
        i += 1;
    }
    altered_utf8_re()
        .replace_all(&fixed, |c: &regex::bytes::Captures<'_>| {
            c[0].iter()
                .map(|&b| if b == b' ' { 0xA0 } else { b })
                .collect::<Vec<u8>>()
        })
        .into_owned()
}

/// ftfy's `utf-8-variants`: UTF-8 that also accepts CESU-8 surrogate pairs
/// and Java's `C0 80` for NUL.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0xC0 && bytes.get(i + 1) == Some(&0x80) {
            out.push('\0');
            i += 2;
            continue;
        }
        if b == 0xED && i + 6 <= bytes.len() {
            let s = &bytes[i..i + 6];
            if (0xA0..=0xAF).contains(&s[1])
                && (0x80..=0xBF).contains(&s[2])
                && s[3] == 0xED
                && (0xB0..=0xBF).contains(&s[4])
                && (0x80..=0xBF).contains(&s[5])
            {
                let cp = (((s[1] & 0x0F) as u32) << 16)
                    + (((s[2] & 0x3F) as u32) << 10)
                    + (((s[4] & 0x0F) as u32) << 6)
                    + (s[5] & 0x3F) as u32
                    + 0x10000;
                out.push(char::from_u32(cp)?);
                i += 6;
                continue;
            }
        }
        let len = match b {
            0x00..=0x7F => 1,
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return None,
        };
        let chunk = bytes.get(i..i + len)?;
        out.push_str(std::str::from_utf8(chunk).ok()?);
        i += len;
    }
    Some(out)
}

fn fix_encoding(text: &str) -> String {
    let mut text = text.to_string();
    loop {
        match fix_encoding_step(&text) {
            Some(fixed) if fixed != text => text = fixed,
            _ => return text,
        }
    }
}

/// One step of ftfy's encoding repair; `None` means unchanged.
fn fix_encoding_step(text: &str) -> Option<String> {
    if text.is_ascii() || !is_bad(text) {
        return None;
    }
    let mut latin1_possible = false;
    for (enc, name) in CHARMAP_NAMES.iter().enumerate() {
        let Some(mut bytes) = encode_charmap(text, enc) else {
            continue;
        };
        if enc == LATIN_1 {
            latin1_possible = true;
        }
        if enc != MACROMAN && altered_utf8_re().is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if name.starts_with("sloppy") {
            bytes = lossy_utf8_re()
                .replace_all(&bytes, &b"\xef\xbf\xbd"[..])
                .into_owned();
        }
        let decoded = if bytes.contains(&0xED) || bytes.contains(&0xC0) {
            decode_utf8_variants(&bytes)
        } else {
            String::from_utf8(bytes).ok()
        };
        if let Some(fixed) = decoded {
            return Some(fixed);
        }
    }
    if utf8_detector_find(text, 0).is_some() {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return Some(fixed);
        }
    }
    if latin1_possible {
        // Latin-1 text with C1 controls is taken as (strict) Windows-1252.
        if let Some(fixed) = latin1_as_windows_1252(text) {
            if fixed != text {
                return Some(fixed);
            }
        }
    }
    if text.contains(|c: char| ('\u{80}'..='\u{9f}').contains(&c)) {
        return Some(fix_c1_controls(text).into_owned());
    }
    None
}

/// `text.encode("latin-1").decode("windows-1252")`; strict Windows-1252
/// leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined.
fn latin1_as_windows_1252(text: &str) -> Option<String> {
    text.chars()
        .map(|c| match c as u32 {
            0x81 | 0x8D | 0x8F | 0x90 | 0x9D => None,
            cp @ 0x80..=0x9F => char::from_u32(CHARMAPS[SLOPPY_1252][cp as usize]),
            _ => Some(c),
        })
        .collect()
}

/// Fixes mojibake runs embedded in otherwise fine text.
fn decode_inconsistent_utf8(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut pos = 0;
    while let Some((s, e)) = utf8_detector_find(text, pos) {
        let sub = &text[s..e];
        out.push_str(&text[last..s]);
        if sub.len() < text.len() && is_bad(sub) {
            out.push_str(&fix_encoding(sub));
        } else {
            out.push_str(sub);
        }
        last = e;
        // An empty match cannot happen (the pattern needs 2+ chars).
        pos = e;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_common_mojibake() {
        assert_eq!(fix_text("sÃ³"), "só");
        assert_eq!(fix_text("âœ” No problems"), "✔ No problems");
        assert_eq!(fix_text("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
    }
}
