//! CLIP model core of gclip: configs, checkpoint loading and saving (Hugging Face and
//! open_clip layouts, bare PyTorch / safetensors files), and the ViT image tower plus causal
//! text tower on [candle](https://github.com/huggingface/candle).
//!
//! ```no_run
//! use gclip_model::{ClipModel, LoadOptions};
//! use candle_core::{Device, Tensor};
//! # fn main() -> Result<(), gclip_model::ModelError> {
//! let model = ClipModel::load("path/to/model".as_ref(), &LoadOptions::default())?;
//! let s = model.config().vision.image_size;
//! let pixels = Tensor::zeros((1, 3, s, s), candle_core::DType::F32, &Device::Cpu)?;
//! let img = model.encode_images_normalized(&pixels)?; // [1, embed_dim]
//! let ids = Tensor::new(&[[49406u32, 320, 49407]], &Device::Cpu)?;
//! let txt = model.encode_texts_normalized(&ids)?;
//! let logits = (img.matmul(&txt.t()?)? * model.logit_scale_exp()? as f64)?;
//! # Ok(()) }
//! ```
//!
//! Weights are kept in open_clip key naming ([`Weights`]); Hugging Face checkpoints are mapped
//! on load (q/k/v concatenated into `in_proj`, projections transposed) and back on save.

pub mod arch;
pub mod config;
mod error;
mod load;
mod model;
mod save;
mod source;
mod weights;

pub use config::{
    Activation, ClipConfig, TextConfig, TextPool, VisionConfig, VisionPool, DEFAULT_LAYER_NORM_EPS,
    DEFAULT_LOGIT_SCALE_INIT,
};
pub use error::{ModelError, Result};
pub use load::{load_weights, Layout, LoadOptions, LoadedWeights};
pub use model::{l2_normalize, pool_position, ClipModel};
pub use save::save;
pub use source::{open_tensors, TensorSource};
pub use weights::{expected_shapes, Weights};
