//! gclip-image: image decoding and CLIP preprocessing that reproduces the reference
//! pixels of both checkpoint ecosystems, for every colour mode.
//!
//! Decoding ([`load_image`], [`decode_image`]) keeps the mode Pillow's `Image.open`
//! reports (`1`, `L`, `LA`, `P` with palette and transparency, `RGB`, `RGBA`, `I;16`,
//! `CMYK`) because the two references convert at different points
//! ([`ImagePipeline`]):
//!
//! * **open_clip** (`Resize`, `CenterCrop`, `convert("RGB")`, `ToTensor`, `Normalize`)
//!   resizes in the image's own mode with Pillow's resampler, reproduced bit for bit
//!   ([`resize_bicubic_pil`]): nearest for `P` / `1`, premultiplied alpha for `RGBA` /
//!   `LA`, 16-bit for `I;16`; `convert("RGB")` then drops alpha without compositing.
//! * **transformers** (`CLIPImageProcessor`) converts to RGB first, compositing
//!   transparency onto white, then resizes with torch's uint8 antialiased kernel, crops
//!   with truncating offsets and normalises with its fused arithmetic.
//!
//! [`PreprocessConfig::from_open_clip`] and [`PreprocessConfig::from_hf`] pick the matching
//! pipeline; [`Preprocessor`] applies it. [`load_rgb`] / [`Preprocessor::preprocess`]
//! remain for callers that already hold RGB (`Image.open(..).convert("RGB")`).
//!
//! ```no_run
//! use gclip_image::{Preprocessor, PreprocessConfig};
//! let p = Preprocessor::new(PreprocessConfig::default());
//! let chw: Vec<f32> = p.preprocess_path("cat.png")?; // 3 x 224 x 224, open_clip order
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
