//! Errors of the index engine. Each variant maps to one Marqo error code ([`Error::code`]) so
//! that an HTTP layer can answer with the right status without parsing messages.

use std::path::PathBuf;

/// A filter string that failed to parse, with the byte position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position} in filter `{filter}`")]
pub struct FilterError {
    pub message: String,
    pub position: usize,
    pub filter: String,
}

/// What an embedder reports when it cannot embed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EmbedError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl EmbedError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("index `{0}` not found")]
    IndexNotFound(String),
    #[error("index `{0}` already exists")]
    IndexAlreadyExists(String),
    #[error("document `{0}` not found")]
    DocumentNotFound(String),
    #[error(
        "invalid index name `{0}`: use letters, digits, `_` and `-`, not starting with a digit"
    )]
    InvalidIndexName(String),
    #[error("invalid field name `{name}`: {reason}")]
    InvalidFieldName { name: String, reason: String },
    #[error("invalid document id: {0}")]
    InvalidDocumentId(String),
    #[error("document is {size} bytes, over the limit of {limit} bytes")]
    DocTooLarge { size: usize, limit: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("invalid settings: {0}")]
    InvalidSettings(#[source] serde_json::Error),
    #[error(
        "index `{index}` was built with model `{stored}` (dim {stored_dim}); it cannot be opened \
         with model `{given}` (dim {given_dim})"
    )]
    ModelMismatch {
        index: String,
        stored: String,
        stored_dim: usize,
        given: String,
        given_dim: usize,
    },
    #[error(
        "index at {path} has storage layout version {found}; this gclip reads version {supported} \
         (use a gclip release that reads layout {found}, or re-create the index)"
    )]
    LayoutVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Vector(#[from] gclip_vectors::VectorError),
    #[error("storage error: {0}")]
    Storage(#[source] Box<redb::Error>),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("text index at {path}: {source}")]
    TextIndex {
        path: PathBuf,
        #[source]
        source: Box<tantivy::TantivyError>,
    },
}

impl Error {
    /// The Marqo error code for this error (`invalid_argument`, `index_not_found`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Error::IndexNotFound(_) => "index_not_found",
            Error::IndexAlreadyExists(_) => "index_already_exists",
            Error::DocumentNotFound(_) => "document_not_found",
            Error::InvalidIndexName(_) => "invalid_index_name",
            Error::InvalidFieldName { .. } => "invalid_field_name",
            Error::InvalidDocumentId(_) => "invalid_document_id",
            Error::DocTooLarge { .. } => "doc_too_large",
            Error::InvalidArgument(_)
            | Error::Filter(_)
            | Error::InvalidSettings(_)
            | Error::Vector(_)
            | Error::ModelMismatch { .. } => "invalid_argument",
            Error::Embed(_) => "invalid_argument",
            Error::LayoutVersion { .. }
            | Error::Storage(_)
            | Error::Io { .. }
            | Error::Corrupt(_)
            | Error::TextIndex { .. } => "internal",
        }
    }

    /// The HTTP status Marqo answers with for [`Error::code`].
    pub fn http_status(&self) -> u16 {
        match self.code() {
            "index_not_found" | "document_not_found" => 404,
            "index_already_exists" => 409,
            "internal" => 500,
            _ => 400,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Storage(Box::new(e.into()))
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T, E = Error> = std::result::Result<T, E>;
