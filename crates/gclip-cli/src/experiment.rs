//! `gclip experiment`: reproducible experiments on the generated shop.
//!
//! `gcl-vs-clip` trains two small models from scratch with the same budget (steps, batch,
//! learning rate, architecture, seed) on the same `gclip synth` shop:
//!
//! * **CLIP-style**: query against the product image only, every pair weighing 1, the
//!   plain symmetric InfoNCE loss;
//! * **GCL**: query against the fused image (0.9) + title (0.1) document, pairs weighted
//!   by their relevance score, the weighted de-duplicated GCL loss;
//!
//! then evaluates both with Marqo's GCL retrieval protocol on the four test splits and
//! with zero-shot classification on the shop's class folders, and writes `results.json`
//! and `results.md` (a README-ready table).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use gclip_eval::metrics::MetricConfig;
use gclip_eval::{FieldEncoder, FieldKind, FieldSpec, RetrievalConfig, Table, MARQO_CUTOFFS};
use gclip_train::{LossKind, Progress, ScoreToWeight, TrainConfig, TrainSummary, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Train CLIP-style and GCL models on the same generated shop and compare them.
    GclVsClip(GclVsClipArgs),
}

#[derive(clap::Args)]
pub struct GclVsClipArgs {
    /// Output directory: shop (unless --data), both runs, results.json, results.md, best/.
    #[arg(long)]
    out: PathBuf,
    /// Use this existing `gclip synth` output instead of generating one under OUT/shop.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Seed of the generated shop and of both training runs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Products in the generated shop.
    #[arg(long, default_value_t = 3000)]
    products: usize,
    /// Queries in the generated shop.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Image side of the generated shop (the model's input side is in the architecture).
    #[arg(long, default_value_t = 64)]
    image_size: u32,
    /// open_clip model-config JSON of the architecture [default: the built-in small one,
    /// written to OUT/model_cfg.json].
    #[arg(long)]
    arch: Option<PathBuf>,
    /// Optimizer steps of each run (the shared budget).
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Pairs per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate (cosine schedule after a linear warmup).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Warmup steps [default: 10% of --steps].
    #[arg(long)]
    warmup: Option<usize>,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    /// Score-to-weight of the GCL run: none, linear, reciprocal or minmax:MIN:MAX[:LO:HI].
    #[arg(long, default_value = "linear")]
    score_to_weight: String,
    /// Queries sampled per split by the retrieval protocol (weighted, seed 1).
    #[arg(long, default_value_t = 2000)]
    eval_queries: usize,
    /// Smoke run: a 300-product shop, 20 steps of 64 pairs (overrides the sizes above).
    #[arg(long)]
    quick: bool,
    /// Reuse OUT/clip and OUT/gcl models from an earlier run; only evaluate.
    #[arg(long)]
    skip_train: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// The architecture trained by default (also `experiments/gcl-vs-clip/model_cfg.json`): a
/// 4-layer ViT with 16 px patches on 64 px images (17 tokens: patch 8 cost twice the time
/// per step on the 2-core CPU) and a 3-layer text tower over the full CLIP BPE vocabulary
/// (so the model reads any text). The text width is kept at 64 because the 49408-row
/// token embedding dominates the file size.
const DEFAULT_ARCH: &str = r#"{
  "model_cfg": {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "head_width": 32, "layers": 4},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3}
  }
}
"#;

/// The two contenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Variant {
    Clip,
    Gcl,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Clip => "clip",
            Variant::Gcl => "gcl",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Variant::Clip => "CLIP-style (query vs image, weight 1)",
            Variant::Gcl => "GCL (query vs 0.9 image + 0.1 title, score-weighted)",
        }
    }
}

/// How documents are embedded at evaluation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum DocFields {
    /// The image alone.
    Image,
    /// normalise(0.9 image + 0.1 title), Marqo's fusion.
    ImageTitle,
}

impl DocFields {
    fn specs(self) -> Vec<FieldSpec> {
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
    fn label(self) -> &'static str {
        match self {
            DocFields::Image => "image",
            DocFields::ImageTitle => "0.9 image + 0.1 title",
        }
    }
}

