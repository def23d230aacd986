//! gclip-engine: a fast CPU inference path for CLIP towers.
//!
//! Own kernels instead of candle's: a GEMM with weights packed once into
//! 32-column panels and an AVX-512 (or AVX2, or portable) micro-kernel,
//! fused bias / activation / residual epilogues, vectorised layer norm,
//! attention as per-head GEMMs on the fused QKV matrix with a vectorised
//! softmax, and an optional dynamic int8 path (AVX512-VNNI, or AVX2
//! `vpmaddubsw` on CPUs without it). The AVX2 fp32 kernel is blocked for
//! the caches detected at run time ([`cache`]). The text tower only runs
//! up to the last end-of-text token of a batch (it is causal, so the result
//! is unchanged). The ISA is picked at run time ([`cpu::features`]; set
//! `GCLIP_ISA=avx2` or `scalar` to force a fallback).
//!
//! ```no_run
//! use gclip_engine::{EngineModel, EngineOptions, Precision};
//! use gclip_checkpoint::{load_tensors, LoadOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lt = load_tensors("path/to/model".as_ref(), &LoadOptions::default())?;
//! let opts = EngineOptions { precision: Precision::Int8, threads: Some(2), ..Default::default() };
//! let engine = EngineModel::from_weights(&lt.config, &lt.tensors, &opts)?;
//! let s = engine.image_size();
//! let img = engine.encode_images_normalized(&vec![0.0; 3 * s * s], 1)?; // [1, embed]
//! let txt = engine.encode_texts_normalized(&[vec![49406, 320, 49407]])?;
//! # let _ = (img, txt); Ok(()) }
//! ```
//!
//! To keep peak memory near the packed size, stream the tensors from the memory-mapped
//! checkpoint instead: `let src = gclip_checkpoint::open_tensors(path, &opts)?;` then
//! `EngineModel::from_source(&src.config, &src, &opts)` (see [`WeightSource`]).
//!
//! Benchmarks: `benches/gemm.rs` (GEMM GFLOPS at ViT shapes, with
//! `benches/gemm_ref.py` for numpy/torch on the same shapes) and
//! [`bench::run`] (items/s of a random-weight model, returned as a [`bench::BenchReport`];
//! `gclip bench` prints it), compared with open_clip by `bench/compare_torch.py`.

pub mod attention;
pub mod bench;
pub mod cache;
pub mod cpu;
pub mod exp;
pub mod gemm;
pub mod gemm_avx2;
pub mod model;
pub mod ops;
pub mod quant;
mod quant_avx2;

pub use model::{EngineModel, EngineOptions, Precision, TensorData, WeightSource};

mod aligned;

/// Errors from building or running an engine model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A tensor required by the architecture is absent.
    #[error("missing weight `{0}`")]
    MissingWeight(String),
    /// A tensor or input has the wrong shape or length.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Bad caller input (token id out of range, empty text, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// The thread pool could not be created.
    #[error("thread pool: {0}")]
    ThreadPool(String),
    /// A weight tensor could not be read from the checkpoint.
    #[error("weight `{key}`: {source}")]
    Weight {
        /// Canonical key.
        key: String,
        /// Why the checkpoint could not deliver it (boxed: the checkpoint error is large).
        source: Box<gclip_checkpoint::CheckpointError>,
    },
    /// Checkpoint or architecture error (unknown arch, bad random-weight config, ...).
    #[error(transparent)]
    Checkpoint(Box<gclip_checkpoint::CheckpointError>),
    /// Embedding rows could not be assembled.
    #[error(transparent)]
    Vector(#[from] gclip_vectors::VectorError),
    /// A model feature the engine does not implement.
    #[error("unsupported by the engine: {0}")]
    Unsupported(String),
}

impl From<gclip_checkpoint::CheckpointError> for EngineError {
    fn from(e: gclip_checkpoint::CheckpointError) -> Self {
        EngineError::Checkpoint(Box::new(e))
    }
}
