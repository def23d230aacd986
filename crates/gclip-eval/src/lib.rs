//! gclip-eval: evaluation of CLIP / GCL embedding models.
//!
//! * [`metrics`]: nDCG@k, mAP@k, recall@k, precision@k with trec_eval's exact
//!   definitions, MRR@k, graded ERR and RBP, on any [`Run`] and [`Qrels`]
//!   ([`trec`] reads and writes the TREC file formats).
//! * [`gcl`]: Marqo's GCL retrieval protocol (eval_gs_v1) on CSV / JSONL data, with
//!   multi-field fusion, the same weighted query sample as pandas ([`sampling`]) and
//!   exact top-k cosine retrieval ([`search`]).
//! * [`zeroshot`] and [`pairs`]: CLIP zero-shot classification and image-text recall.
//!
//! The model is reached only through the [`FieldEncoder`] trait (owned by `gclip-vectors`,
//! which the model side implements); wrap it in a [`CachedEncoder`] to embed each input once
//! across runs.

pub mod data;
pub mod encoder;
pub mod error;
pub mod gcl;
pub mod metrics;
pub mod pairs;
pub mod report;
pub mod sampling;
pub mod search;
pub mod trec;
pub mod zeroshot;

pub use data::{FieldKind, FieldSpec, Table};
pub use encoder::{weights_fingerprint, CacheStats, CachedEncoder};
pub use error::{BoxError, EvalError, Result};
pub use gcl::{
    evaluate_retrieval, evaluate_scorer, RetrievalConfig, RetrievalReport, MARQO_CUTOFFS,
};
pub use gclip_vectors::{Embeddings, FieldEncoder};
pub use metrics::{evaluate, Evaluation, Metric, MetricConfig, Qrels, Run};
pub use pairs::{evaluate_pairs, PairsReport};
pub use zeroshot::{evaluate_zero_shot, image_folder, ImageFolder, ZeroShotReport};