/// The four metrics of the README table, by their gclip-eval names.
const HEADLINE: [(&str, &str); 4] = [
    ("ndcg@10", "nDCG@10"),
    ("err", "ERR"),
    ("rbp@0.9", "RBP@0.9"),
    ("mrr@10", "MRR@10"),
];

/// Splits in table order: (name in the manifest, label).
const SPLITS: [(&str, &str); 4] = [
    ("in_domain", "in-domain"),
    ("novel_query", "novel query"),
    ("novel_document", "novel document"),
    ("zero_shot", "zero-shot (both novel)"),
];

/// Zero-shot prompt templates: the bare class name reads like the shop's queries (what
/// the models were trained on); the CLIP prompt is reported too for comparison.
const TEMPLATES: [(&str, &str); 2] = [("bare", "{}"), ("photo", "a photo of a {}.")];

#[derive(Debug, Serialize)]
struct SplitResult {
    split: String,
    num_queries: usize,
    num_documents: usize,
    /// Every metric mean of the protocol (`ndcg@10`, `err`, `rbp@0.9`, ...).
    metrics: Value,
}

#[derive(Debug, Serialize)]
struct RetrievalResult {
    model: Variant,
    docs: DocFields,
    splits: Vec<SplitResult>,
}

#[derive(Debug, Serialize)]
struct ZeroShotResult {
    model: Variant,
    set: String,
    template: String,
    num_images: usize,
    num_classes: usize,
    top1: f64,
    mean_per_class_recall: f64,
}

#[derive(Debug, Serialize)]
struct RunResult {
    model: Variant,
    summary: Option<TrainSummary>,
    train_seconds: Option<f64>,
    /// Mean training loss of the last 20 optimizer steps (from the run's metrics log).
    last_loss: Option<f64>,
    model_dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Results {
    command: String,
    data: PathBuf,
    seed: u64,
    steps: usize,
    batch_size: usize,
    lr: f64,
    architecture: Value,
    runs: Vec<RunResult>,
    retrieval: Vec<RetrievalResult>,
    zero_shot: Vec<ZeroShotResult>,
    /// The model copied to `best/` (highest mean nDCG@10 over the splits, each model
    /// evaluated the way it was trained).
    best: Variant,
    eval_seconds: f64,
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::GclVsClip(a) => gcl_vs_clip(a),
    }
}

