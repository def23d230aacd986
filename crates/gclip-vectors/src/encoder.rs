//! The model boundary every consumer of embeddings (evaluation, caches, orchestration) works
//! through, so that none of them needs to know which model or runtime produces the vectors.

use std::path::PathBuf;

use crate::Embeddings;

/// Boxed error returned by [`FieldEncoder`] implementations (any `std::error::Error`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Anything that turns texts and images into embedding vectors.
///
/// Implementations may return unnormalised vectors; consumers normalise them. Every
/// returned batch must have one row per input.
pub trait FieldEncoder {
    /// Embeds texts.
    fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError>;
    /// Embeds the images stored at `paths`.
    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError>;
    /// Identifies the model (architecture, preprocessing, where it was loaded from): part of
    /// every cache key.
    fn model_id(&self) -> String;
    /// The files holding the weights (and their configs), so that caches can fingerprint
    /// them: a checkpoint rewritten in place must not be served stale embeddings. Empty
    /// when the model does not come from files.
    fn weight_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

impl<T: FieldEncoder + ?Sized> FieldEncoder for Box<T> {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError> {
        (**self).encode_texts(texts)
    }
    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError> {
        (**self).encode_images(paths)
    }
    fn model_id(&self) -> String {
        (**self).model_id()
    }
    fn weight_files(&self) -> Vec<PathBuf> {
        (**self).weight_files()
    }
}

impl<T: FieldEncoder + ?Sized> FieldEncoder for &mut T {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError> {
        (**self).encode_texts(texts)
    }
    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError> {
        (**self).encode_images(paths)
    }
    fn model_id(&self) -> String {
        (**self).model_id()
    }
    fn weight_files(&self) -> Vec<PathBuf> {
        (**self).weight_files()
    }
}
