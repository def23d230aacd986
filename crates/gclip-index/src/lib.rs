//! gclip-index: a durable multimodal search engine library.
//!
//! An [`Engine`] owns a data directory (default: [`default_data_dir`]) of named indexes. Each
//! [`Index`] stores documents (JSON objects with `_id` and fields) in redb, its one
//! crash-safe source of truth, and keeps derived structures for search: float32 vectors (with
//! optional float16 / int8 codes for traversal), an HNSW graph persisted to `ann.bin` and
//! caught up on open, and a tantivy BM25 index in `text/` (derived and caught up the same
//! way). Settings, request and reply shapes follow Marqo's API (camelCase names, filter
//! language, error codes), so an HTTP server can sit on this crate directly.
//!
//! Tensor fields are embedded through the [`Embedder`] trait; the gclip facade implements it
//! for its `Clip` model. Scores: for the angular and dot-product spaces `_score` is the cosine
//! (dot product) of the query with the document's best chunk; for euclidean, 1 / (1 + d²).
//!
//! Multimodal combination fields fuse their subfields' vectors with
//! [`gclip_vectors::fuse`]: each subfield vector is normalised (when the index normalises),
//! weights are renormalised over the subfields present, the weighted sum is normalised. This
//! is GCL's rule; Marqo's (mean of weight x vector, then normalised) points the same way
//! whenever the present weights sum to a positive number.

pub mod bench;
mod chunk;
mod embedder;
mod engine;
mod error;
pub mod filter;
pub mod hnsw;
mod index;
mod lexical;
pub mod npy;
mod settings;
pub mod simd;
mod space;
mod types;
pub mod vectors;

pub use chunk::split as split_text;
pub use embedder::{Embedder, ImageInput};
pub use engine::{default_data_dir, validate_index_name, Engine, DATA_DIR_ENV};
pub use error::{EmbedError, Error, FilterError, Result};
pub use filter::Filter;
pub use index::{Index, LAYOUT_VERSION};
pub use lexical::{tokenize, LexicalQuery};
pub use settings::*;
pub use types::*;

pub use gclip_vectors::Embeddings;
