//! Error type of the model crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading configs, loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor the architecture needs is absent from the checkpoint.
    #[error("missing tensor `{key}` (expected shape {expected:?}){}", source_note(.source_key))]
    MissingTensor {
        /// Canonical (open_clip) key.
        key: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Key as spelled in the file, when it differs from the canonical one.
        source_key: Option<String>,
    },
    /// The checkpoint holds a tensor the architecture does not use.
    #[error("unexpected tensor `{key}` with shape {shape:?} (not part of this architecture)")]
    UnexpectedTensor {
        /// Key as found (after prefix stripping).
        key: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A tensor exists but its shape disagrees with the config.
    #[error("tensor `{key}` has shape {found:?}, expected {expected:?}{}", source_note(.source_key))]
    ShapeMismatch {
        /// Canonical (open_clip) key.
        key: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the checkpoint (in canonical orientation).
        found: Vec<usize>,
        /// Key as spelled in the file, when it differs from the canonical one.
        source_key: Option<String>,
    },
    /// `arch::by_name` got a name it does not ship.
    #[error("unknown architecture `{name}`; known: {}", .known.join(", "))]
    UnknownArch {
        /// The requested name.
        name: String,
        /// All shipped names.
        known: Vec<String>,
    },
    /// The config asks for a feature this implementation does not provide.
    #[error("unsupported model configuration: {0}")]
    Unsupported(String),
    /// A config file is malformed or lacks a required field.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A path could not be recognised as any supported checkpoint layout.
    #[error("cannot load model from {path}: {reason}")]
    UnrecognisedPath {
        /// The path given.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// Bad input tensor to an encoder (wrong rank, size, or token id out of range).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// File system error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// JSON parse or write error, with the file involved.
    #[error("{path}: {source}")]
    Json {
        /// The file being parsed.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// Error from the tensor library (also wraps checkpoint format errors it reports).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn source_note(source_key: &Option<String>) -> String {
    match source_key {
        Some(k) => format!(" [file key `{k}`]"),
        None => String::new(),
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}
