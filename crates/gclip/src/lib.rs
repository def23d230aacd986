//! gclip: load a CLIP-family model together with its tokenizer and image preprocessing, and
//! embed texts and images, compare them, classify images zero-shot, train, evaluate, and run
//! the demo and the GCL-versus-CLIP experiment.
//!
//! ```no_run
//! use gclip::{Clip, ModelSource};
//! let clip = Clip::load(&ModelSource::resolve(None))?;
//! let texts = clip.embed_texts(&["a red shoe", "a blue mug"], true)?;
//! let images = clip.embed_image_files(&["shoe.png".into()], true)?;
//! let sims = gclip::cosine_matrix(&images, &texts)?;
//! # Ok::<(), gclip::Error>(())
//! ```
//!
//! The default model embedded in the library (8 MB) is behind the default-on cargo feature
//! `default-model`; without it, [`ModelSource::Default`] fails with [`Error::NoDefaultModel`].

mod clip;
#[cfg(feature = "default-model")]
mod default_model;
pub mod demo;
mod error;
pub mod experiment;
pub mod index;
pub mod io;
pub mod resolve;
mod source;
mod training;
mod zeroshot;

pub use clip::{Backend, Clip, ImageOutcome, RuntimeOptions};
pub use error::{Error, Result};
pub use gclip_engine::Precision;
pub use gclip_vectors::{
    cosine, cosine_matrix, fuse, normalize, softmax_rows, Embeddings, FieldEncoder, VectorError,
};
pub use resolve::{Ecosystem, ImagePipeline};
pub use source::{ModelSource, MODEL_ENV};
pub use training::trainer;
pub use zeroshot::{fill_template, imagenet_templates, Prediction, ZeroShotClassifier};

pub use gclip_engine as engine;
pub use gclip_eval as eval;
pub use gclip_image as image;
pub use gclip_model as model;
pub use gclip_progress as progress;
pub use gclip_synth as synth;
pub use gclip_tokenizer as tokenizer;
pub use gclip_train as train;
pub use gclip_vectors as vectors;
