//! Product titles and search queries: varied templates, synonyms and word
//! order, so the text tower cannot key on a fixed phrasing.

use rand::seq::IndexedRandom;
use rand::Rng;

use crate::catalog::{Attributes, QuerySpec};
use crate::vocab::{
    AUDIENCE_PHRASES, BRANDS, CATEGORIES, COLOURS, MATERIALS, PATTERN_SYNONYMS, PLAIN, STYLES,
};

fn pick<'a, R: Rng + ?Sized>(rng: &mut R, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or("")
}

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Joins non-empty words with single spaces.
fn words(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|w| !w.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A product title. Visual attributes (colour, pattern) are sometimes left
/// out so the image carries information the title lacks; text-only
/// attributes (material, style, audience, brand) appear only here.
pub(crate) fn title<R: Rng + ?Sized>(a: &Attributes, rng: &mut R) -> String {
    let cat = &CATEGORIES[a.category];
    let (sing, plur) = *cat.synonyms.choose(rng).unwrap_or(&cat.synonyms[0]);
    let noun = if cat.plural_item { plur } else { sing };
    let keep = |rng: &mut R, p: f32| rng.random::<f32>() < p;
    let colour = if keep(rng, 0.8) {
        pick(rng, COLOURS[a.colour].synonyms)
    } else {
        ""
    };
    let pattern = if a.pattern == PLAIN {
        if keep(rng, 0.3) {
            pick(rng, PATTERN_SYNONYMS[PLAIN])
        } else {
            ""
        }
    } else if keep(rng, 0.75) {
        pick(rng, PATTERN_SYNONYMS[a.pattern])
    } else {
        ""
    };
    let material = if keep(rng, 0.9) {
        MATERIALS[a.material]
    } else {
        ""
    };
    let style = if keep(rng, 0.7) { STYLES[a.style] } else { "" };
    let brand = if keep(rng, 0.92) { BRANDS[a.brand] } else { "" };
    let (aud_pre, aud_for) = match a.audience {
        Some(i) if keep(rng, 0.85) => *AUDIENCE_PHRASES[i]
            .choose(rng)
            .unwrap_or(&AUDIENCE_PHRASES[i][0]),
        _ => ("", ""),
    };
    let t = match rng.random_range(0..6) {
        0 => {
            let mut s = title_case(&words(&[brand, style, colour, pattern, material, noun]));
            if !aud_for.is_empty() {
                s = format!("{s} {aud_for}");
            }
            s
        }
        1 => {
            let head = title_case(&words(&[aud_pre, colour, material, noun]));
            let tail: Vec<&str> = [pattern, style, brand]
                .into_iter()
                .filter(|w| !w.is_empty())
                .collect();
            if tail.is_empty() {
                head
            } else {
                format!("{head} - {}", tail.join(" - "))
            }
        }
        2 => {
            let mut fields = vec![title_case(noun)];
            fields.extend(
                [colour, pattern, material, style]
                    .iter()
                    .filter(|w| !w.is_empty())
                    .map(|w| w.to_string()),
            );
            let mut s = fields.join(", ");
            if !aud_pre.is_empty() {
                s = format!("{s}, {aud_pre}");
            }
            if !brand.is_empty() {
                s = format!("{s} | {brand}");
            }
            s
        }
        3 => {
            let mut s = words(&[brand, noun]);
            let detail = words(&[colour, pattern, material]);
            if !detail.is_empty() {
                s = format!("{s} in {detail}");
            }
            if !aud_for.is_empty() {
                s = format!("{s} {aud_for}");
            }
            if !style.is_empty() {
                s = format!("{s}, {style} look");
            }
            s
        }
        4 => {
            let mut s = title_case(&words(&[style, material, aud_pre, noun]));
            let paren = [colour, pattern]
                .iter()
                .filter(|w| !w.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if !paren.is_empty() {
                s = format!("{s} ({paren})");
            }
            if !brand.is_empty() {
                s = format!("{s} by {brand}");
            }
            s
        }
        _ => {
            let mut s = words(&[brand, "-", colour, pattern, noun]);
            let made = if material.is_empty() {
                String::new()
            } else {
                format!("made of {material}")
            };
            s = words(&[&s, &made, aud_for]);
            s.trim_start_matches("- ").to_string()
        }
    };
    // Templates can leave stray separators when fields are dropped.
    t.replace("  ", " ")
        .trim()
        .trim_start_matches("- ")
        .to_string()
}

/// Natural phrasing of a query's attribute subset, e.g. "red striped shirt",
/// "leather boots for men", "women's vintage silk dress".
pub(crate) fn query_text<R: Rng + ?Sized>(q: &QuerySpec, rng: &mut R) -> String {
    phrase(q, rng, true)
}

/// How people caption a picture of a product; `{}` is the noun phrase. Only the
/// caption table uses these (the search queries never do).
pub const CAPTION_TEMPLATES: [&str; 12] = [
    "{}",
    "a {}",
    "the {}",
    "a photo of a {}.",
    "a photo of the {}.",
    "a picture of a {}",
    "an image of a {}.",
    "a drawing of a {}",
    "a product photo of a {}",
    "a close-up photo of a {}.",
    "{} on a plain background",
    "a {} for sale",
];

/// A caption of a product picture: a template around a phrase of what the picture
/// shows (the category, often the colour, sometimes the pattern; never the
/// title-only attributes), singular so the articles read right.
pub(crate) fn caption_text<R: Rng + ?Sized>(a: &Attributes, rng: &mut R) -> String {
    let spec = QuerySpec {
        category: Some(a.category),
        colour: (rng.random::<f32>() < 0.6).then_some(a.colour),
        pattern: (a.pattern != PLAIN && rng.random::<f32>() < 0.4).then_some(a.pattern),
        ..Default::default()
    };
    let phrase = phrase(&spec, rng, false);
    let template = CAPTION_TEMPLATES
        .choose(rng)
        .copied()
        .unwrap_or(CAPTION_TEMPLATES[0]);
    let starts_with_vowel = phrase.chars().next().is_some_and(|c| "aeiou".contains(c));
    let template = if starts_with_vowel {
        template.replace("a {}", "an {}")
    } else {
        template.to_string()
    };
    template.replace("{}", &phrase)
}

/// The noun phrase of an attribute subset; `allow_plural` lets the noun be plural
/// half the time (the random draw is made either way, so query texts do not depend
/// on it).
fn phrase<R: Rng + ?Sized>(q: &QuerySpec, rng: &mut R, allow_plural: bool) -> String {
    let noun = match q.category {
        Some(c) => {
            let (s, p) = *CATEGORIES[c]
                .synonyms
                .choose(rng)
                .unwrap_or(&CATEGORIES[c].synonyms[0]);
            if rng.random::<f32>() < 0.5 && allow_plural {
                p
            } else {
                s
            }
        }
        None => "",
    };
    let colour = q
        .colour
        .map(|c| pick(rng, COLOURS[c].synonyms))
        .unwrap_or("");
    let pattern = q
        .pattern
        .map(|p| pick(rng, PATTERN_SYNONYMS[p]))
        .unwrap_or("");
    let material = q.material.map(|m| MATERIALS[m]).unwrap_or("");
    let style = q.style.map(|s| STYLES[s]).unwrap_or("");
    let brand = q.brand.map(|b| BRANDS[b]).unwrap_or("");
    let (aud_pre, aud_for) = match q.audience {
        Some(i) => *AUDIENCE_PHRASES[i]
            .choose(rng)
            .unwrap_or(&AUDIENCE_PHRASES[i][0]),
        None => ("", ""),
    };
    let prefix_audience = rng.random::<bool>();
    // A query of just a brand reads "northwind", never "by northwind".
    let only_brand = [noun, colour, pattern, material, style]
        .iter()
        .all(|w| w.is_empty());
    let brand_first = rng.random::<f32>() < 0.6 || only_brand;
    // Colour and pattern order varies ("striped red" vs "red striped").
    let (v1, v2) = if rng.random::<f32>() < 0.75 {
        (colour, pattern)
    } else {
        (pattern, colour)
    };
    let (m1, s1) = if rng.random::<bool>() {
        (material, style)
    } else {
        ("", "")
    };
    let (m2, s2) = if m1.is_empty() && s1.is_empty() {
        (material, style)
    } else {
        ("", "")
    };
    let core = words(&[
        if brand_first { brand } else { "" },
        if prefix_audience { aud_pre } else { "" },
        s1,
        v1,
        v2,
        m1,
        s2,
        m2,
        noun,
    ]);
    let mut text = core;
    if !prefix_audience && !aud_for.is_empty() {
        text = words(&[&text, aud_for]);
    }
    if !brand_first && !brand.is_empty() {
        text = words(&[&text, "by", brand]);
    }
    text.to_lowercase().replace("  ", " ").trim().to_string()
}
