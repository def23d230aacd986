//! Image-text retrieval on caption pairs (COCO / Flickr style): text-to-image and
//! image-to-text recall@k, an image being allowed several captions.

use std::collections::HashMap;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use gclip_vectors::FieldEncoder;

use crate::encoder::check_batch;
use crate::error::{EvalError, Result};
use crate::search::dot;
use crate::zeroshot::embed_images;

/// Recall figures of [`evaluate_pairs`].
#[derive(Debug, Clone, Serialize)]
pub struct PairsReport {
    /// Model id of the encoder.
    pub model: String,
    /// Distinct images.
    pub num_images: usize,
    /// Captions (pairs).
    pub num_captions: usize,
    /// The k values.
    pub ks: Vec<usize>,
    /// Text-to-image recall@k: a caption's own image is within the top k images.
    pub t2i: Vec<f64>,
    /// Image-to-text recall@k: one of the image's captions is within the top k captions.
    pub i2t: Vec<f64>,
}

/// Scores `(image, caption)` pairs. Images are deduplicated by path; equal scores
/// rank the lower index first.
pub fn evaluate_pairs(
    enc: &mut dyn FieldEncoder,
    pairs: &[(PathBuf, String)],
    ks: &[usize],
    batch: usize,
) -> Result<PairsReport> {
    if pairs.is_empty() {
        return Err(EvalError::Config("no pairs".into()));
    }
    let mut image_index: HashMap<&PathBuf, usize> = HashMap::new();
    let mut images: Vec<PathBuf> = Vec::new();
    let mut owner = Vec::with_capacity(pairs.len());
    for (p, _) in pairs {
        let i = *image_index.entry(p).or_insert_with(|| {
            images.push(p.clone());
            images.len() - 1
        });
        owner.push(i);
    }
    let img = embed_images(enc, &images, batch)?;
    let mut txt: Option<gclip_vectors::Embeddings> = None;
    for chunk in pairs.chunks(batch.max(1)) {
        let texts: Vec<String> = chunk.iter().map(|(_, c)| c.clone()).collect();
        let e = enc.encode_texts(&texts).map_err(EvalError::Encoder)?;
        check_batch(texts.len(), &e)?;
        match &mut txt {
            Some(t) => t
                .extend(&e)
                .map_err(|e| EvalError::EncoderOutput(e.to_string()))?,
            None => txt = Some(e),
        }
    }
    let mut txt = txt.ok_or_else(|| EvalError::Config("no pairs".into()))?;
    txt.normalize();
    if txt.dim() != img.dim() {
        return Err(EvalError::EncoderOutput(format!(
            "image embeddings have {} dimensions, text {}",
            img.dim(),
            txt.dim()
        )));
    }
    // t2i: rank of the caption's own image among all images.
    let txt_rows: Vec<&[f32]> = txt.rows().collect();
    let img_rows: Vec<&[f32]> = img.rows().collect();
    let t2i_rank: Vec<usize> = (0..txt_rows.len())
        .into_par_iter()
        .map(|t| {
            let s: Vec<f32> = img_rows.iter().map(|i| dot(txt_rows[t], i)).collect();
            let own = owner[t];
            s.iter()
                .enumerate()
                .filter(|&(j, &x)| x > s[own] || (x == s[own] && j < own))
                .count()
        })
        .collect();
    // i2t: rank of the best-ranked caption of the image among all captions.
    let mut captions_of: Vec<Vec<usize>> = vec![Vec::new(); images.len()];
    for (t, &i) in owner.iter().enumerate() {
        captions_of[i].push(t);
    }
    let i2t_rank: Vec<usize> = (0..img_rows.len())
        .into_par_iter()
        .map(|i| {
            let s: Vec<f32> = txt_rows.iter().map(|t| dot(img_rows[i], t)).collect();
            let better = |a: usize, b: usize| s[a] > s[b] || (s[a] == s[b] && a < b);
            let best = captions_of[i]
                .iter()
                .copied()
                .reduce(|a, b| if better(b, a) { b } else { a })
                .unwrap_or(0);
            (0..txt_rows.len())
                .filter(|&t| t != best && better(t, best))
                .count()
        })
        .collect();
    let recall = |ranks: &[usize], k: usize| {
        ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len() as f64
    };
    Ok(PairsReport {
        model: enc.model_id(),
        num_images: images.len(),
        num_captions: pairs.len(),
        ks: ks.to_vec(),
        t2i: ks.iter().map(|&k| recall(&t2i_rank, k)).collect(),
        i2t: ks.iter().map(|&k| recall(&i2t_rank, k)).collect(),
    })
}
