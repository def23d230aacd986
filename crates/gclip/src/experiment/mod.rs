//! Reproducible experiments on the generated shop.
//!
//! [`gcl_vs_clip`] trains small models from scratch with the same budget (steps, batch,
//! learning rate, architecture, seed) on the same generated shop:
//!
//! * **CLIP-style**: query against the product image only, every pair weighing 1, the
//!   plain symmetric InfoNCE loss;
//! * **GCL**: query against the fused image (0.9) + title (0.1) document, pairs weighted
//!   by their relevance score, the weighted de-duplicated GCL loss;
//! * optionally the ablations, GCL with one of its three changes undone: no title field,
//!   no score weights, no de-duplication of negatives;
//!
//! then evaluates each with Marqo's GCL retrieval protocol on the four test splits and
//! with zero-shot classification on the shop's class folders, and writes `results.json`
//! and `results.md` (a README-ready table). [`gcl_vs_clip_seeds`] repeats it per seed and
//! summarises the spread.

mod memo;
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use gclip_eval::metrics::MetricConfig;
use gclip_eval::{FieldKind, FieldSpec, RetrievalConfig, Table, MARQO_CUTOFFS};
use gclip_progress::Progress;
use gclip_train::{LossKind, ScoreToWeight, TrainConfig, TrainSummary};
use serde::Serialize;
use serde_json::Value;

use crate::error::{io_err, Error, Result};
use memo::Memo;
pub use report::markdown;

/// Settings of [`gcl_vs_clip`].
#[derive(Debug, Clone)]
pub struct GclVsClipConfig {
    /// Output directory: shop (unless `data`), both runs, results.json, results.md, best/.
    pub out: PathBuf,
    /// An existing `gclip synth` output to use instead of generating one under `out/shop`.
    pub data: Option<PathBuf>,
    /// Seed of the generated shop and of both training runs.
    pub seed: u64,
    /// Products in the generated shop.
    pub products: usize,
    /// Queries in the generated shop.
    pub queries: usize,
    /// Image side of the generated shop (the model's input side is in the architecture).
    pub image_size: u32,
    /// open_clip model-config JSON of the architecture; `None`: [`DEFAULT_ARCH`], written to
    /// `out/model_cfg.json`.
    pub arch: Option<PathBuf>,
    /// Optimizer steps of each run (the shared budget).
    pub steps: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine schedule after a linear warmup).
    pub lr: f64,
    /// Warmup steps; `None`: 10% of `steps`.
    pub warmup: Option<usize>,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Score-to-weight of the GCL run: none, linear, reciprocal or minmax:MIN:MAX[:LO:HI].
    pub score_to_weight: String,
    /// Queries sampled per split by the retrieval protocol (weighted, seed 1).
    pub eval_queries: usize,
    /// Which models to train: [`Variant::MAIN`] or [`Variant::ALL`] (with the ablations).
    pub variants: Vec<Variant>,
    /// Reuse `out/<variant>` models from an earlier run; only evaluate.
    pub skip_train: bool,
    /// Progress bars.
    pub progress: Progress,
    /// The command line recorded in results.json.
    pub command: String,
}

impl Default for GclVsClipConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("gcl-vs-clip"),
            data: None,
            seed: 0,
            products: 3000,
            queries: 1000,
            image_size: 64,
            arch: None,
            steps: 300,
            batch_size: 128,
            lr: 1e-3,
            warmup: None,
            weight_decay: 0.1,
            score_to_weight: "linear".into(),
            eval_queries: 2000,
            variants: Variant::MAIN.to_vec(),
            skip_train: false,
            progress: Progress::Bar,
            command: String::new(),
        }
    }
}

impl GclVsClipConfig {
    /// The smoke-run sizes: a 300-product shop, 20 steps of 64 pairs, at most 200 queries.
    pub fn quick(mut self) -> Self {
        self.products = 300;
        self.queries = 120;
        self.steps = 20;
        self.batch_size = 64;
        self.eval_queries = self.eval_queries.min(200);
        self
    }
}

/// What [`gcl_vs_clip`] wrote.
#[derive(Debug)]
pub struct Outcome {
    pub results: Results,
    /// The markdown report (also in `results.md`).
    pub markdown: String,
    pub results_json: PathBuf,
    pub results_md: PathBuf,
}

