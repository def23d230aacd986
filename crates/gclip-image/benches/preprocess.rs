//! Preprocessing speed on a 4000x3000 JPEG -> 224x224 (decode, resize, crop, normalise).
//!
//! Run: `cargo bench -p gclip-image --bench preprocess [-- IMAGE]`.
//! `bench/compare_preprocess.py` runs this and PIL + open_clip side by side.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use gclip_image::{
    decode_rgb, resize_pil, resize_pil_single_thread, DecodeOptions, Filter, PreprocessConfig,
    Preprocessor,
};

/// Median wall time in milliseconds of `f` over `n` runs (after one warm-up).
fn time_ms(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[n / 2]
}

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/reference/images/files/huge_4000x3000.jpg")
        });
    let bytes = std::fs::read(&path).expect("benchmark image");
    let opts = DecodeOptions::default();
    let pre = Preprocessor::new(PreprocessConfig::default());
    let img = decode_rgb(&bytes, &opts).expect("decodable image");
    let (w, h) = img.dimensions();
    let n = 9;
    println!(
        "image {} ({w}x{h}), {} rayon threads, median of {n}",
        path.display(),
        rayon::current_num_threads()
    );

    let decode = time_ms(n, || {
        black_box(decode_rgb(&bytes, &opts).unwrap());
    });
    let pp = time_ms(n, || {
        black_box(pre.preprocess(&img));
    });
    let total = time_ms(n, || {
        black_box(pre.preprocess_bytes(&bytes).unwrap());
    });
    // Full shortest-side resize (no crop shortcut), threaded vs single thread.
    let nw = (224.0 * w as f64 / h as f64) as u32;
    let par = time_ms(n, || {
        black_box(resize_pil(&img, nw, 224, Filter::Bicubic));
    });
    let seq = time_ms(n, || {
        black_box(resize_pil_single_thread(&img, nw, 224, Filter::Bicubic));
    });
    println!("decode            {decode:8.2} ms");
    println!("resize+crop+norm  {pp:8.2} ms");
    println!(
        "resize {w}x{h}->{nw}x224: parallel {par:.2} ms, single thread {seq:.2} ms ({:.2}x)",
        seq / par
    );
    println!("RESULT total_ms={total:.3} decode_ms={decode:.3} preprocess_ms={pp:.3}");
}
