//! Training configuration: a JSON or TOML file whose keys follow Marqo's
//! training API (`leftKeys`, `rightWeights`, `weightKey`, ...), with
//! snake_case aliases, overridable field by field from the command line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Which contrastive loss to train with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Symmetric InfoNCE over the batch (each row's pair is the positive).
    Clip,
    /// Weighted, de-duplicated GCL loss (see [`crate::losses`]).
    #[default]
    Gcl,
}

impl std::str::FromStr for LossKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "clip" => Ok(LossKind::Clip),
            "gcl" => Ok(LossKind::Gcl),
            _ => Err(TrainError::Config(format!(
                "unknown loss `{s}` (expected clip or gcl)"
            ))),
        }
    }
}

/// Which implementation runs the training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The fast CPU step (`gclip-fasttrain`) when it covers the architecture, else candle.
    #[default]
    Auto,
    /// The fast CPU step; an architecture it does not cover is an error.
    Fast,
    /// candle autograd (the reference implementation).
    Candle,
}

impl std::str::FromStr for Backend {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "fast" => Ok(Backend::Fast),
            "candle" => Ok(Backend::Candle),
            _ => Err(TrainError::Config(format!(
                "unknown backend `{s}` (expected auto, fast or candle)"
            ))),
        }
    }
}

/// Maps the value of the `weightKey` column to a pair weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum ScoreToWeight {
    /// Every pair weighs 1 (the column is ignored).
    #[default]
    None,
    /// The value itself (e.g. GS-10M's `score_linear`, higher is better).
    Linear,
    /// `1 / value` (e.g. a rank or `position`, 1 is best).
    Reciprocal,
    /// Linear rescale of `[min, max]` onto `[lo, hi]`, clamped at both ends.
    #[serde(rename_all = "camelCase")]
    MinMax {
        /// Value mapped to `lo`.
        min: f32,
        /// Value mapped to `hi`.
        max: f32,
        /// Weight at `min` (default 0.01).
        #[serde(default = "default_lo")]
        lo: f32,
        /// Weight at `max` (default 1).
        #[serde(default = "default_hi")]
        hi: f32,
    },
}

fn default_lo() -> f32 {
    0.01
}
fn default_hi() -> f32 {
    1.0
}