pub const DEFAULT_ARCH: &str = r#"{
  "model_cfg": {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "head_width": 32, "layers": 4},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3}
  }
}
"#;

/// The contenders: CLIP, GCL, and GCL with one of its changes undone (the ablations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Variant {
    #[serde(rename = "clip")]
    Clip,
    #[serde(rename = "gcl")]
    Gcl,
    /// GCL without the title field (documents are the image alone).
    #[serde(rename = "gcl-no-title")]
    GclNoTitle,
    /// GCL with every pair weighing 1.
    #[serde(rename = "gcl-no-weights")]
    GclNoWeights,
    /// GCL where rows sharing a query or a document are each other's negatives.
    #[serde(rename = "gcl-no-dedup")]
    GclNoDedup,
}

impl Variant {
    /// CLIP and GCL: the comparison itself.
    pub const MAIN: [Variant; 2] = [Variant::Clip, Variant::Gcl];
    /// The comparison plus one ablation per GCL change.
    pub const ALL: [Variant; 5] = [
        Variant::Clip,
        Variant::Gcl,
        Variant::GclNoTitle,
        Variant::GclNoWeights,
        Variant::GclNoDedup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Clip => "clip",
            Variant::Gcl => "gcl",
            Variant::GclNoTitle => "gcl-no-title",
            Variant::GclNoWeights => "gcl-no-weights",
            Variant::GclNoDedup => "gcl-no-dedup",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Variant::Clip => "CLIP-style (query vs image, weight 1)",
            Variant::Gcl => "GCL (query vs 0.9 image + 0.1 title, score-weighted)",
            Variant::GclNoTitle => "GCL without the title (query vs image, score-weighted)",
            Variant::GclNoWeights => "GCL without score weights (every pair weighs 1)",
            Variant::GclNoDedup => "GCL without de-duplicated negatives",
        }
    }
    /// Position in table order.
    pub fn order(self) -> usize {
        Variant::ALL.iter().position(|&v| v == self).unwrap_or(0)
    }
}

/// How documents are embedded at evaluation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocFields {
    /// The image alone.
    Image,
    /// normalise(0.9 image + 0.1 title), Marqo's fusion.
    ImageTitle,
}

impl DocFields {
    pub fn specs(self) -> Vec<FieldSpec> {
        let f = |key: &str, weight: f32, kind: FieldKind| FieldSpec {
            key: key.into(),
            weight,
            kind: Some(kind),
        };
        match self {
            DocFields::Image => vec![f("image", 1.0, FieldKind::Image)],
            DocFields::ImageTitle => vec![
                f("image", 0.9, FieldKind::Image),
                f("title", 0.1, FieldKind::Text),
            ],
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            DocFields::Image => "image",
            DocFields::ImageTitle => "0.9 image + 0.1 title",
        }
    }
}

/// The four metrics of the README table, by their gclip-eval names.
pub(crate) const HEADLINE: [(&str, &str); 4] = [
    ("ndcg@10", "nDCG@10"),
    ("err", "ERR"),
    ("rbp@0.9", "RBP@0.9"),
    ("mrr@10", "MRR@10"),
];

/// Splits in table order: (name in the manifest, label).
pub(crate) const SPLITS: [(&str, &str); 4] = [
    ("in_domain", "in-domain"),
    ("novel_query", "novel query"),
    ("novel_document", "novel document"),
    ("zero_shot", "zero-shot (both novel)"),
];

/// Zero-shot prompt templates: the bare class name reads like the shop's queries (what
/// the models were trained on); the CLIP prompt is reported too for comparison.
const TEMPLATES: [(&str, &str); 2] = [("bare", "{}"), ("photo", "a photo of a {}.")];

#[derive(Debug, Serialize)]
pub struct SplitResult {
    pub split: String,
    pub num_queries: usize,
    pub num_documents: usize,
    /// Every metric mean of the protocol (`ndcg@10`, `err`, `rbp@0.9`, ...).
    pub metrics: Value,
}

#[derive(Debug, Serialize)]
pub struct RetrievalResult {
    pub model: Variant,
    pub docs: DocFields,
    pub splits: Vec<SplitResult>,
}

