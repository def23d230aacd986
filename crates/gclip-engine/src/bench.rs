//! Throughput benchmark of a random-weight model of a named architecture
//! (the body of `gclip bench`).

use std::time::{Duration, Instant};

use gclip_model::Weights;

use crate::{EngineError, EngineModel, EngineOptions, Precision};

/// Benchmark options.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
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
    pub towers: Vec<String>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With int8: also build the fp32 model and print the cosine between
    /// int8 and fp32 embeddings over a fixed input set.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub check_int8: bool,
}

/// One measured (tower, batch) pair.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// "image" or "text".
    pub tower: String,
    /// Items per call.
    pub batch: usize,
    /// Items embedded per second.
    pub items_per_s: f64,
}

/// Deterministic pseudo-random pixels in [-2, 2] (about the range of
/// normalised images).
pub fn fixed_pixels(n: usize, size: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n * 3 * size * size)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Deterministic token sequences: start token, `tokens - 2` word ids, end
/// token, zero padding to `context`.
pub fn fixed_texts(
    n: usize,
    tokens: usize,
    context: usize,
    vocab: usize,
    seed: u64,
) -> Vec<Vec<u32>> {
    let tokens = tokens.clamp(2, context);
    let (sot, eot) = ((vocab - 2) as u32, (vocab - 1) as u32);
    let mut s = seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1;
    (0..n)
        .map(|_| {
            let mut row = vec![sot];
            for _ in 0..tokens - 2 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                row.push(1 + (s % (vocab as u64 - 3)) as u32);
            }
            row.push(eot);
            row.resize(context, 0);
            row
        })
        .collect()
}

/// Peak resident set size of this process in KiB (Linux `VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resets the kernel's peak-RSS mark so later readings cover inference
/// only (Linux `clear_refs` 5); returns whether it worked.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn measure(
    seconds: f64,
    items: usize,
    mut f: impl FnMut() -> Result<(), EngineError>,
) -> Result<f64, EngineError> {
    f()?; // warm-up: page in scratch buffers, wake the pool
    let t0 = Instant::now();
    let mut calls = 0usize;
    while calls < 2 || t0.elapsed() < Duration::from_secs_f64(seconds) {
        f()?;
        calls += 1;
    }
    Ok((calls * items) as f64 / t0.elapsed().as_secs_f64())
}

fn build(
    cfg: &gclip_model::ClipConfig,
    w: &Weights,
    args: &BenchArgs,
    p: Precision,
) -> Result<EngineModel, EngineError> {
    EngineModel::from_weights(
        cfg,
        w,
        &EngineOptions {
            precision: p,
            threads: args.threads,
            max_batch: None,
        },
    )
}

/// Runs the benchmark, printing one line per (tower, batch) and the peak
/// RSS, in `key=value` form that scripts can parse.
pub fn run(args: &BenchArgs) -> Result<Vec<BenchResult>, EngineError> {
    let cfg = gclip_model::arch::by_name(&args.arch)
        .map_err(|_| EngineError::UnknownArch(args.arch.clone()))?;
    if args.batch.is_empty() || args.batch.contains(&0) {
        return Err(EngineError::Input("--batch needs positive sizes".into()));
    }
    for t in &args.towers {
        if t != "image" && t != "text" {
            return Err(EngineError::Input(format!(
                "unknown tower `{t}` (expected image or text)"
            )));
        }
    }
    let t0 = Instant::now();
    let weights =
        Weights::random(&cfg, args.seed).map_err(|e| EngineError::Weight(e.to_string()))?;
    let model = build(&cfg, &weights, args, args.precision)?;
    let fp32 = if model.precision() == Precision::Int8 && args.check_int8 {
        Some(build(&cfg, &weights, args, Precision::Fp32)?)
    } else {
        None
    };
    drop(weights);
    let load_peak = peak_rss_kib();
    println!(
        "model arch={} precision={} threads={} isa={} vnni={} int8_kernel={} build_s={:.1}",
        args.arch,
        model.precision(),
        model.threads(),
        model.isa().name(),
        crate::cpu::features().vnni,
        crate::quant::int8_kernel(model.isa()).name(),
        t0.elapsed().as_secs_f64()
    );
    if let Some(f) = &fp32 {
        let px = fixed_pixels(8, cfg.vision.image_size, 11);
        let texts = fixed_texts(
            8,
            args.text_tokens,
            cfg.text.context_length,
            cfg.text.vocab_size,
            12,
        );
        let e = model.embed_dim();
        let ci = cosines(&model.encode_images(&px, 8)?, &f.encode_images(&px, 8)?, e);
        let ct = cosines(&model.encode_texts(&texts)?, &f.encode_texts(&texts)?, e);
        let stat = |c: &[f32]| {
            (
                c.iter().cloned().fold(1.0f32, f32::min),
                c.iter().sum::<f32>() / c.len() as f32,
            )
        };
        let (imin, imean) = stat(&ci);
        let (tmin, tmean) = stat(&ct);
        println!("int8_vs_fp32 image_cos_min={imin:.5} image_cos_mean={imean:.5} text_cos_min={tmin:.5} text_cos_mean={tmean:.5} (8 fixed inputs each)");
    }
    drop(fp32);
    let reset = reset_peak_rss();
    let mut out = Vec::new();
    let s = cfg.vision.image_size;
    for tower in &args.towers {
        for &b in &args.batch {
            let ips = if tower == "image" {
                let px = fixed_pixels(b, s, b as u64);
                measure(args.seconds, b, || model.encode_images(&px, b).map(|_| ()))?
            } else {
                let texts = fixed_texts(
                    b,
                    args.text_tokens,
                    cfg.text.context_length,
                    cfg.text.vocab_size,
                    b as u64,
                );
                measure(args.seconds, b, || model.encode_texts(&texts).map(|_| ()))?
            };
            let extra = if tower == "text" {
                format!(" tokens={}", args.text_tokens)
            } else {
                String::new()
            };
            println!(
                "bench tower={tower} batch={b} precision={} threads={} items_per_s={ips:.2}{extra}",
                model.precision(),
                model.threads()
            );
            out.push(BenchResult {
                tower: tower.clone(),
                batch: b,
                items_per_s: ips,
            });
        }
    }
    let mib = |k: Option<u64>| k.map_or("n/a".to_string(), |k| format!("{:.0}", k as f64 / 1024.0));
    println!(
        "peak_rss_mib={} (inference{}) load_peak_rss_mib={}",
        mib(peak_rss_kib()),
        if reset {
            ""
        } else {
            ", reset unavailable: includes load"
        },
        mib(load_peak)
    );
    Ok(out)
}

fn cosines(a: &[f32], b: &[f32], e: usize) -> Vec<f32> {
    a.chunks(e)
        .zip(b.chunks(e))
        .map(|(x, y)| {
            let d: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let n = x.iter().map(|p| p * p).sum::<f32>().sqrt()
                * y.iter().map(|q| q * q).sum::<f32>().sqrt();
            if n > 0.0 {
                d / n
            } else {
                0.0
            }
        })
        .collect()
}
