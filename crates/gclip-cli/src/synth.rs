//! `gclip synth`: write a procedural product catalogue (images, titles,
//! queries, graded relevance, GS-10M splits, zero-shot class folders).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use gclip::synth::{generate, ImageFormat, Progress, Stage, SynthConfig};

/// Image file format for `--format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Png,
    Jpeg,
}

#[derive(clap::Args)]
pub struct Args {
    /// Output directory (created; must be empty or hold an earlier synth output).
    #[arg(long)]
    out: PathBuf,
    /// Seed of every random choice; the same seed gives identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of products (documents).
    #[arg(long, default_value_t = 3000)]
    products: usize,
    /// Number of distinct queries.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    image_size: u32,
    /// Image file format.
    #[arg(long, value_enum, default_value_t = Format::Png)]
    format: Format,
    /// JPEG quality (1-100).
    #[arg(long, default_value_t = 92)]
    jpeg_quality: u8,
    /// Colour x category combinations held out of the training split.
    #[arg(long, default_value_t = 8)]
    held_out_combos: usize,
    /// Images per class in each zero-shot classification folder set.
    #[arg(long, default_value_t = 20)]
    zeroshot_per_class: usize,
    /// Further renders of each training document (new pose, scale, background,
    /// noise), each captioned in captions.csv for CLIP-style training [default: none].
    #[arg(long, default_value_t = 0)]
    caption_views: usize,
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Catalog => "catalogue",
        Stage::Images => "product images",
        Stage::ZeroShot => "zero-shot images",
        Stage::Captions => "captioned views",
        Stage::Tables => "tables",
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        seed: args.seed,
        products: args.products,
        queries: args.queries,
        image_size: args.image_size,
        image_format: match args.format {
            Format::Png => ImageFormat::Png,
            Format::Jpeg => ImageFormat::Jpeg,
        },
        jpeg_quality: args.jpeg_quality,
        held_out_combos: args.held_out_combos,
        zeroshot_per_class: args.zeroshot_per_class,
        caption_views: args.caption_views,
        ..SynthConfig::default()
    };
    let bar = gclip::progress::Progress::Bar.bar_with(
        1,
        "{msg:>16} [{bar:40}] {pos}/{len} ({elapsed})",
        "",
    );
    // The callback runs on worker threads; the stage switch must not race.
    let current = Mutex::new(None::<Stage>);
    let start = Instant::now();
    let manifest = generate(&cfg, &args.out, |p: Progress| {
        if let Ok(mut cur) = current.lock() {
            if *cur != Some(p.stage) {
                *cur = Some(p.stage);
                bar.set_message(stage_name(p.stage));
                bar.set_length(p.total as u64);
                bar.set_position(0);
            }
        }
        bar.set_position(p.done as u64);
    })
    .with_context(|| format!("generating the catalogue into {}", args.out.display()))?
    .manifest;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let c = &manifest.counts;
    println!(
        "wrote {} products ({} seen / {} unseen), {} queries ({} seen / {} unseen) to {} in {:.1} s",
        c.products,
        c.seen_documents,
        c.unseen_documents,
        c.queries,
        c.seen_queries,
        c.unseen_queries,
        args.out.display(),
        secs
    );
    for s in &manifest.splits {
        println!(
            "  {:<26} {:>7} rows {:>5} queries {:>6} documents",
            s.file, s.rows, s.queries, s.documents
        );
    }
    let held: Vec<&str> = manifest
        .held_out_combos
        .iter()
        .map(|h| h.label.as_str())
        .collect();
    println!("  held out of training: {}", held.join(", "));
    Ok(())
}