#[derive(Debug, Serialize)]
pub struct ZeroShotResult {
    pub model: Variant,
    pub set: String,
    pub template: String,
    pub num_images: usize,
    pub num_classes: usize,
    top1: f64,
    pub mean_per_class_recall: f64,
}

#[derive(Debug, Serialize)]
pub struct RunResult {
    pub model: Variant,
    pub summary: Option<TrainSummary>,
    pub train_seconds: Option<f64>,
    /// Mean training loss of the last 20 optimizer steps (from the run's metrics log).
    pub last_loss: Option<f64>,
    pub model_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub command: String,
    pub data: PathBuf,
    pub seed: u64,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub architecture: Value,
    pub runs: Vec<RunResult>,
    pub retrieval: Vec<RetrievalResult>,
    pub zero_shot: Vec<ZeroShotResult>,
    /// The model copied to `best/` (highest mean nDCG@10 over the splits, each model
    /// evaluated the way it was trained).
    pub best: Variant,
    pub eval_seconds: f64,
}
fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(io_err(path))
}

/// Runs the experiment: generates (or reuses) the shop, trains both models (unless
/// `skip_train`), evaluates them, copies the better one to `out/best/` in F16, and writes
/// `results.json` and `results.md`. Status lines (what is being trained, timings) go to
/// `status`.
pub fn gcl_vs_clip(a: &GclVsClipConfig, status: &mut dyn FnMut(&str)) -> Result<Outcome> {
    if a.steps == 0 {
        return Err(invalid("the experiment needs at least 1 training step"));
    }
    if a.batch_size < 2 {
        return Err(invalid("the batch size must be at least 2"));
    }
    std::fs::create_dir_all(&a.out).map_err(io_err(&a.out))?;
    let out = a.out.canonicalize().map_err(io_err(&a.out))?;

    let data = match &a.data {
        Some(d) => d.clone(),
        None => generate_shop(a, &out.join("shop"), status)?,
    };
    let manifest = gclip_synth::Manifest::load(&data)?;

    let arch_path = out.join("model_cfg.json");
    let arch_text = match &a.arch {
        Some(p) => std::fs::read_to_string(p).map_err(io_err(p))?,
        None => DEFAULT_ARCH.to_owned(),
    };
    let arch: Value = serde_json::from_str(&arch_text).map_err(|source| Error::Json {
        path: a.arch.clone().unwrap_or_else(|| arch_path.clone()),
        source,
    })?;
    write_file(&arch_path, &arch_text)?;

    let train_csv = data.join(
        &manifest
            .splits
            .iter()
            .find(|s| s.name == "train")
            .ok_or_else(|| invalid("the manifest lists no train split"))?
            .file,
    );
    let train_rows = Table::read(&train_csv, "product_id")?.rows.len();
    let per_epoch = (train_rows / a.batch_size).max(1);
    let epochs = a.steps.div_ceil(per_epoch);

    if a.variants.is_empty() {
        return Err(invalid("the experiment needs at least one model to train"));
    }
    let mut runs = Vec::new();
    for &v in &a.variants {
        let cfg = train_config(a, v, &train_csv, &arch_path, &out.join(v.name()), epochs)?;
        let cfg_path = out.join(v.name()).join("train_config.json");
        std::fs::create_dir_all(&cfg.output).map_err(io_err(&cfg.output))?;
        write_file(&cfg_path, serde_json::to_string_pretty(&cfg)?)?;
        let model_dir = cfg.output.join("final").join("open_clip");
        if a.skip_train {
            if !model_dir.is_dir() {
                return Err(invalid(format!(
                    "skip-train: {} does not exist (run without it first)",
                    model_dir.display()
                )));
            }
            runs.push(RunResult {
                model: v,
                summary: None,
                train_seconds: None,
                last_loss: tail_loss(&cfg.output, 20),
                model_dir,
            });
            continue;
        }
        tracing::info!(model = v.name(), steps = a.steps, "training");
        status(&format!("training {} for {} steps", v.label(), a.steps));
        let t = Instant::now();
        let mut trainer = crate::trainer(cfg, None)?;
        let summary = trainer.run(a.progress)?;
        let secs = t.elapsed().as_secs_f64();
        status(&format!(
            "  {} steps in {:.0} s ({:.2} steps/s), loss {:.4} -> {:.4}",
            summary.steps, secs, summary.steps_per_s, summary.first_loss, summary.final_loss
        ));
        runs.push(RunResult {
            model: v,
            summary: Some(summary),
            train_seconds: Some(secs),
            last_loss: tail_loss(&out.join(v.name()), 20),
            model_dir,
        });
    }

    let t_eval = Instant::now();
    let mut retrieval = Vec::new();
    let mut zero_shot = Vec::new();
    for r in &runs {
        let clip = crate::Clip::load(&crate::ModelSource::Path {
            path: r.model_dir.clone(),
            arch: None,
        })?;
        let mut enc = Memo::new(&clip);
        // Each model is evaluated with documents embedded the way it was trained; the
        // other document form is cheap (embeddings are memoised) and shows how much of
        // the difference is the title field versus the better image tower.
        for docs in [DocFields::Image, DocFields::ImageTitle] {
            let splits = eval_splits(&data, &manifest, docs, a, r, &mut enc)?;
            retrieval.push(RetrievalResult {
                model: r.model,
                docs,
                splits,
            });
        }
        for set in &manifest.zeroshot {
            let folder = gclip_eval::image_folder(&data.join(&set.dir))?;
            let classes: Vec<String> = folder.classes.iter().map(|c| c.replace('_', " ")).collect();
            for (tname, template) in TEMPLATES {
                let rep = gclip_eval::evaluate_zero_shot(
                    &mut enc,
                    &classes,
                    &[template.to_owned()],
                    &folder.images,
                    256,
                )?;
                zero_shot.push(ZeroShotResult {
                    model: r.model,
                    set: set.name.clone(),
                    template: tname.to_owned(),
                    num_images: rep.num_images,
                    num_classes: rep.num_classes,
                    top1: rep.top1,
                    mean_per_class_recall: rep.mean_per_class_recall,
                });
            }
        }
    }
    let eval_seconds = t_eval.elapsed().as_secs_f64();

    let mean_ndcg = |v: Variant| -> f64 {
        retrieval
            .iter()
            .find(|r| r.model == v && r.docs == own_docs(v))
            .map_or(f64::NEG_INFINITY, |r| {
                let xs: Vec<f64> = r
                    .splits
                    .iter()
                    .filter_map(|s| metric(s, "ndcg@10"))
                    .collect();
                xs.iter().sum::<f64>() / xs.len().max(1) as f64
            })
    };
    let best = a
        .variants
        .iter()
        .copied()
        .max_by(|x, y| mean_ndcg(*x).total_cmp(&mean_ndcg(*y)))
        .unwrap_or(Variant::Gcl);

    let results = Results {
        command: a.command.clone(),
        data: data.clone(),
        seed: a.seed,
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        architecture: arch,
        runs,
        retrieval,
        zero_shot,
        best,
        eval_seconds,
    };
    export_best(&results, &out)?;
    let results_json = out.join("results.json");
    write_file(&results_json, serde_json::to_string_pretty(&results)?)?;
    let md = markdown(&results);
    let results_md = out.join("results.md");
    write_file(&results_md, &md)?;
    Ok(Outcome {
        results,
        markdown: md,
        results_json,
        results_md,
    })
}