impl ScoreToWeight {
    /// The weight of a pair whose score column holds `x`; `None` when the
    /// result is not a finite non-negative number (the row is then rejected).
    pub fn apply(&self, x: f32) -> Option<f32> {
        let w = match *self {
            ScoreToWeight::None => 1.0,
            ScoreToWeight::Linear => x,
            ScoreToWeight::Reciprocal => 1.0 / x,
            ScoreToWeight::MinMax { min, max, lo, hi } => {
                let t = if max > min {
                    ((x - min) / (max - min)).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                lo + t * (hi - lo)
            }
        };
        (w.is_finite() && w >= 0.0).then_some(w)
    }

    /// Parses `none`, `linear`, `reciprocal` or `minmax:MIN:MAX[:LO:HI]`.
    pub fn parse(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        let mut parts = lower.split(':');
        let head = parts.next().unwrap_or_default();
        let nums: Vec<f32> = parts
            .map(|p| {
                p.parse::<f32>()
                    .map_err(|_| TrainError::Config(format!("bad number `{p}` in `{s}`")))
            })
            .collect::<Result<_>>()?;
        match (head, nums.as_slice()) {
            ("none", []) => Ok(ScoreToWeight::None),
            ("linear", []) => Ok(ScoreToWeight::Linear),
            ("reciprocal", []) => Ok(ScoreToWeight::Reciprocal),
            ("minmax", [min, max]) => Ok(ScoreToWeight::MinMax {
                min: *min,
                max: *max,
                lo: default_lo(),
                hi: default_hi(),
            }),
            ("minmax", [min, max, lo, hi]) => Ok(ScoreToWeight::MinMax {
                min: *min,
                max: *max,
                lo: *lo,
                hi: *hi,
            }),
            _ => Err(TrainError::Config(format!(
                "unknown score-to-weight `{s}` (none, linear, reciprocal, minmax:MIN:MAX[:LO:HI])"
            ))),
        }
    }
}

/// Everything a training run needs. Unset keys take the defaults shown in
/// [`TrainConfig::default`]. Paths inside a config file are relative to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Training rows: `.csv`, `.jsonl`/`.ndjson` or `.parquet` (feature `parquet`).
    #[serde(alias = "data_path", alias = "trainData")]
    pub data: PathBuf,
    /// Further training files with the same columns (e.g. a caption table beside the
    /// query-document pairs), read after `data`; image paths resolve against each file.
    #[serde(alias = "extra_data")]
    pub extra_data: Vec<PathBuf>,
    /// Optional held-out rows (same format) for the per-epoch recall evaluation.
    #[serde(alias = "eval_data")]
    pub eval_data: Option<PathBuf>,
    /// Columns fused into the left (query) embedding.
    #[serde(alias = "left_keys")]
    pub left_keys: Vec<String>,
    /// Fusion weights of `left_keys`.
    #[serde(alias = "left_weights")]
    pub left_weights: Vec<f32>,
    /// Columns fused into the right (document) embedding.
    #[serde(alias = "right_keys")]
    pub right_keys: Vec<String>,
    /// Fusion weights of `right_keys`.
    #[serde(alias = "right_weights")]
    pub right_weights: Vec<f32>,
    /// Columns that hold image paths (relative to the data file); others are text.
    #[serde(alias = "image_keys")]
    pub image_keys: Vec<String>,
    /// Column holding the relevance score of the pair (`None`: all weights 1).
    #[serde(alias = "weight_key")]
    pub weight_key: Option<String>,
    /// Score-to-weight function applied to `weight_key`.
    #[serde(alias = "score_to_weight", alias = "stw")]
    pub score_to_weight: ScoreToWeight,
    /// Column identifying the query of a row (rows sharing it are not negatives).
    #[serde(alias = "left_id_key", alias = "queryIdKey")]
    pub left_id_key: Option<String>,
    /// Column identifying the document of a row.
    #[serde(alias = "right_id_key", alias = "documentIdKey")]
    pub right_id_key: Option<String>,
    /// Loss: `clip` or `gcl`.
    pub loss: LossKind,
    /// GCL: rows sharing a query or a document id are not each other's negatives.
    /// `false` makes every other row of the batch a negative (an ablation).
    #[serde(alias = "dedup_negatives")]
    pub dedup_negatives: bool,
    /// Checkpoint to start from (anything `gclip_model::load_weights` reads).
    #[serde(alias = "base_model", alias = "baseModel")]
    pub model: Option<PathBuf>,
    /// Architecture to train from scratch: a built-in name or an open_clip
    /// model-config JSON file. Ignored when `model` is set.
    pub arch: Option<String>,
    /// Passes over the training rows.
    pub epochs: usize,
    /// Rows per micro-batch.
    #[serde(alias = "batch_size")]
    pub batch_size: usize,
    /// Peak learning rate.
    #[serde(alias = "learning_rate", alias = "learningRate")]
    pub lr: f64,
    /// Linear warmup steps (optimizer steps).
    #[serde(alias = "warmup_steps", alias = "warmupSteps")]
    pub warmup: usize,
    /// Decoupled weight decay of the decayed group.
    #[serde(alias = "weight_decay")]
    pub weight_decay: f64,
    /// AdamW beta1.
    pub beta1: f64,
    /// AdamW beta2.
    pub beta2: f64,
    /// AdamW epsilon.
    pub eps: f64,
    /// Micro-batches whose gradients are averaged per optimizer step.
    #[serde(alias = "accum_steps", alias = "accumFreq", alias = "accum")]
    pub accum_steps: usize,
    /// Global gradient-norm clip (`None`: no clipping).
    #[serde(alias = "max_grad_norm", alias = "gradClipNorm")]
    pub max_grad_norm: Option<f64>,
    /// Do not update the image tower.
    #[serde(alias = "lock_image")]
    pub lock_image: bool,
    /// Do not update the text tower (token/position embeddings, transformer,
    /// final LN, text projection).
    #[serde(alias = "lock_text")]
    pub lock_text: bool,
    /// Seed of weight init (from scratch), shuffling and everything random.
    pub seed: u64,
    /// Directory receiving checkpoints, the metrics log, the plot and the model.
    #[serde(alias = "output_dir", alias = "outputDir")]
    pub output: PathBuf,
    /// Write a resumable checkpoint every N optimizer steps (0: only at the end).
    #[serde(alias = "save_every")]
    pub save_every: usize,
    /// Resume from this checkpoint directory (written by an earlier run; the
    /// same `model` / `arch` must be given to rebuild the network).
    pub resume: Option<PathBuf>,
    /// Text context length (default: the model's).
    #[serde(alias = "context_length")]
    pub context_length: Option<usize>,
    /// Stop after this many optimizer steps (for smoke runs).
    #[serde(alias = "max_steps")]
    pub max_steps: Option<usize>,
    /// Which implementation runs the step (`auto`: the fast CPU step where it applies).
    pub backend: Backend,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::new(),
            extra_data: Vec::new(),
            eval_data: None,
            left_keys: vec!["query".into()],
            left_weights: vec![1.0],
            right_keys: vec!["image".into(), "title".into()],
            right_weights: vec![0.9, 0.1],
            image_keys: vec!["image".into()],
            weight_key: None,
            score_to_weight: ScoreToWeight::None,
            left_id_key: Some("query_id".into()),
            right_id_key: Some("product_id".into()),
            loss: LossKind::Gcl,
            dedup_negatives: true,
            model: None,
            arch: None,
            epochs: 1,
            batch_size: 32,
            lr: 1e-5,
            warmup: 0,
            weight_decay: 0.2,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            accum_steps: 1,
            max_grad_norm: Some(1.0),
            lock_image: false,
            lock_text: false,
            seed: 0,
            output: PathBuf::from("gclip-run"),
            save_every: 0,
            resume: None,
            context_length: None,
            max_steps: None,
            backend: Backend::Auto,
        }
    }
}

