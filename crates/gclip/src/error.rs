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
    #[error(transparent)]
    Vectors(#[from] gclip_vectors::VectorError),
    #[error(transparent)]
    Eval(#[from] gclip_eval::EvalError),
    #[error(transparent)]
    Train(#[from] gclip_train::TrainError),
    #[error(transparent)]
    Synth(#[from] gclip_synth::SynthError),
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("no default model is available: {0}")]
    NoDefaultModel(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Serialising a result (report, config) to JSON failed.
    #[error("serialising to JSON: {0}")]
    Serialize(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Error::Io` for `path`, for `map_err`.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
