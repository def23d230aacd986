//! The checkpoint core of gclip, free of any tensor library: CLIP configs, the built-in
//! open_clip architectures, checkpoint discovery (Hugging Face and open_clip directories, bare
//! `.safetensors` / `.bin` / `.pt` files, training checkpoints `{state_dict: ...}`), the one
//! table of tensor key names ([`keys`]), lazy tensor-by-tensor reading of memory-mapped
//! safetensors and PyTorch zip pickles, and saving in both layouts in f32, f16 or bf16.
//!
//! ```no_run
//! use gclip_checkpoint::{open_tensors, save_tensors, DType, Layout, LoadOptions, SaveOptions};
//! # fn main() -> Result<(), gclip_checkpoint::CheckpointError> {
//! let src = open_tensors("path/to/open_clip_pytorch_model.bin".as_ref(),
//!                        &LoadOptions::with_arch("ViT-B-32"))?;
//! let (shape, values) = src.get_f32("visual.proj")?; // canonical name, [768, 512]
//! let all = src.read_all()?;
//! let opts = SaveOptions::new(Layout::Hf).with_dtype(DType::F16);
//! save_tensors(&all, &src.config, "out/hf".as_ref(), &opts, src.preprocess.as_ref())?;
//! # let _ = (shape, values); Ok(()) }
//! ```
//!
//! Tensors are named canonically in open_clip naming; Hugging Face checkpoints are mapped on
//! load (q/k/v concatenated into `in_proj`, projections transposed) and back on save.

pub mod arch;
pub mod config;
mod error;
mod init;
pub mod keys;
mod load;
pub mod pickle;
mod save;
mod stored;
mod tensor;

pub use config::{
    pool_position, Activation, ClipConfig, TextConfig, TextPool, VisionConfig, VisionPool,
    DEFAULT_LAYER_NORM_EPS, DEFAULT_LOGIT_SCALE_INIT,
};
pub use error::{CheckpointError, Result};
pub use init::random_tensors;
pub use keys::{check_shapes, expected_shapes};
pub use load::{
    load_tensors, open_tensors, read_file_tensors, Layout, LoadOptions, LoadedTensors, TensorSource,
};
pub use pickle::PickleError;
pub use save::{save_tensors, write_safetensors, SaveOptions};
pub use tensor::{DType, RawTensor, TensorMap};