fn gcl_vs_clip(mut a: GclVsClipArgs) -> anyhow::Result<()> {
    if a.quick {
        a.products = 300;
        a.queries = 120;
        a.steps = 20;
        a.batch_size = 64;
        a.eval_queries = a.eval_queries.min(200);
    }
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if a.batch_size < 2 {
        bail!("--batch-size must be at least 2");
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let out = a
        .out
        .canonicalize()
        .with_context(|| format!("resolving {}", a.out.display()))?;

    let data = match &a.data {
        Some(d) => d.clone(),
        None => generate_shop(&a, &out.join("shop"))?,
    };
    let manifest = gclip_synth::Manifest::load(&data)
        .with_context(|| format!("{} is not a gclip synth output", data.display()))?;

    let arch_path = out.join("model_cfg.json");
    let arch_text = match &a.arch {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => DEFAULT_ARCH.to_owned(),
    };
    let arch: Value = serde_json::from_str(&arch_text).context("parsing the architecture JSON")?;
    std::fs::write(&arch_path, &arch_text)
        .with_context(|| format!("writing {}", arch_path.display()))?;

    let train_csv = data.join(
        &manifest
            .splits
            .iter()
            .find(|s| s.name == "train")
            .context("the manifest lists no train split")?
            .file,
    );
    let train_rows = Table::read(&train_csv, "product_id")?.rows.len();
    let per_epoch = (train_rows / a.batch_size).max(1);
    let epochs = a.steps.div_ceil(per_epoch);

    let mut runs = Vec::new();
    for v in [Variant::Clip, Variant::Gcl] {
        let cfg = train_config(&a, v, &train_csv, &arch_path, &out.join(v.name()), epochs)?;
        let cfg_path = out.join(v.name()).join("train_config.json");
        std::fs::create_dir_all(&cfg.output)?;
        std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg)?)
            .with_context(|| format!("writing {}", cfg_path.display()))?;
        let model_dir = cfg.output.join("final").join("open_clip");
        if a.skip_train {
            if !model_dir.is_dir() {
                bail!(
                    "--skip-train: {} does not exist (run without it first)",
                    model_dir.display()
                );
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
        eprintln!("training {} for {} steps", v.label(), a.steps);
        let t = Instant::now();
        let mut trainer = Trainer::new(cfg).with_context(|| format!("setting up {}", v.name()))?;
        let summary = trainer
            .run(if a.quiet {
                Progress::Silent
            } else {
                Progress::Bar
            })
            .with_context(|| format!("training {}", v.name()))?;
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "  {} steps in {:.0} s ({:.2} steps/s), loss {:.4} -> {:.4}",
            summary.steps, secs, summary.steps_per_s, summary.first_loss, summary.final_loss
        );
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
        let clip = gclip::Clip::load(&gclip::ModelSource::Path {
            path: r.model_dir.clone(),
            arch: None,
        })
        .with_context(|| format!("loading {}", r.model_dir.display()))?;
        let mut enc = Memo::new(gclip::ClipFieldEncoder(clip));
        // Each model is evaluated with documents embedded the way it was trained; the
        // other document form is cheap (embeddings are memoised) and shows how much of
        // the difference is the title field versus the better image tower.
        for docs in [DocFields::Image, DocFields::ImageTitle] {
            let splits = eval_splits(&data, &manifest, docs, a.eval_queries, &mut enc, &a, r)?;
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

    let own_docs = |v: Variant| match v {
        Variant::Clip => DocFields::Image,
        Variant::Gcl => DocFields::ImageTitle,
    };
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
    let best = if mean_ndcg(Variant::Gcl) >= mean_ndcg(Variant::Clip) {
        Variant::Gcl
    } else {
        Variant::Clip
    };

    let results = Results {
        command,
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
    let json_path = out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md = markdown(&results, own_docs);
    let md_path = out.join("results.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    print!("{md}");
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

fn generate_shop(a: &GclVsClipArgs, dir: &Path) -> anyhow::Result<PathBuf> {
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
        bail!(
            "{} holds a shop generated with other settings; remove it or pass another --out",
            dir.display()
        );
    }
    let cfg = gclip_synth::SynthConfig {
        seed: a.seed,
        products: a.products,
        queries: a.queries,
        image_size: a.image_size,
        ..Default::default()
    };
    eprintln!(
        "generating a shop of {} products / {} queries in {}",
        a.products,
        a.queries,
        dir.display()
    );
    let bar = bar(a.quiet, 1, "{msg:>16} [{bar:40}] {pos}/{len} ({elapsed})")?;
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
    })
    .with_context(|| format!("generating the shop in {}", dir.display()))?;
    bar.finish_and_clear();
    Ok(dir.to_path_buf())
}

fn bar(quiet: bool, len: u64, template: &str) -> anyhow::Result<ProgressBar> {
    if quiet {
        return Ok(ProgressBar::hidden());
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template(template)?.progress_chars("=> "));
    Ok(b)
}

/// The training config of one contender; everything but the fields, weights and loss is
/// shared, so both runs have the same budget.
fn train_config(
    a: &GclVsClipArgs,
    v: Variant,
    train_csv: &Path,
    arch: &Path,
    output: &Path,
    epochs: usize,
) -> anyhow::Result<TrainConfig> {
    let (right_keys, right_weights, weight_key, stw, loss) = match v {
        Variant::Clip => (
            vec!["image".to_owned()],
            vec![1.0],
            None,
            ScoreToWeight::None,
            LossKind::Clip,
        ),
        Variant::Gcl => (
            vec!["image".to_owned(), "title".to_owned()],
            vec![0.9, 0.1],
            Some("score".to_owned()),
            ScoreToWeight::parse(&a.score_to_weight)?,
            LossKind::Gcl,
        ),
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
    num_queries: usize,
    enc: &mut Memo<gclip::ClipFieldEncoder>,
    a: &GclVsClipArgs,
    run: &RunResult,
) -> anyhow::Result<Vec<SplitResult>> {
    let pb = bar(
        a.quiet,
        SPLITS.len() as u64,
        "{msg:>40} [{bar:20}] {pos}/{len} ({elapsed})",
    )?;
    pb.set_message(format!("eval {} / {}", run.model.name(), docs.label()));
    let mut out = Vec::new();
    for (name, _) in SPLITS {
        let split = manifest
            .splits
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("the manifest lists no {name} split"))?;
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
            num_queries: Some(num_queries),
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
        };
        let t = Instant::now();
        let rep = gclip_eval::evaluate_retrieval(&table, Some(&corpus), &cfg, enc)
            .with_context(|| format!("evaluating {} on {name}", run.model.name()))?;
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

fn metric(s: &SplitResult, name: &str) -> Option<f64> {
    s.metrics.get(name).and_then(Value::as_f64)
}

/// Copies the winning model to `out/best/` as the embedded default model is stored:
/// open_clip config + safetensors with every float tensor in F16 (the loader widens to
/// F32; halves the size of the token embedding that dominates it), plus its train config.
fn export_best(r: &Results, out: &Path) -> anyhow::Result<()> {
    let run = r
        .runs
        .iter()
        .find(|x| x.model == r.best)
        .context("the best model has no run")?;
    let best = out.join("best");
    std::fs::create_dir_all(&best)?;
    let cfg_src = run.model_dir.join("open_clip_config.json");
    std::fs::copy(&cfg_src, best.join("open_clip_config.json"))
        .with_context(|| format!("copying {}", cfg_src.display()))?;
    let train_cfg = out.join(r.best.name()).join("train_config.json");
    std::fs::copy(&train_cfg, best.join("train_config.json"))
        .with_context(|| format!("copying {}", train_cfg.display()))?;
    let src = run.model_dir.join("open_clip_model.safetensors");
    let bytes = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
    let f16 =
        to_f16_safetensors(&bytes).with_context(|| format!("converting {}", src.display()))?;
    let dst = best.join("open_clip_model.safetensors");
    std::fs::write(&dst, f16).with_context(|| format!("writing {}", dst.display()))?;
    Ok(())
}

/// Re-encodes a safetensors file with its F32 tensors as F16 (others unchanged).
fn to_f16_safetensors(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in st.tensors() {
        let data = if t.dtype() == Dtype::F32 {
            let out: Vec<u8> = t
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    half::f16::from_f32(x).to_le_bytes()
                })
                .collect();
            (Dtype::F16, out)
        } else {
            (t.dtype(), t.data().to_vec())
        };
        owned.push((name, data.0, t.shape().to_vec(), data.1));
    }
    owned.sort_by(|x, y| x.0.cmp(&y.0));
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<anyhow::Result<_>>()?;
    let meta: HashMap<String, String> = st_metadata(bytes);
    Ok(safetensors::serialize(views, Some(meta))?)
}

/// The `__metadata__` of a safetensors file (e.g. `format: pt`), kept on conversion.
fn st_metadata(bytes: &[u8]) -> HashMap<String, String> {
    safetensors::SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default()
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

fn markdown(r: &Results, own_docs: impl Fn(Variant) -> DocFields) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Shop: `{}` (seed {}). Both models: same architecture, {} steps x {} pairs, lr {}, seed {}.\n\n",
        r.data.display(),
        r.seed,
        r.steps,
        r.batch_size,
        r.lr,
        r.seed
    ));
    s.push_str("Retrieval (Marqo GCL protocol: weighted query sample with seed 1, top 1000 over the split's corpus, graded relevance = rescaled score):\n\n");
    s.push_str("| model | documents embedded as | split | nDCG@10 | ERR | RBP@0.9 | MRR@10 |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    // Each model as trained first, then the cross-check rows.
    let mut rows: Vec<&RetrievalResult> = r.retrieval.iter().collect();
    rows.sort_by_key(|x| (x.docs != own_docs(x.model), x.model == Variant::Gcl));
    for (i, rr) in rows.iter().enumerate() {
        let own = rr.docs == own_docs(rr.model);
        if i > 0 && !own && rows[i - 1].docs == own_docs(rows[i - 1].model) {
            s.push_str("| *cross-check* | | | | | | |\n");
        }
        for sp in &rr.splits {
            let label = SPLITS
                .iter()
                .find(|(n, _)| *n == sp.split)
                .map_or(sp.split.as_str(), |(_, l)| l);
            s.push_str(&format!(
                "| {} | {} | {} ({} q) |",
                rr.model.name().to_uppercase(),
                rr.docs.label(),
                label,
                sp.num_queries
            ));
            for (m, _) in HEADLINE {
                s.push_str(&format!(" {} |", fmt_opt(metric(sp, m))));
            }
            s.push('\n');
        }
    }
    s.push_str(
        "\nZero-shot classification, top-1 accuracy (prompt `{}` / `a photo of a {}.`):\n\n",
    );
    s.push_str("| model | set | classes | images | top-1 (bare) | top-1 (photo) |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for v in [Variant::Clip, Variant::Gcl] {
        let mut sets: Vec<&str> = r
            .zero_shot
            .iter()
            .filter(|z| z.model == v)
            .map(|z| z.set.as_str())
            .collect();
        sets.dedup();
        for set in sets {
            let get = |t: &str| {
                r.zero_shot
                    .iter()
                    .find(|z| z.model == v && z.set == set && z.template == t)
            };
            let (b, p) = (get("bare"), get("photo"));
            let any = b.or(p);
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                v.name().to_uppercase(),
                set,
                any.map_or(0, |z| z.num_classes),
                any.map_or(0, |z| z.num_images),
                fmt_opt(b.map(|z| z.top1)),
                fmt_opt(p.map(|z| z.top1)),
            ));
        }
    }
    s.push_str(
        "\nTraining (loss: first step / mean of the last 20 steps; chance level is ln(batch)):\n\n\
         | model | steps | seconds | steps/s | first loss | last-20 loss |\n|---|---|---|---|---|---|\n",
    );
    for run in &r.runs {
        let last = fmt_opt(run.last_loss);
        match &run.summary {
            Some(sm) => s.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.4} | {last} |\n",
                run.model.label(),
                sm.steps,
                run.train_seconds.unwrap_or(f64::NAN),
                sm.steps_per_s,
                sm.first_loss,
            )),
            None => s.push_str(&format!(
                "| {} | (reused) | | | | {last} |\n",
                run.model.label()
            )),
        }
    }
    s.push_str(&format!(
        "\nEvaluation took {:.0} s. Best model (mean nDCG@10, own document form): {}.\n",
        r.eval_seconds,
        r.best.name().to_uppercase()
    ));
    s
}

