//! gclip-synth: a procedural product catalogue in the shape of Marqo-GS-10M.
//!
//! No real image-text data can be downloaded where gclip is built, so this
//! crate makes a world: products with drawn images (category silhouettes,
//! colours, patterns) and titles (which alone carry material, style,
//! audience and brand), search queries built from attribute subsets, and
//! graded relevance turned into result positions 1..=100 and the GS-10M
//! score columns. Documents and queries are split into the four GS-10M
//! splits, and some colour x category combinations are held out of
//! training for zero-shot evaluation.
//!
//! - [`Catalog::generate`] builds everything in memory (no images).
//! - [`render_product`] draws a product image from its own RNG.
//! - [`generate`] writes a dataset directory (see [`mod@write`] for its layout).
//! - [`AttributeOracle`] scores a shop by attribute overlap: the protocol's ceiling.
//!
//! Everything is a pure function of [`SynthConfig`]: the same seed gives
//! byte-identical files, whatever the number of threads.

mod catalog;
pub mod oracle;
mod raster;
mod render;
mod shapes;
mod text;
pub mod vocab;
pub mod write;

use std::path::PathBuf;

pub use catalog::{
    AttributeNames, Attributes, Catalog, DocSet, HeldOutCombo, Judgement, Product, Query, QuerySet,
    QuerySpec, Split, ZeroShotClass, ZeroShotSet,
};
pub use oracle::AttributeOracle;
pub use render::{render_attributes_with_mask, render_product, silhouette_mask};
pub use write::{generate, Generated, Manifest, Progress, Stage};

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A configuration value is out of range.
    #[error("invalid synth configuration: {0}")]
    InvalidConfig(String),
    /// The output directory cannot be used.
    #[error("output directory {path}: {reason}")]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An image could not be encoded.
    #[error("encoding image {path}: {source}")]
    Image {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image::ImageError,
    },
    /// A CSV table could not be written.
    #[error("writing CSV {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON file could not be written.
    #[error("writing JSON {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Image file format of the rendered products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Lossless PNG.
    Png,
    /// JPEG at [`SynthConfig::jpeg_quality`].
    Jpeg,
}

impl ImageFormat {
    /// File extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
        }
    }
}

/// Generator settings. `Default` gives a 3000-product, 1000-query world
/// with 64-pixel PNG images.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SynthConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of products (documents).
    pub products: usize,
    /// Number of distinct queries (fewer if the attribute space runs out).
    pub queries: usize,
    /// Image side in pixels.
    pub image_size: u32,
    /// Image file format.
    pub image_format: ImageFormat,
    /// JPEG quality 1..=100 (JPEG only).
    pub jpeg_quality: u8,
    /// Colour x category combinations held out of training (at most the
    /// smaller of the numbers of colours and categories).
    pub held_out_combos: usize,
    /// Images per class in each zero-shot classification set (0: none).
    pub zeroshot_per_class: usize,
    /// Results kept per query (GS-10M: 100).
    pub max_results: usize,
    /// Share of queries in the training split (GS-10M: 0.8).
    pub train_query_fraction: f64,
    /// Share of documents in the training split (GS-10M: 0.5).
    pub train_doc_fraction: f64,
    /// Share of training queries sampled for the in-domain test.
    pub in_domain_fraction: f64,
    /// Extra renders (new pose, scale, background, noise) of each training document,
    /// each captioned in `captions.csv` (0: no caption table).
    #[serde(default)]
    pub caption_views: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 0,
            products: 3000,
            queries: 1000,
            image_size: 64,
            image_format: ImageFormat::Png,
            jpeg_quality: 92,
            held_out_combos: 8,
            zeroshot_per_class: 20,
            max_results: 100,
            train_query_fraction: 0.8,
            train_doc_fraction: 0.5,
            in_domain_fraction: 0.1,
            caption_views: 0,
        }
    }
}

impl SynthConfig {
    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::InvalidConfig(m));
        if self.products < 2 {
            return bad(format!(
                "products must be at least 2, got {}",
                self.products
            ));
        }
        if self.queries < 2 {
            return bad(format!("queries must be at least 2, got {}", self.queries));
        }
        if !(8..=2048).contains(&self.image_size) {
            return bad(format!(
                "image size must be in 8..=2048 pixels, got {}",
                self.image_size
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad(format!(
                "JPEG quality must be in 1..=100, got {}",
                self.jpeg_quality
            ));
        }
        let max_combos = vocab::CATEGORIES.len().min(vocab::COLOURS.len());
        if self.held_out_combos > max_combos {
            return bad(format!(
                "held-out combinations must be at most {max_combos}, got {}",
                self.held_out_combos
            ));
        }
        if !(1..=1000).contains(&self.max_results) {
            return bad(format!(
                "max results must be in 1..=1000, got {}",
                self.max_results
            ));
        }
        if self.caption_views > 64 {
            return bad(format!(
                "caption views must be at most 64 per product, got {}",
                self.caption_views
            ));
        }
        for (name, v) in [
            ("train query fraction", self.train_query_fraction),
            ("train document fraction", self.train_doc_fraction),
            ("in-domain fraction", self.in_domain_fraction),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return bad(format!("{name} must be strictly between 0 and 1, got {v}"));
            }
        }
        Ok(())
    }
}
