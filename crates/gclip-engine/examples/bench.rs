//! Stand-alone `gclip bench`: `cargo run --release -p gclip-engine --example bench -- --arch ViT-B-32`.

use clap::Parser;

#[derive(Parser)]
#[command(about = "Throughput of a random-weight CLIP model on the gclip engine")]
struct Cli {
    #[command(flatten)]
    args: gclip_engine::bench::BenchArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = gclip_engine::bench::run(&cli.args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
