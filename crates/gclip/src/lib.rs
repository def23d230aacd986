//! gclip: load a CLIP-family model together with its tokenizer and image preprocessing, and
//! embed texts and images, compare them, and classify images zero-shot.
//!
//! ```no_run
//! use gclip::{Clip, ModelSource};
//! let clip = Clip::load(&ModelSource::resolve(None))?;
//! let texts = clip.embed_texts(&["a red shoe", "a blue mug"], true)?;
//! let images = clip.embed_image_files(&["shoe.png".into()], true)?;
//! let sims = gclip::cosine_matrix(&images, &texts);
//! # Ok::<(), gclip::Error>(())
//! ```

mod clip;
mod default_model;
mod embeddings;
mod error;
mod eval_encoder;
pub mod index;
mod source;
mod zeroshot;

pub use clip::{Backend, Clip, ImageOutcome, RuntimeOptions};
pub use embeddings::{cosine_matrix, softmax_rows, Embeddings};
pub use error::{Error, Result};
pub use eval_encoder::ClipFieldEncoder;
pub use gclip_engine::Precision;
pub use source::{ModelSource, MODEL_ENV};
pub use zeroshot::{imagenet_templates, Prediction, ZeroShotClassifier};

pub use gclip_image as image;
pub use gclip_model as model;
pub use gclip_tokenizer as tokenizer;
