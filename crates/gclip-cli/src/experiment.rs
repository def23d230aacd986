//! `gclip experiment`: reproducible experiments on the generated shop (see
//! `gclip::experiment`). `gcl-vs-clip` trains a CLIP-style and a GCL model with the same
//! budget, evaluates both, and writes `results.json` and `results.md`.

use std::path::PathBuf;

use anyhow::Context;
use gclip::experiment::{GclVsClipConfig, Variant};
use gclip::progress::Progress;

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
    /// Seed of the generated shop and of every training run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Repeat the experiment for each of these seeds (comma-separated) under OUT/seed-N, each
    /// with its own shop, and write OUT/summary.json / summary.md (mean and spread); overrides
    /// --seed.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Also train the ablations: GCL without the title field, without score weights, and
    /// without de-duplicated negatives.
    #[arg(long)]
    ablations: bool,
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

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::GclVsClip(a) => gcl_vs_clip(a),
    }
}

fn gcl_vs_clip(a: GclVsClipArgs) -> anyhow::Result<()> {
    let cfg = GclVsClipConfig {
        out: a.out.clone(),
        data: a.data,
        seed: a.seed,
        products: a.products,
        queries: a.queries,
        image_size: a.image_size,
        arch: a.arch,
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        warmup: a.warmup,
        weight_decay: a.weight_decay,
        score_to_weight: a.score_to_weight,
        eval_queries: a.eval_queries,
        variants: if a.ablations {
            Variant::ALL.to_vec()
        } else {
            Variant::MAIN.to_vec()
        },
        skip_train: a.skip_train,
        progress: Progress::from_quiet(a.quiet),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let cfg = if a.quick { cfg.quick() } else { cfg };
    if !a.seeds.is_empty() {
        let outcome =
            gclip::experiment::gcl_vs_clip_seeds(&cfg, &a.seeds, &mut |line| eprintln!("{line}"))
                .with_context(|| format!("experiment gcl-vs-clip in {}", a.out.display()))?;
        print!("{}", outcome.markdown);
        eprintln!(
            "wrote {} and {}",
            outcome.summary_json.display(),
            outcome.summary_md.display()
        );
        return Ok(());
    }
    let outcome = gclip::experiment::gcl_vs_clip(&cfg, &mut |line| eprintln!("{line}"))
        .with_context(|| format!("experiment gcl-vs-clip in {}", a.out.display()))?;
    print!("{}", outcome.markdown);
    eprintln!(
        "wrote {} and {}",
        outcome.results_json.display(),
        outcome.results_md.display()
    );
    Ok(())
}
