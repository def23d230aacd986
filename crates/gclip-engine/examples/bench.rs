//! Stand-alone throughput run: `cargo run --release -p gclip-engine --example bench -- ViT-B-32`
//! (`gclip bench` has every option).

fn main() {
    let arch = std::env::args().nth(1).unwrap_or_else(|| "ViT-B-32".into());
    let opts = gclip_engine::bench::BenchOptions {
        arch,
        ..Default::default()
    };
    match gclip_engine::bench::run(&opts) {
        Ok(report) => {
            for r in &report.results {
                println!(
                    "{} batch={} items_per_s={:.2}",
                    r.tower.name(),
                    r.batch,
                    r.items_per_s
                );
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
