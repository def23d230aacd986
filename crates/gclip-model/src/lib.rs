//! CLIP model of gclip on [candle](https://github.com/huggingface/candle): the ViT image tower
//! plus causal text tower, and a candle [`Weights`] map built from the checkpoint core's raw
//! tensors. Configs, architectures, checkpoint detection, key names, loading and saving live
//! in [`gclip_checkpoint`] (no tensor library); its public items are re-exported here.
//!
//! ```no_run
//! use gclip_model::{ClipModel, LoadOptions};
//! use candle_core::{Device, Tensor};
//! # fn main() -> Result<(), gclip_model::ModelError> {
//! let model = ClipModel::load("path/to/model".as_ref(), &LoadOptions::default())?;
//! let s = model.config().vision.image_size;
//! let pixels = Tensor::zeros((1, 3, s, s), candle_core::DType::F32, &Device::Cpu).unwrap();
//! let img = model.encode_images_normalized(&pixels)?; // [1, embed_dim]
//! let ids = Tensor::new(&[[49406u32, 320, 49407]], &Device::Cpu).unwrap();
//! let txt = model.encode_texts_normalized(&ids)?;
//! let logits = (img.matmul(&txt.t().unwrap()).unwrap() * model.logit_scale_exp()? as f64);
//! # let _ = logits; Ok(()) }
//! ```
//!
//! Weights are kept in open_clip key naming ([`Weights`]); Hugging Face checkpoints are mapped
//! on load (q/k/v concatenated into `in_proj`, projections transposed) and back on save.

mod error;
mod model;
mod weights;

pub use gclip_checkpoint as checkpoint;
pub use gclip_checkpoint::{arch, config, keys, pickle};
pub use gclip_checkpoint::{
    check_shapes, expected_shapes, load_tensors, open_tensors, pool_position, random_tensors,
    read_file_tensors, save_tensors, write_safetensors, Activation, CheckpointError, ClipConfig,
    DType, Layout, LoadOptions, LoadedTensors, PickleError, RawTensor, SaveOptions, TensorMap,
    TensorSource, TextConfig, TextPool, VisionConfig, VisionPool, DEFAULT_LAYER_NORM_EPS,
    DEFAULT_LOGIT_SCALE_INIT,
};

pub use error::{ModelError, Result};
pub use model::{l2_normalize, ClipModel};
pub use weights::{load_weights, save, save_with, LoadedWeights, Weights};
