//! The model crate shares the checkpoint core's error type, so a checkpoint problem and a
//! tower problem are one enum for callers; candle's errors go in its `Tensor` variant.

pub use gclip_checkpoint::CheckpointError as ModelError;

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Wraps a candle error (keeping it as the source).
pub(crate) fn candle(e: candle_core::Error) -> ModelError {
    ModelError::Tensor {
        source: Box::new(e),
    }
}

/// `?`-friendly conversion of candle results into this crate's result.
pub(crate) trait CandleExt<T> {
    fn c(self) -> Result<T>;
}

impl<T> CandleExt<T> for candle_core::Result<T> {
    fn c(self) -> Result<T> {
        self.map_err(candle)
    }
}
