use std::path::PathBuf;

/// Errors of the gclip facade; each wraps the failing layer's error with its context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] gclip_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] gclip_tokenizer::Error),
    #[error("{path}: {source}")]
    Image {
        path: PathBuf,
        source: gclip_image::ImageError,
    },
    #[error(transparent)]
    Preprocess(#[from] gclip_image::ImageError),
    #[error(transparent)]
    Engine(#[from] gclip_engine::EngineError),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("no default model is available: {0}")]
    NoDefaultModel(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
