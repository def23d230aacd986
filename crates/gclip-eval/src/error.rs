//! Error type of the crate.

use std::path::PathBuf;

pub use gclip_vectors::BoxError;

/// Everything that can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading or writing a file failed.
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A TREC run or qrels file has a malformed line.
    #[error("{path}:{line}: {msg}")]
    TrecFormat {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// The same document appears twice for one query (trec_eval refuses this too).
    #[error("duplicate document {doc:?} for query {query:?} in the {what}")]
    Duplicate {
        what: &'static str,
        query: String,
        doc: String,
    },
    /// A data or corpus file could not be parsed.
    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },
    /// The evaluation was configured inconsistently (bad cut-off, unknown column, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The encoder failed.
    #[error("the encoder failed")]
    Encoder(#[source] BoxError),
    /// The encoder returned something unusable (wrong count, ragged or non-finite vectors).
    #[error("encoder output invalid: {0}")]
    EncoderOutput(String),
    /// The embedding cache file is unusable.
    #[error("embedding cache {path}: {msg}")]
    Cache { path: PathBuf, msg: String },
    /// Vectors of inconsistent shapes.
    #[error("embeddings: {0}")]
    Vectors(#[from] gclip_vectors::VectorError),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias of the crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
    let path = path.into();
    move |source| EvalError::Io { path, source }
}