/// Memoises an encoder's outputs in memory, so the same corpus embedded for several
/// splits, document forms and zero-shot sets is encoded once per model.
struct Memo<E> {
    inner: E,
    texts: HashMap<String, Vec<f32>>,
    images: HashMap<PathBuf, Vec<f32>>,
}

impl<E: FieldEncoder> Memo<E> {
    fn new(inner: E) -> Self {
        Memo {
            inner,
            texts: HashMap::new(),
            images: HashMap::new(),
        }
    }
}

/// Looks every key up in `memo`, encodes the missing ones in one call, and returns the
/// vectors in input order.
fn memoised<K: Clone + Eq + std::hash::Hash>(
    memo: &mut HashMap<K, Vec<f32>>,
    keys: &[K],
    encode: impl FnOnce(&[K]) -> Result<Vec<Vec<f32>>, gclip_eval::BoxError>,
) -> Result<Vec<Vec<f32>>, gclip_eval::BoxError> {
    let mut missing: Vec<K> = Vec::new();
    for k in keys {
        if !memo.contains_key(k) && !missing.contains(k) {
            missing.push(k.clone());
        }
    }
    if !missing.is_empty() {
        let vecs = encode(&missing)?;
        if vecs.len() != missing.len() {
            return Err(format!("{} vectors for {} inputs", vecs.len(), missing.len()).into());
        }
        memo.extend(missing.into_iter().zip(vecs));
    }
    keys.iter()
        .map(|k| {
            memo.get(k)
                .cloned()
                .ok_or_else(|| gclip_eval::BoxError::from("memoised embedding vanished"))
        })
        .collect()
}

