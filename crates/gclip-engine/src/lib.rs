//! gclip-engine: a fast CPU inference path for CLIP towers.
//!
//! Own kernels instead of candle's: a GEMM with weights packed once into
//! 32-column panels and an AVX-512 (or AVX2, or portable) micro-kernel,
//! fused bias / activation / residual epilogues, vectorised layer norm,
//! softmax and attention reading the fused QKV matrix in place, and an
//! optional dynamic int8 path using AVX512-VNNI. The text tower only runs
//! up to the last end-of-text token of a batch (it is causal, so the result
//! is unchanged). The ISA is picked at run time ([`cpu::features`]).

pub mod cpu;
pub mod gemm;
pub mod ops;

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
    /// Unknown architecture name.
    #[error("unknown architecture `{0}`")]
    UnknownArch(String),
}
