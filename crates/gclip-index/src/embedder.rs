//! The one seam between the engine and a model: [`Embedder`]. The gclip facade implements it
//! for its `Clip`; tests use a small deterministic fake.

use crate::error::EmbedError;
use gclip_vectors::Embeddings;
use std::path::PathBuf;

/// An image handed to the embedder: a local path, a URL, or encoded bytes (PNG, JPEG, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageInput {
    Path(PathBuf),
    Url(String),
    Bytes(Vec<u8>),
}

impl ImageInput {
    /// A short description for error messages (never the bytes themselves).
    pub fn describe(&self) -> String {
        match self {
            ImageInput::Path(p) => p.display().to_string(),
            ImageInput::Url(u) => u.clone(),
            ImageInput::Bytes(b) => format!("<{} bytes>", b.len()),
        }
    }
}

/// A model that turns texts and images into vectors of one dimension.
///
/// Implementations must be deterministic for a given `model_id`: the index reuses stored
/// vectors when content is unchanged and refuses to open under another `model_id`.
pub trait Embedder: Send + Sync {
    /// A stable identity of the model (e.g. checkpoint name and a hash); an index is pinned to it.
    fn model_id(&self) -> String;
    /// The dimension of every vector this embedder returns.
    fn dim(&self) -> usize;
    /// Embeds a batch of texts (one row each, not normalised by contract; the index normalises
    /// when its settings say so). An error fails the whole batch.
    fn embed_texts(&self, texts: &[&str]) -> Result<Embeddings, EmbedError>;
    /// Embeds images one result per input, so that one corrupt image fails only its document.
    fn embed_images(&self, images: &[ImageInput]) -> Vec<Result<Vec<f32>, EmbedError>>;
    /// Number of tokens the text tower would see (used to warn about truncated chunks).
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
    /// Tokens the text tower reads at most; chunks longer than this are truncated by the model.
    fn context_length(&self) -> usize {
        77
    }
}
