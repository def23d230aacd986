//! gclip-fasttrain: one CLIP / GCL training step on the engine's CPU kernels.
//!
//! No autograd: every layer's backward is written by hand next to its forward, over flat
//! `f32` buffers.
//!
//! - [`kernels`]: GEMM variants for `Y = X W^T + b`, `dX = dY W` and `dW = dY^T X` (bias
//!   gradient fused into the transpose), layer norm forward / backward with the saved mean
//!   and reciprocal deviation, GELU / QuickGELU and their derivatives, attention forward /
//!   backward per (sequence, head) into a fused dQKV buffer, L2 normalisation.
//! - [`loss`]: field fusion, the CLIP and GCL losses and their gradients.
//! - [`params`]: all weights in one flat buffer (canonical open_clip names), gradients and
//!   optimizer moments in buffers of the same layout.
//! - [`model`]: the two towers' forward with the activations kept for the backward, and the
//!   backward itself.
//! - [`optim`]: global-norm clipping and a fused AdamW over the flat buffers, the logit-scale
//!   clamp.
//!
//! candle (`gclip-model` / `gclip-train`) stays the oracle: the tests compare gradients with
//! finite differences, with candle autograd and with PyTorch's one-step fixture.

pub mod kernels;
pub mod loss;
pub mod model;
pub mod optim;
pub mod params;

pub use model::{FastClip, StepInputs, TowerInput};
pub use params::Params;

/// Errors of the fast training path.
#[derive(Debug, thiserror::Error)]
pub enum FastTrainError {
    /// A buffer or tensor has the wrong shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Bad caller input (token id out of range, empty batch, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// A model feature the fast path does not implement (use the candle backend).
    #[error("unsupported by the fast training path: {0}")]
    Unsupported(String),
    /// A kernel of the engine failed.
    #[error(transparent)]
    Engine(#[from] gclip_engine::EngineError),
    /// A checkpoint tensor could not be converted.
    #[error(transparent)]
    Checkpoint(#[from] gclip_checkpoint::CheckpointError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, FastTrainError>;

/// A raw pointer shared by tasks that each write a disjoint part of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub(crate) *mut T);
// SAFETY: every user hands each task a disjoint region (documented at each use).
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer; a method so closures capture the whole `Sync` wrapper.
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}
