//! Error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while decoding or preprocessing an image.
///
/// Messages name the file (when known) and the problem so that a user can act on them.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read image file {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The bytes are not in any supported image format (sniffed from content, not the name).
    #[error("unrecognised image format{}: expected JPEG, PNG, WebP, GIF, BMP or TIFF", at(.path))]
    UnknownFormat {
        /// The file, when decoding from a path.
        path: Option<PathBuf>,
    },
    /// The decoder rejected the data (truncated, corrupt or unsupported variant).
    #[error("cannot decode {format} image{}: {message}", at(.path))]
    Decode {
        /// The file, when decoding from a path.
        path: Option<PathBuf>,
        /// Detected container format.
        format: String,
        /// Decoder's explanation.
        message: String,
    },
    /// The image has no pixels.
    #[error("image{} has zero size ({width}x{height})", at(.path))]
    ZeroSize {
        /// The file, when decoding from a path.
        path: Option<PathBuf>,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The image exceeds a configured limit (decompression-bomb protection).
    #[error("image{} is too large: {what}", at(.path))]
    TooLarge {
        /// The file, when decoding from a path.
        path: Option<PathBuf>,
        /// Which limit was exceeded and by how much.
        what: String,
    },
    /// The preprocessing configuration is invalid.
    #[error("invalid preprocessing config: {0}")]
    Config(String),
    /// A model-directory config file could not be parsed.
    #[error("cannot parse {path}: {message}")]
    ConfigFile {
        /// The config file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

fn at(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" {}", p.display()),
        None => String::new(),
    }
}

impl ImageError {
    /// Attach a file name to an error produced while decoding in-memory bytes.
    pub fn with_path(mut self, p: &std::path::Path) -> Self {
        match &mut self {
            ImageError::UnknownFormat { path }
            | ImageError::Decode { path, .. }
            | ImageError::ZeroSize { path, .. }
            | ImageError::TooLarge { path, .. } => *path = Some(p.to_path_buf()),
            _ => {}
        }
        self
    }
}

/// Result alias of the crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