/// What [`gcl_vs_clip_seeds`] wrote.
#[derive(Debug)]
pub struct SeedsOutcome {
    pub per_seed: Vec<Results>,
    pub summary: SeedSummary,
    /// The markdown summary (also in `summary.md`).
    pub markdown: String,
    pub summary_json: PathBuf,
    pub summary_md: PathBuf,
}

/// Mean and sample standard deviation of one figure across seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub values: Vec<f64>,
}

impl Spread {
    fn of(values: Vec<f64>) -> Spread {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Spread { mean, sd, values }
    }
}

/// One model's figure on one split (documents embedded as it was trained).
#[derive(Debug, Serialize)]
pub struct SplitSpread {
    pub model: Variant,
    pub split: String,
    pub metrics: std::collections::BTreeMap<String, Spread>,
}

/// One model's zero-shot top-1 on one set and prompt.
#[derive(Debug, Serialize)]
pub struct ZeroShotSpread {
    pub model: Variant,
    pub set: String,
    pub template: String,
    pub top1: Spread,
}

/// Every split and metric across seeds.
#[derive(Debug, Serialize)]
pub struct SeedSummary {
    pub command: String,
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub batch_size: usize,
    pub retrieval: Vec<SplitSpread>,
    pub zero_shot: Vec<ZeroShotSpread>,
    /// Mean training seconds per model.
    pub train_seconds: std::collections::BTreeMap<String, Spread>,
}

