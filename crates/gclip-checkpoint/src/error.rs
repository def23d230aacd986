//! The error type of the checkpoint core.

use std::path::PathBuf;

use crate::pickle::PickleError;

/// Everything that can go wrong while reading configs, locating, loading or saving a
/// checkpoint (and, through [`CheckpointError::Tensor`], running a model built from it).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
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
    /// The config or file asks for a feature this implementation does not provide.
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
    /// A safetensors file whose header cannot be parsed.
    #[error("{path}: unreadable safetensors: {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser reported.
        source: safetensors::SafeTensorError,
    },
    /// A PyTorch checkpoint whose zip container cannot be read.
    #[error("{path}: unreadable PyTorch zip archive: {source}")]
    Zip {
        /// The file.
        path: PathBuf,
        /// What the zip reader reported.
        source: zip::result::ZipError,
    },
    /// A PyTorch checkpoint whose pickle (`data.pkl`) cannot be interpreted.
    #[error("{path}: unreadable PyTorch checkpoint: {source}")]
    Pickle {
        /// The file.
        path: PathBuf,
        /// What is wrong with the pickle stream.
        source: PickleError,
    },
    /// A weight file that parses but is internally inconsistent (a tensor pointing outside
    /// its storage, a storage member that is missing, ...).
    #[error("{path}: corrupt checkpoint: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is inconsistent, naming the tensor or member.
        detail: String,
    },
    /// Bad caller input (a tensor buffer of the wrong length, an impossible save option, ...).
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
    /// Error from the tensor library that runs a model built from the checkpoint (this crate
    /// has none; gclip-model wraps candle's errors here so one error type covers both).
    #[error("tensor library: {source}")]
    Tensor {
        /// The library's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn source_note(source_key: &Option<String>) -> String {
    match source_key {
        Some(k) => format!(" [file key `{k}`]"),
        None => String::new(),
    }
}

/// Result alias of this crate.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.into();
    move |source| CheckpointError::Io { path, source }
}
