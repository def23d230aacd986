//! `gclip train`: CLIP / GCL contrastive training from a config file plus overrides.

use std::path::PathBuf;

use anyhow::Context;
use gclip::train::{Backend, LossKind, Progress, ScoreToWeight, TrainConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Training config (JSON or TOML, Marqo-style keys such as leftKeys / rightWeights).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training rows (.csv, .jsonl or .parquet).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Further training files with the same columns, read after --data (repeatable).
    #[arg(long)]
    extra_data: Vec<PathBuf>,
    /// GCL ablation: let rows sharing a query or document id be each other's negatives.
    #[arg(long)]
    no_dedup_negatives: bool,
    /// Held-out rows for recall after every epoch.
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Loss: clip or gcl.
    #[arg(long)]
    loss: Option<LossKind>,
    /// Checkpoint to fine-tune (open_clip or HF layout, or a weight file).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Architecture to train from scratch (built-in name or open_clip config JSON).
    #[arg(long)]
    arch: Option<String>,
    /// Score-to-weight: none, linear, reciprocal or minmax:MIN:MAX[:LO:HI].
    #[arg(long)]
    score_to_weight: Option<String>,
    /// Column holding the pair score.
    #[arg(long)]
    weight_key: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// Warmup steps.
    #[arg(long)]
    warmup: Option<usize>,
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    accum: Option<usize>,
    /// Gradient-norm clip (0 disables).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory (checkpoints, metrics.jsonl, curves.png, final model).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Freeze the image tower.
    #[arg(long)]
    lock_image: bool,
    /// Freeze the text tower.
    #[arg(long)]
    lock_text: bool,
    /// Checkpoint every N optimizer steps.
    #[arg(long)]
    save_every: Option<usize>,
    /// Resume from a checkpoint directory (e.g. OUTPUT/checkpoints/last).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop after N optimizer steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Whose image pipeline preprocesses the training images: open_clip or transformers
    /// [default: the checkpoint's own ecosystem's].
    #[arg(long, value_name = "PIPELINE")]
    image_pipeline: Option<gclip::ImagePipeline>,
    /// Training step implementation: auto (the fast CPU step where the architecture allows,
    /// else candle), fast, or candle [default: auto].
    #[arg(long)]
    backend: Option<Backend>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn apply(args: Args, mut c: TrainConfig) -> anyhow::Result<(TrainConfig, bool)> {
    macro_rules! set {
        ($($f:ident => $g:ident),*) => { $( if let Some(v) = args.$f { c.$g = v; } )* };
    }
    set!(data => data, loss => loss, epochs => epochs, batch_size => batch_size, lr => lr,
         warmup => warmup, weight_decay => weight_decay, accum => accum_steps, seed => seed,
         output => output, save_every => save_every, backend => backend);
    if let Some(p) = args.eval_data {
        c.eval_data = Some(p);
    }
    if !args.extra_data.is_empty() {
        c.extra_data = args.extra_data;
    }
    if args.no_dedup_negatives {
        c.dedup_negatives = false;
    }
    if let Some(p) = args.model {
        c.model = Some(p);
    }
    if let Some(a) = args.arch {
        c.arch = Some(a);
    }
    if let Some(k) = args.weight_key {
        c.weight_key = Some(k);
    }
    if let Some(s) = args.score_to_weight {
        c.score_to_weight = ScoreToWeight::parse(&s)?;
    }
    if let Some(m) = args.max_grad_norm {
        c.max_grad_norm = (m > 0.0).then_some(m);
    }
    if let Some(r) = args.resume {
        c.resume = Some(r);
    }
    if let Some(m) = args.max_steps {
        c.max_steps = Some(m);
    }
    c.lock_image |= args.lock_image;
    c.lock_text |= args.lock_text;
    Ok((c, args.quiet))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let base = match &args.config {
        Some(p) => TrainConfig::from_file(p).with_context(|| format!("reading {}", p.display()))?,
        None => TrainConfig::default(),
    };
    let pipeline = args.image_pipeline;
    let (cfg, quiet) = apply(args, base)?;
    let mut trainer = gclip::trainer(cfg, pipeline)?;
    let summary = trainer.run(Progress::from_quiet(quiet))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