/// Runs [`gcl_vs_clip`] once per seed under `out/seed-N` (each seed its own shop, unless
/// `data` is set, and its own init and data order), then writes `out/summary.json` and
/// `out/summary.md`: every split and metric as mean and standard deviation across seeds.
pub fn gcl_vs_clip_seeds(
    a: &GclVsClipConfig,
    seeds: &[u64],
    status: &mut dyn FnMut(&str),
) -> Result<SeedsOutcome> {
    if seeds.is_empty() {
        return Err(invalid("no seeds given"));
    }
    let mut per_seed = Vec::new();
    for &seed in seeds {
        status(&format!("seed {seed}"));
        let cfg = GclVsClipConfig {
            out: a.out.join(format!("seed-{seed}")),
            seed,
            ..a.clone()
        };
        per_seed.push(gcl_vs_clip(&cfg, status)?.results);
    }
    let summary = summarise(a, seeds, &per_seed);
    let md = report::seeds_markdown(&summary);
    let summary_json = a.out.join("summary.json");
    write_file(&summary_json, serde_json::to_string_pretty(&summary)?)?;
    let summary_md = a.out.join("summary.md");
    write_file(&summary_md, &md)?;
    Ok(SeedsOutcome {
        per_seed,
        summary,
        markdown: md,
        summary_json,
        summary_md,
    })
}

fn summarise(a: &GclVsClipConfig, seeds: &[u64], per_seed: &[Results]) -> SeedSummary {
    let mut retrieval = Vec::new();
    let mut zero_shot = Vec::new();
    let mut train_seconds = std::collections::BTreeMap::new();
    for &v in &a.variants {
        for (split, _) in SPLITS {
            let mut metrics = std::collections::BTreeMap::new();
            let own: Vec<&SplitResult> = per_seed
                .iter()
                .filter_map(|r| {
                    r.retrieval
                        .iter()
                        .find(|x| x.model == v && x.docs == own_docs(v))
                })
                .filter_map(|x| x.splits.iter().find(|s| s.split == split))
                .collect();
            let names: Vec<String> = own
                .first()
                .and_then(|s| s.metrics.as_object())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for name in names {
                let values: Vec<f64> = own.iter().filter_map(|s| metric(s, &name)).collect();
                if values.len() == own.len() {
                    metrics.insert(name, Spread::of(values));
                }
            }
            retrieval.push(SplitSpread {
                model: v,
                split: split.to_owned(),
                metrics,
            });
        }
        let mut keys: Vec<(String, String)> = Vec::new();
        for z in per_seed.iter().flat_map(|r| &r.zero_shot) {
            let k = (z.set.clone(), z.template.clone());
            if z.model == v && !keys.contains(&k) {
                keys.push(k);
            }
        }
        for (set, template) in keys {
            let values: Vec<f64> = per_seed
                .iter()
                .flat_map(|r| &r.zero_shot)
                .filter(|z| z.model == v && z.set == set && z.template == template)
                .map(|z| z.top1)
                .collect();
            zero_shot.push(ZeroShotSpread {
                model: v,
                set,
                template,
                top1: Spread::of(values),
            });
        }
        let secs: Vec<f64> = per_seed
            .iter()
            .flat_map(|r| &r.runs)
            .filter(|x| x.model == v)
            .filter_map(|x| x.train_seconds)
            .collect();
        if !secs.is_empty() {
            train_seconds.insert(v.name().to_owned(), Spread::of(secs));
        }
    }
    SeedSummary {
        command: a.command.clone(),
        seeds: seeds.to_vec(),
        steps: a.steps,
        batch_size: a.batch_size,
        retrieval,
        zero_shot,
        train_seconds,
    }
}

