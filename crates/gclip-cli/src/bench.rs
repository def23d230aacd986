//! `gclip bench`: items/s of a random-weight model of a named architecture, per tower and batch,
//! printed in `key=value` lines that scripts parse.

use gclip::engine::bench::{BenchOptions, BenchReport, BenchTower};
use gclip::Precision;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Built-in open_clip architecture name.
    #[arg(long, default_value = "ViT-B-32")]
    pub arch: String,
    /// Batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batch: Vec<usize>,
    /// Precision of the transformer linear layers: fp32 or int8.
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// Seconds to measure each (tower, batch) pair.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Tokens per text, counting start and end tokens (padded to the context
    /// length like tokenizer output).
    #[arg(long, default_value_t = 12)]
    pub text_tokens: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Towers to run: image, text or both.
    #[arg(long, value_delimiter = ',', default_value = "image,text")]
    pub towers: Vec<BenchTower>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With int8: also build the fp32 model and print the cosine between
    /// int8 and fp32 embeddings over a fixed input set.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub check_int8: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = BenchOptions {
        arch: args.arch,
        batch: args.batch,
        precision: args.precision,
        seconds: args.seconds,
        text_tokens: args.text_tokens,
        threads: args.threads,
        towers: args.towers,
        seed: args.seed,
        check_int8: args.check_int8,
    };
    let report = gclip::engine::bench::run(&opts)?;
    print_report(&report);
    Ok(())
}

fn print_report(r: &BenchReport) {
    println!(
        "model arch={} precision={} threads={} isa={} vnni={} int8_kernel={} build_s={:.1}",
        r.arch, r.precision, r.threads, r.isa, r.vnni, r.int8_kernel, r.build_s
    );
    if let Some(c) = &r.int8_check {
        println!(
            "int8_vs_fp32 image_cos_min={:.5} image_cos_mean={:.5} text_cos_min={:.5} \
             text_cos_mean={:.5} ({} fixed inputs each)",
            c.image_cos_min, c.image_cos_mean, c.text_cos_min, c.text_cos_mean, c.inputs
        );
    }
    for b in &r.results {
        let extra = match b.tower {
            BenchTower::Text => format!(" tokens={}", r.text_tokens),
            BenchTower::Image => String::new(),
        };
        println!(
            "bench tower={} batch={} precision={} threads={} items_per_s={:.2}{extra}",
            b.tower.name(),
            b.batch,
            r.precision,
            r.threads,
            b.items_per_s
        );
    }
    let mib = |k: Option<u64>| k.map_or("n/a".to_string(), |k| format!("{:.0}", k as f64 / 1024.0));
    println!(
        "peak_rss_mib={} (inference{}) load_peak_rss_mib={}",
        mib(r.peak_rss_kib),
        if r.peak_rss_reset {
            ""
        } else {
            ", reset unavailable: includes load"
        },
        mib(r.load_peak_rss_kib)
    );
}