impl<E: FieldEncoder> FieldEncoder for Memo<E> {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, gclip_eval::BoxError> {
        let inner = &mut self.inner;
        memoised(&mut self.texts, texts, |m| inner.encode_texts(m))
    }
    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>, gclip_eval::BoxError> {
        let inner = &mut self.inner;
        memoised(&mut self.images, paths, |m| inner.encode_images(m))
    }
    fn model_id(&self) -> String {
        self.inner.model_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::{Dtype, TensorView};

    #[test]
    fn f16_export_keeps_names_shapes_and_values() {
        let a: Vec<f32> = vec![0.1, -2.5, 1e-3, 65504.0, 0.0, 3.0];
        let ids: Vec<u8> = vec![1, 0, 0, 0, 2, 0, 0, 0];
        let a_bytes: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = vec![
            (
                "w".to_owned(),
                TensorView::new(Dtype::F32, vec![2, 3], &a_bytes).unwrap(),
            ),
            (
                "ids".to_owned(),
                TensorView::new(Dtype::I32, vec![2], &ids).unwrap(),
            ),
        ];
        let meta: HashMap<String, String> = [("format".to_owned(), "pt".to_owned())].into();
        let src = safetensors::serialize(views, Some(meta)).unwrap();
        let out = to_f16_safetensors(&src).unwrap();
        let st = safetensors::SafeTensors::deserialize(&out).unwrap();
        let w = st.tensor("w").unwrap();
        assert_eq!(w.dtype(), Dtype::F16);
        assert_eq!(w.shape(), &[2, 3]);
        let back: Vec<f32> = w
            .data()
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        for (x, y) in a.iter().zip(&back) {
            assert!((x - y).abs() <= x.abs() * 1e-3 + 1e-6, "{x} -> {y}");
        }
        let i = st.tensor("ids").unwrap();
        assert_eq!((i.dtype(), i.data()), (Dtype::I32, ids.as_slice()));
        assert_eq!(
            st_metadata(&out).get("format").map(String::as_str),
            Some("pt")
        );
    }

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

    #[test]
    fn memo_encodes_each_input_once() {
        struct Counting(usize);
        impl FieldEncoder for Counting {
            fn encode_texts(
                &mut self,
                texts: &[String],
            ) -> Result<Vec<Vec<f32>>, gclip_eval::BoxError> {
                self.0 += texts.len();
                Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
            }
            fn encode_images(
                &mut self,
                paths: &[PathBuf],
            ) -> Result<Vec<Vec<f32>>, gclip_eval::BoxError> {
                self.0 += paths.len();
                Ok(paths.iter().map(|_| vec![1.0]).collect())
            }
            fn model_id(&self) -> String {
                "counting".into()
            }
        }
        let mut m = Memo::new(Counting(0));
        let t = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let a = m.encode_texts(&t(&["ab", "abc", "ab"])).unwrap();
        assert_eq!(a, vec![vec![2.0], vec![3.0], vec![2.0]]);
        let b = m.encode_texts(&t(&["abc", "abcd"])).unwrap();
        assert_eq!(b, vec![vec![3.0], vec![4.0]]);
        assert_eq!(m.inner.0, 3);
    }
}