/// The document form each model was trained with.
pub fn own_docs(v: Variant) -> DocFields {
    match v {
        Variant::Clip | Variant::GclNoTitle => DocFields::Image,
        Variant::Gcl | Variant::GclNoWeights | Variant::GclNoDedup => DocFields::ImageTitle,
    }
}

fn generate_shop(a: &GclVsClipConfig, dir: &Path, status: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    if dir.join("manifest.json").is_file() {
        let m = gclip_synth::Manifest::load(dir)?;
        if m.seed == a.seed
            && m.config.products == a.products
            && m.config.queries == a.queries
            && m.config.image_size == a.image_size
        {
            tracing::info!(dir = %dir.display(), "reusing the generated shop");
            return Ok(dir.to_path_buf());
        }
        return Err(invalid(format!(
            "{} holds a shop generated with other settings; remove it or use another output directory",
            dir.display()
        )));
    }
    let cfg = gclip_synth::SynthConfig {
        seed: a.seed,
        products: a.products,
        queries: a.queries,
        image_size: a.image_size,
        ..Default::default()
    };
    status(&format!(
        "generating a shop of {} products / {} queries in {}",
        a.products,
        a.queries,
        dir.display()
    ));
    let bar = a
        .progress
        .bar_with(1, "{msg:>16} [{bar:40}] {pos}/{len} ({elapsed})", "");
    let stage = std::sync::Mutex::new(None::<gclip_synth::Stage>);
    gclip_synth::generate(&cfg, dir, |p: gclip_synth::Progress| {
        if let Ok(mut s) = stage.lock() {
            if *s != Some(p.stage) {
                *s = Some(p.stage);
                bar.set_message(format!("{:?}", p.stage));
                bar.set_length(p.total as u64);
            }
        }
        bar.set_position(p.done as u64);
    })?;
    bar.finish_and_clear();
    Ok(dir.to_path_buf())
}

/// The training config of one contender; everything but the fields, weights and loss is
/// shared, so both runs have the same budget.
fn train_config(
    a: &GclVsClipConfig,
    v: Variant,
    train_csv: &Path,
    arch: &Path,
    output: &Path,
    epochs: usize,
) -> Result<TrainConfig> {
    let image = || (vec!["image".to_owned()], vec![1.0]);
    let image_title = || (vec!["image".to_owned(), "title".to_owned()], vec![0.9, 0.1]);
    let scored = || -> Result<_> {
        Ok((
            Some("score".to_owned()),
            ScoreToWeight::parse(&a.score_to_weight)?,
        ))
    };
    let unscored = || (None, ScoreToWeight::None);
    let ((right_keys, right_weights), (weight_key, stw), loss, dedup) = match v {
        Variant::Clip => (image(), unscored(), LossKind::Clip, false),
        Variant::Gcl => (image_title(), scored()?, LossKind::Gcl, true),
        Variant::GclNoTitle => (image(), scored()?, LossKind::Gcl, true),
        Variant::GclNoWeights => (image_title(), unscored(), LossKind::Gcl, true),
        Variant::GclNoDedup => (image_title(), scored()?, LossKind::Gcl, false),
    };
    Ok(TrainConfig {
        data: train_csv.to_path_buf(),
        left_keys: vec!["query".into()],
        left_weights: vec![1.0],
        right_keys,
        right_weights,
        image_keys: vec!["image".into()],
        weight_key,
        score_to_weight: stw,
        left_id_key: Some("query_id".into()),
        right_id_key: Some("product_id".into()),
        loss,
        dedup_negatives: dedup,
        arch: Some(arch.to_string_lossy().into_owned()),
        epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        warmup: a.warmup.unwrap_or(a.steps / 10),
        weight_decay: a.weight_decay,
        seed: a.seed,
        output: output.to_path_buf(),
        max_steps: Some(a.steps),
        ..TrainConfig::default()
    })
}

