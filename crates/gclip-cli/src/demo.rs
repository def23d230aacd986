//! `gclip demo`: a tour of gclip's main job on a generated shop (see `gclip::demo`): search,
//! similarity, zero-shot; the transcript goes to stdout, the page to `DIR/index.html`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use gclip::demo::DemoConfig;
use gclip::Clip;

use crate::common::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Output directory: the catalogue goes to DIR/catalogue, the page to DIR/index.html.
    #[arg(long, value_name = "DIR", default_value = "gclip-demo")]
    out: PathBuf,
    /// Number of products in the generated catalogue (at least 20).
    #[arg(long, default_value_t = 240)]
    products: usize,
    /// Seed of the generated catalogue.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Results shown per search.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    // The model first: without one there is nothing to show, so nothing is written.
    let clip = load_model(&args.model)?;
    let cfg = DemoConfig {
        out: args.out.clone(),
        products: args.products,
        seed: args.seed,
        top: args.top,
        ..DemoConfig::default()
    };
    let report = gclip::demo::run(&clip, &cfg, &mut |line| println!("{line}"))
        .with_context(|| format!("running the demo into {}", args.out.display()))?;
    println!("\nHTML page: {}", report.index.display());
    let images = args.out.join("catalogue").join("images");
    println!(
        "Search it in a browser: gclip index create demo --settings '{{\"treatUrlsAndPointersAsImages\": true}}' \\\n  \
         && gclip index add demo --images {} \\\n  \
         && gclip serve --allow-dir {}   # then open http://127.0.0.1:8882/ui?index=demo",
        images.display(),
        args.out.display()
    );
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Loads the model, turning "no default model" into advice on what to pass instead.
fn load_model(args: &ModelArgs) -> anyhow::Result<Clip> {
    args.load().map_err(|e| {
        let no_default = e
            .chain()
            .any(|c| matches!(c.downcast_ref(), Some(gclip::Error::NoDefaultModel(_))));
        if no_default {
            e.context(
                "the demo needs a model: pass --model DIR (a checkpoint directory; \
                 tests/fixtures/reference/cli/model is a tiny random one that exercises the \
                 pipeline) or set GCLIP_MODEL",
            )
        } else {
            e
        }
    })
}
