//! gclip-train: CLIP and GCL contrastive training, on the fast CPU step of
//! `gclip-fasttrain` (the default, [`Backend`]) or on candle autograd.
//!
//! - [`config::TrainConfig`]: Marqo-style keys (`leftKeys`, `rightWeights`,
//!   `weightKey`, ...) read from JSON or TOML.
//! - [`data`]: CSV / JSONL / Parquet rows to weighted pairs.
//! - [`losses`]: [`losses::clip_loss`], [`losses::gcl_loss`] and field fusion,
//!   built only from differentiable ops.
//! - [`optim`]: AdamW with a no-decay group, clipping, accumulation.
//! - [`schedule::cosine_with_warmup`].
//! - [`Trainer`]: the loop, with checkpoints, resume, a JSONL log and a plot.

pub mod codecs;
pub mod config;
pub mod data;
pub mod error;
mod fast;
pub mod losses;
pub mod metrics;
pub mod optim;
mod plot;
pub mod schedule;
pub mod trainer;

pub use codecs::{BpeTextEncoder, CheckpointInfo, ClipImageLoader, Codecs, StartingPoint};
pub use config::{Backend, LossKind, ScoreToWeight, TrainConfig};
pub use error::{Result, TrainError};
pub use trainer::{Progress, TrainSummary, Trainer};