fn eval_splits(
    data: &Path,
    manifest: &gclip_synth::Manifest,
    docs: DocFields,
    a: &GclVsClipConfig,
    run: &RunResult,
    enc: &mut dyn gclip_vectors::FieldEncoder,
) -> Result<Vec<SplitResult>> {
    let pb = a.progress.bar_with(
        SPLITS.len() as u64,
        "{msg:>40} [{bar:20}] {pos}/{len} ({elapsed})",
        format!("eval {} / {}", run.model.name(), docs.label()),
    );
    let mut out = Vec::new();
    for (name, _) in SPLITS {
        let split = manifest
            .splits
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| invalid(format!("the manifest lists no {name} split")))?;
        let table = Table::read(&data.join(&split.file), "product_id")?;
        let corpus = Table::read(&data.join(&split.corpus), "product_id")?;
        let cfg = RetrievalConfig {
            left: vec![FieldSpec {
                key: "query".into(),
                weight: 1.0,
                kind: Some(FieldKind::Text),
            }],
            right: docs.specs(),
            weight_key: Some("score".into()),
            doc_id_key: "product_id".into(),
            query_id_key: None,
            num_queries: Some(a.eval_queries),
            top_k: 1000,
            seed: 1,
            metrics: MetricConfig::with_cutoffs(
                MARQO_CUTOFFS
                    .iter()
                    .copied()
                    .filter(|&k| k <= 1000)
                    .collect(),
            ),
            batch_size: 256,
            // The per-split bar above is enough.
            progress: Progress::Silent,
        };
        let t = Instant::now();
        let rep = gclip_eval::evaluate_retrieval(&table, Some(&corpus), &cfg, enc)?;
        tracing::info!(
            model = run.model.name(),
            docs = docs.label(),
            split = name,
            secs = t.elapsed().as_secs_f64(),
            ndcg10 = rep.evaluation.mean_of("ndcg@10"),
            "evaluated"
        );
        let metrics: Value = serde_json::to_value(rep.evaluation.means())?;
        out.push(SplitResult {
            split: name.to_owned(),
            num_queries: rep.evaluation.num_queries,
            num_documents: rep.num_documents,
            metrics,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Mean loss of the last `n` step records of `dir/metrics.jsonl` (the trainer's log:
/// step records carry `lr`, evaluation records do not).
fn tail_loss(dir: &Path, n: usize) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).ok()?;
    let losses: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("lr").is_some())
        .filter_map(|v| v.get("loss").and_then(Value::as_f64))
        .collect();
    let tail = &losses[losses.len().saturating_sub(n)..];
    (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64)
}

pub(crate) fn metric(s: &SplitResult, name: &str) -> Option<f64> {
    s.metrics.get(name).and_then(Value::as_f64)
}

/// Copies the winning model to `out/best/` as the embedded default model is stored:
/// open_clip config + safetensors with every float tensor in F16 (the loader widens to
/// F32; halves the size of the token embedding that dominates it), plus its train config.
fn export_best(r: &Results, out: &Path) -> Result<()> {
    let run = r
        .runs
        .iter()
        .find(|x| x.model == r.best)
        .ok_or_else(|| invalid("internal: the best model has no run"))?;
    let best = out.join("best");
    std::fs::create_dir_all(&best).map_err(io_err(&best))?;
    // The checkpoint core writes the open_clip layout with every tensor in F16.
    let ck = gclip_model::checkpoint::load_tensors(&run.model_dir, &Default::default())?;
    let opts = gclip_model::checkpoint::SaveOptions {
        layout: gclip_model::checkpoint::Layout::OpenClip,
        dtype: gclip_model::checkpoint::DType::F16,
    };
    gclip_model::checkpoint::save_tensors(
        &ck.tensors,
        &ck.config,
        &best,
        &opts,
        ck.preprocess.as_ref(),
    )?;
    let cfg = out.join(r.best.name()).join("train_config.json");
    std::fs::copy(&cfg, best.join("train_config.json")).map_err(io_err(&cfg))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_loss_averages_the_last_step_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = "{\"step\":1,\"loss\":4.0,\"lr\":0.1}\n\
                   {\"step\":1,\"loss\":9.0,\"recall_at_1\":0.5}\n\
                   {\"step\":2,\"loss\":3.0,\"lr\":0.1}\n\
                   {\"step\":3,\"loss\":1.0,\"lr\":0.1}\n";
        std::fs::write(dir.path().join("metrics.jsonl"), log).unwrap();
        assert_eq!(tail_loss(dir.path(), 2), Some(2.0));
        assert_eq!(tail_loss(dir.path(), 10), Some(8.0 / 3.0));
        assert_eq!(tail_loss(&dir.path().join("missing"), 2), None);
    }
}
