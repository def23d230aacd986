//! A deterministic bag-of-words embedder, so tests need no model: each word adds a fixed
//! pseudo-random direction, so texts sharing words are close. Images are "decoded" from bytes
//! (or files) that start with `IMG:`; anything else is a corrupt image.

#![allow(dead_code)]

use gclip_index::{EmbedError, Embedder, Embeddings, ImageInput};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const DIM: usize = 32;

#[derive(Default)]
pub struct FakeEmbedder {
    pub texts_embedded: AtomicUsize,
    pub images_embedded: AtomicUsize,
    pub id: Option<String>,
}

pub fn word_vec(word: &str) -> [f32; DIM] {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in word.to_lowercase().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let mut v = [0f32; DIM];
    for x in v.iter_mut() {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        *x = ((h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32;
    }
    v
}

pub fn text_vec(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        for (a, b) in v.iter_mut().zip(word_vec(w)) {
            *a += b;
        }
    }
    v
}

pub fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

impl Embedder for FakeEmbedder {
    fn model_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| "fake-bow-32".into())
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn embed_texts(&self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        self.texts_embedded.fetch_add(texts.len(), Ordering::SeqCst);
        let rows: Vec<Vec<f32>> = texts.iter().map(|t| text_vec(t)).collect();
        Embeddings::from_rows(DIM, &rows).map_err(|e| EmbedError::with_source("rows", e))
    }
    fn embed_images(&self, images: &[ImageInput]) -> Vec<Result<Vec<f32>, EmbedError>> {
        images
            .iter()
            .map(|i| {
                self.images_embedded.fetch_add(1, Ordering::SeqCst);
                let bytes = match i {
                    ImageInput::Bytes(b) => b.clone(),
                    ImageInput::Path(p) => std::fs::read(p).map_err(|e| {
                        EmbedError::with_source(format!("cannot read {}", p.display()), e)
                    })?,
                    ImageInput::Url(u) => {
                        return Err(EmbedError::new(format!("cannot download {u}")))
                    }
                };
                match bytes.strip_prefix(b"IMG:") {
                    Some(rest) => Ok(text_vec(&String::from_utf8_lossy(rest))),
                    None => Err(EmbedError::new(format!("corrupt image {}", i.describe()))),
                }
            })
            .collect()
    }
}
