//! Error type of the training crate.

use std::path::PathBuf;

/// Everything that can go wrong while configuring or running training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration is invalid (bad key, bad value, inconsistent options).
    #[error("invalid training config: {0}")]
    Config(String),
    /// The training data is unusable (missing column, parse error, no rows).
    #[error("training data: {0}")]
    Data(String),
    /// The model core failed to load, build or save a model.
    #[error("model: {0}")]
    Model(String),
    /// The caller's tokenizer / preprocessing resolver failed.
    #[error("choosing the tokenizer and image preprocessing")]
    Codecs(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A checkpoint to resume from is missing or inconsistent.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The loss became NaN or infinite.
    #[error("loss is not finite at step {step}: {value}")]
    NonFiniteLoss {
        /// Optimizer step at which it happened.
        step: usize,
        /// The offending value.
        value: f32,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;
