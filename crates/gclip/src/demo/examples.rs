//! The two classic CLIP examples, drawn by the generator.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gclip_synth::vocab::{CATEGORIES, COLOURS, MATERIALS, PATTERNS, PLAIN};
use gclip_synth::Attributes;
use gclip_vectors::{cosine_matrix, softmax_rows};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::page::esc;
use super::{say, MARQO_DEMO_SCALE};
use crate::error::{io_err, Error, Result};
use crate::Clip;

/// Draws a product with chosen attributes into DIR/examples and returns its page-relative path.
fn draw_example(
    out: &Path,
    name: &str,
    attrs: &Attributes,
    size: usize,
    seed: u64,
) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let side = u32::try_from(size)
        .map_err(|_| Error::Invalid(format!("model image size {size} does not fit in u32")))?;
    let (img, _) = gclip_synth::render_attributes_with_mask(attrs, side, &mut rng)?;
    let rel = format!("examples/{name}.png");
    let path = out.join(&rel);
    img.save(&path)
        .map_err(|source| gclip_synth::SynthError::Image {
            path: path.clone(),
            source,
        })?;
    Ok(rel)
}

fn attrs(category: &str, colour: &str, pattern: usize, material: &str) -> Result<Attributes> {
    let find = |names: Vec<&str>, want: &str| {
        names.iter().position(|n| *n == want).ok_or_else(|| {
            Error::Invalid(format!("internal: {want:?} is not in the synth vocabulary"))
        })
    };
    Ok(Attributes {
        category: find(CATEGORIES.iter().map(|c| c.name).collect(), category)?,
        colour: find(COLOURS.iter().map(|c| c.name).collect(), colour)?,
        pattern,
        material: find(MATERIALS.to_vec(), material)?,
        ..Attributes::default()
    })
}

/// The two classic examples: open_clip's (images x captions, softmax at the model's scale)
/// and Marqo's (a product image against three captions, softmax at scale 10).
pub(super) fn seed_examples(
    clip: &Clip,
    size: usize,
    out: &Path,
    seed: u64,
    say_to: &mut dyn FnMut(&str),
) -> Result<String> {
    let dir = out.join("examples");
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut html = String::new();
    let striped = PATTERNS.iter().position(|p| *p == "striped").unwrap_or(1);
    let items = [
        (
            "red-striped-shirt",
            attrs("shirt", "red", striped, "cotton")?,
        ),
        ("blue-mug", attrs("mug", "blue", PLAIN, "ceramic")?),
        (
            "yellow-umbrella",
            attrs("umbrella", "yellow", PLAIN, "nylon")?,
        ),
    ];
    let captions: Vec<String> = [
        "a red striped shirt",
        "a blue mug",
        "a yellow umbrella",
        "a dog",
        "a cat",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut paths = Vec::new();
    for (k, (name, a)) in items.iter().enumerate() {
        paths.push(draw_example(out, name, a, size, seed ^ (k as u64 + 1))?);
    }
    let files: Vec<PathBuf> = paths.iter().map(|p| out.join(p)).collect();
    let img = clip.embed_image_files(&files, true)?;
    let txt = clip.embed_texts(&captions, true)?;
    let cos = cosine_matrix(&img, &txt)?;
    let scale = clip.logit_scale()?;
    let probs = softmax_rows(&cos, scale);
    say!(
        say_to,"   a) three images x five captions: cosine, and softmax over captions at the model's scale {scale:.1}");
    // Each column as wide as its caption, so the matrix stays narrow.
    let widths: Vec<usize> = captions.iter().map(|c| c.len().max(13) + 2).collect();
    say!(
        say_to,
        "      {:<18}{}",
        "",
        captions
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<String>()
    );
    let _ = write!(
        html,
        "<h3>Images x captions <small>cosine / softmax at the model's logit scale {scale:.1}</small></h3><table><tr><th></th>"
    );
    for c in &captions {
        let _ = write!(html, "<th>{}</th>", esc(c));
    }
    html.push_str("</tr>");
    for (k, (name, _)) in items.iter().enumerate() {
        let cells: String = cos[k]
            .iter()
            .zip(&probs[k])
            .zip(&widths)
            .map(|((c, p), w)| format!("{:>w$}", format!("{c:.3} / {p:.2}")))
            .collect();
        say!(say_to, "      {name:<18}{cells}");
        let _ = write!(
            html,
            "<tr><td><img class=q src=\"{}\"></td>{}</tr>",
            esc(&paths[k]),
            cos[k]
                .iter()
                .zip(&probs[k])
                .map(|(c, p)| format!("<td>{c:.3} / <b>{p:.2}</b></td>"))
                .collect::<String>()
        );
    }
    html.push_str("</table>");

    // Marqo's example: women's vintage oxfords. Style and audience are title-only
    // attributes in the synthetic world, so the picture shows a brown leather shoe.
    let mut oxford = attrs("shoe", "brown", PLAIN, "leather")?;
    oxford.style = gclip_synth::vocab::STYLES
        .iter()
        .position(|s| *s == "vintage")
        .unwrap_or(0);
    oxford.audience = gclip_synth::vocab::AUDIENCES
        .iter()
        .position(|a| *a == "women");
    let path = draw_example(out, "vintage-oxfords", &oxford, size, seed ^ 0x0f)?;
    let labels: Vec<String> = ["A dog", "Vintage Style Women's Oxfords", "A cat"]
        .map(str::to_owned)
        .to_vec();
    let img = clip.embed_image_files(&[out.join(&path)], true)?;
    let txt = clip.embed_texts(&labels, true)?;
    let cos = cosine_matrix(&img, &txt)?;
    let probs = softmax_rows(&cos, MARQO_DEMO_SCALE);
    say!(
        say_to,
        "   b) a brown leather shoe against three captions, softmax at scale {MARQO_DEMO_SCALE}"
    );
    let _ = write!(
        html,
        "<h3><img class=q src=\"{}\"> One product image against three captions <small>softmax(10 x cosine)</small></h3><table><tr><th>caption</th><th>cosine</th><th>probability</th></tr>",
        esc(&path)
    );
    for ((l, c), p) in labels.iter().zip(&cos[0]).zip(&probs[0]) {
        say!(say_to, "      {l:<32} cosine {c:.3}  probability {p:.3}");
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{c:.3}</td><td><b>{p:.3}</b></td></tr>",
            esc(l)
        );
    }
    html.push_str("</table>");
    Ok(html)
}
