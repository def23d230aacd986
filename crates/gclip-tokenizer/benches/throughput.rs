//! Tokenizer throughput on one core.
//!
//! `cargo bench -p gclip-tokenizer --bench throughput`
//! (set `GCLIP_BENCH_PY=1` to also run open_clip's tokenizer on the same texts
//! through /work/refvenv/bin/python for the ratio).
use std::hint::black_box;
use std::io::Read;
use std::time::Instant;

use gclip_tokenizer::Tokenizer;

fn corpus() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/reference/tokenizer/corpus.jsonl.gz"
    );
    let gz = std::fs::read(path).expect("fixture corpus present");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("fixture corpus is gzip");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

fn main() {
    let texts = corpus();
    let tok = Tokenizer::openai();
    // Warm the word cache once, as a long-running service would be.
    let total: usize = texts.iter().map(|t| tok.encode(t).len()).sum();
    let rounds = 5;
    let start = Instant::now();
    for _ in 0..rounds {
        for t in &texts {
            black_box(tok.encode(black_box(t)));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let tps = (total * rounds) as f64 / secs;
    println!(
        "rust encode (warm cache): {} texts, {} tokens/round, {:.2} M tokens/s, {:.1} µs/text",
        texts.len(),
        total,
        tps / 1e6,
        secs * 1e6 / (texts.len() * rounds) as f64
    );

    let start = Instant::now();
    for _ in 0..rounds {
        for t in &texts {
            black_box(gclip_tokenizer::clean_text(black_box(t)));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  of which cleaning (ftfy, unescape, whitespace, lowercase): {:.1} µs/text",
        secs * 1e6 / (texts.len() * rounds) as f64
    );

    // Plain-ASCII texts (product titles, captions) skip the ftfy work.
    let ascii: Vec<&String> = texts.iter().filter(|t| t.is_ascii()).collect();
    let ascii_total: usize = ascii.iter().map(|t| tok.encode(t).len()).sum();
    let start = Instant::now();
    for _ in 0..rounds {
        for t in &ascii {
            black_box(tok.encode(black_box(t)));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "rust encode, ASCII subset (warm cache): {} texts, {:.2} M tokens/s",
        ascii.len(),
        (ascii_total * rounds) as f64 / secs / 1e6
    );

    let cold = Tokenizer::openai();
    let start = Instant::now();
    for t in &texts {
        black_box(cold.encode(black_box(t)));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "rust encode (cold cache, 1 round): {:.2} M tokens/s",
        total as f64 / secs / 1e6
    );

    let start = Instant::now();
    for _ in 0..rounds {
        black_box(tok.tokenize_batch(&texts, 77));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "rust tokenize_batch(77): {:.0} texts/s",
        (texts.len() * rounds) as f64 / secs
    );

    if std::env::var_os("GCLIP_BENCH_PY").is_some() {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/throughput_openclip.py"
        );
        let status = std::process::Command::new("/work/refvenv/bin/python")
            .arg(script)
            .status();
        if let Err(e) = status {
            eprintln!("could not run the Python reference: {e}");
        }
    }
}