impl TrainConfig {
    /// Reads a `.json` or `.toml` config; relative paths in it are resolved
    /// against the file's directory.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut cfg: TrainConfig = match ext.as_str() {
            "toml" => toml::from_str(&text)
                .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?,
            "json" => serde_json::from_str(&text)
                .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?,
            _ => {
                return Err(TrainError::Config(format!(
                    "{}: config must end in .json or .toml",
                    path.display()
                )))
            }
        };
        if let Some(dir) = path.parent() {
            cfg.resolve_relative(dir);
        }
        Ok(cfg)
    }

    fn resolve_relative(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.data);
        fix(&mut self.output);
        self.extra_data.iter_mut().for_each(fix);
        for p in [&mut self.eval_data, &mut self.model, &mut self.resume]
            .into_iter()
            .flatten()
        {
            fix(p);
        }
        if let Some(a) = &mut self.arch {
            if a.ends_with(".json") && Path::new(a).is_relative() {
                *a = dir.join(&*a).to_string_lossy().into_owned();
            }
        }
    }

    /// Checks the options are consistent; called when a [`crate::Trainer`] is built.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.data.as_os_str().is_empty() {
            return bad("no training data (`data`)".into());
        }
        if self.left_keys.is_empty() || self.right_keys.is_empty() {
            return bad("leftKeys and rightKeys must each name at least one column".into());
        }
        if self.left_keys.len() != self.left_weights.len() {
            return bad(format!(
                "{} leftKeys but {} leftWeights",
                self.left_keys.len(),
                self.left_weights.len()
            ));
        }
        if self.right_keys.len() != self.right_weights.len() {
            return bad(format!(
                "{} rightKeys but {} rightWeights",
                self.right_keys.len(),
                self.right_weights.len()
            ));
        }
        if self
            .left_weights
            .iter()
            .chain(&self.right_weights)
            .any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return bad("field weights must be finite and non-negative".into());
        }
        if self.batch_size < 2 {
            return bad("batchSize must be at least 2 for a contrastive loss".into());
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.accum_steps == 0 {
            return bad("accumSteps must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(format!(
                "learning rate {} is not a non-negative number",
                self.lr
            ));
        }
        if self.lock_image && self.lock_text {
            return bad("both towers are locked: nothing but the logit scale would train".into());
        }
        if self.model.is_none() && self.arch.is_none() {
            return bad("set `model` (a checkpoint) or `arch` (train from scratch)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marqo_keys_parse() {
        let j = r#"{"data":"train.csv","leftKeys":["query"],"leftWeights":[1],
            "rightKeys":["image","title"],"rightWeights":[0.9,0.1],"weightKey":"score",
            "scoreToWeight":{"minMax":{"min":1,"max":100}},"epochs":3,"arch":"tiny"}"#;
        let c: TrainConfig = serde_json::from_str(j).unwrap();
        assert_eq!(c.right_weights, vec![0.9, 0.1]);
        assert_eq!(c.weight_key.as_deref(), Some("score"));
        assert_eq!(c.epochs, 3);
        assert_eq!(
            c.score_to_weight,
            ScoreToWeight::MinMax {
                min: 1.0,
                max: 100.0,
                lo: 0.01,
                hi: 1.0
            }
        );
        c.validate().unwrap();
        let t = "data = \"d.jsonl\"\nleft_keys = [\"q\"]\nleft_weights = [1.0]\nscore_to_weight = \"reciprocal\"\nloss = \"clip\"\nmodel = \"m\"\n";
        let c: TrainConfig = toml::from_str(t).unwrap();
        assert_eq!(c.loss, LossKind::Clip);
        assert_eq!(c.score_to_weight, ScoreToWeight::Reciprocal);
        assert!(serde_json::from_str::<TrainConfig>(r#"{"leftKey":["q"]}"#).is_err());
    }

    #[test]
    fn score_to_weight() {
        assert_eq!(ScoreToWeight::Reciprocal.apply(4.0), Some(0.25));
        assert_eq!(ScoreToWeight::Reciprocal.apply(0.0), None);
        assert_eq!(ScoreToWeight::Linear.apply(-1.0), None);
        let mm = ScoreToWeight::parse("minmax:1:101:0:1").unwrap();
        assert_eq!(mm.apply(51.0), Some(0.5));
        assert_eq!(mm.apply(500.0), Some(1.0));
        assert!(ScoreToWeight::parse("cubic").is_err());
    }
}
