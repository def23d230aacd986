//! gclip-image: image decoding and CLIP preprocessing that reproduces open_clip's pixels.
//!
//! open_clip's validation transform is `Resize` (Pillow bicubic with antialias),
//! `CenterCrop`, `convert("RGB")`, `ToTensor`, `Normalize`. This crate reproduces it:
//! [`decode_rgb`] matches `Image.open(..).convert("RGB")`, [`resize_bicubic_pil`]
//! matches Pillow's fixed-point resampler bit for bit, and [`Preprocessor`] applies the
//! geometry (shortest / longest / squash) with torchvision's rounding and the same f32
//! normalisation arithmetic.
//!
//! ```no_run
//! use gclip_image::{Preprocessor, PreprocessConfig};
//! let p = Preprocessor::new(PreprocessConfig::default());
//! let chw: Vec<f32> = p.preprocess_path("cat.jpg")?; // 3 x 224 x 224
//! # Ok::<(), gclip_image::ImageError>(())
//! ```

mod config;
mod decode;
mod error;
mod jpeg;
mod pil;
mod preprocess;
mod resize;

pub use config::{
    ImagePipeline, Interpolation, PreprocessConfig, ResizeMode, OPENAI_MEAN, OPENAI_STD,
};
pub use decode::{decode_image, decode_rgb, load_image, load_rgb, DecodeOptions};
pub use error::{ImageError, Result};
pub use image::RgbImage;
pub use pil::{PilImage, PilMode};
pub use preprocess::Preprocessor;
pub use resize::{
    resize_bicubic_pil, resize_pil, resize_pil_single_thread, Filter, PRECISION_BITS,
};
