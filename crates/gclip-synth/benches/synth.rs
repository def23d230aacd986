//! Generator throughput: catalogue building, image rendering and the whole
//! `generate` call on the default 3000-product world.
//!
//! `cargo bench -p gclip-synth` (optionally `SYNTH_PRODUCTS=N`).

use std::time::Instant;

use gclip_synth::{generate, render_attributes_with_mask, Catalog, SynthConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() {
    let products = std::env::var("SYNTH_PRODUCTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let cfg = SynthConfig {
        products,
        ..SynthConfig::default()
    };
    let threads = rayon::current_num_threads();
    println!(
        "gclip-synth bench: {} products, {} queries, {} px, {threads} threads",
        cfg.products, cfg.queries, cfg.image_size
    );

    let t = Instant::now();
    let cat = Catalog::generate(&cfg).expect("catalogue");
    let catalog_s = t.elapsed().as_secs_f64();
    let pairs: usize = cat.results.iter().map(Vec::len).sum();
    println!("catalogue (titles, queries, ranking): {catalog_s:.3} s, {pairs} judged pairs");

    // Rendering alone, single thread, no encoding.
    let n = 500.min(cat.products.len());
    let t = Instant::now();
    for p in &cat.products[..n] {
        let mut rng = ChaCha8Rng::seed_from_u64(p.render_seed);
        std::hint::black_box(
            render_attributes_with_mask(&p.attributes, cfg.image_size, &mut rng).expect("render"),
        );
    }
    let per = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "render one {}px image (1 thread): {:.3} ms ({:.0} images/s)",
        cfg.image_size,
        per * 1e3,
        1.0 / per
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    let m = generate(&cfg, dir.path(), |_| {})
        .expect("generate")
        .manifest;
    let total = t.elapsed().as_secs_f64();
    let images = m.counts.products
        + m.zeroshot
            .iter()
            .flat_map(|s| &s.classes)
            .map(|c| c.images)
            .sum::<usize>();
    println!(
        "generate (all files, {images} images): {total:.2} s ({:.0} products/s)",
        m.counts.products as f64 / total
    );
}
