//! Throughput benchmark of a random-weight model of a named architecture (the body of
//! `gclip bench`, which parses the options and prints the report).

use std::time::{Duration, Instant};

use gclip_checkpoint::{random_tensors, ClipConfig, TensorMap};

use crate::{EngineError, EngineModel, EngineOptions, Precision};

/// Which tower a measurement runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTower {
    /// The vision tower on fixed pseudo-random pixels.
    Image,
    /// The text tower on fixed token sequences.
    Text,
}

impl BenchTower {
    /// `image` or `text`.
    pub fn name(self) -> &'static str {
        match self {
            BenchTower::Image => "image",
            BenchTower::Text => "text",
        }
    }
}

impl std::str::FromStr for BenchTower {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "image" => Ok(BenchTower::Image),
            "text" => Ok(BenchTower::Text),
            other => Err(EngineError::Input(format!(
                "unknown tower `{other}` (expected image or text)"
            ))),
        }
    }
}

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Built-in open_clip architecture name.
    pub arch: String,
    /// Batch sizes (each positive).
    pub batch: Vec<usize>,
    /// Precision of the transformer linear layers.
    pub precision: Precision,
    /// Seconds to measure each (tower, batch) pair.
    pub seconds: f64,
    /// Tokens per text, counting start and end tokens (padded to the context length like
    /// tokenizer output).
    pub text_tokens: usize,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Towers to run, in order.
    pub towers: Vec<BenchTower>,
    /// Seed of the random weights.
    pub seed: u64,
    /// With int8: also build the fp32 model and compare embeddings over a fixed input set.
    pub check_int8: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            arch: "ViT-B-32".into(),
            batch: vec![1, 16],
            precision: Precision::Fp32,
            seconds: 3.0,
            text_tokens: 12,
            threads: None,
            towers: vec![BenchTower::Image, BenchTower::Text],
            seed: 0,
            check_int8: true,
        }
    }
}

/// One measured (tower, batch) pair.
#[derive(Clone, Debug)]
pub struct BenchResult {
    /// The tower.
    pub tower: BenchTower,
    /// Items per call.
    pub batch: usize,
    /// Items embedded per second.
    pub items_per_s: f64,
}

/// Cosine agreement of int8 with fp32 embeddings on fixed inputs.
#[derive(Clone, Debug)]
pub struct Int8Check {
    /// Inputs per tower.
    pub inputs: usize,
    pub image_cos_min: f32,
    pub image_cos_mean: f32,
    pub text_cos_min: f32,
    pub text_cos_mean: f32,
}

/// Everything a benchmark run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Architecture name.
    pub arch: String,
    /// Precision in use.
    pub precision: Precision,
    /// Worker threads.
    pub threads: usize,
    /// Float kernels in use.
    pub isa: &'static str,
    /// Whether the CPU has AVX512-VNNI (and `GCLIP_ISA` allows it).
    pub vnni: bool,
    /// The int8 kernel `--precision int8` runs on this CPU (vnni, avx2 or portable).
    pub int8_kernel: &'static str,
    /// Seconds to build random weights and the engine model(s).
    pub build_s: f64,
    /// Tokens per text in the text measurements.
    pub text_tokens: usize,
    /// int8 against fp32, when asked for and int8 is in use.
    pub int8_check: Option<Int8Check>,
    /// One entry per (tower, batch), in the order run.
    pub results: Vec<BenchResult>,
    /// Peak resident set (KiB) during inference, when the platform reports it.
    pub peak_rss_kib: Option<u64>,
    /// Whether the peak could be reset after loading (otherwise it includes loading).
    pub peak_rss_reset: bool,
    /// Peak resident set (KiB) after loading.
    pub load_peak_rss_kib: Option<u64>,
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
    // Degenerate sizes give degenerate (but valid) rows rather than a panic.
    let tokens = tokens.clamp(2, context.max(2));
    let (sot, eot) = (
        vocab.saturating_sub(2) as u32,
        vocab.saturating_sub(1) as u32,
    );
    let mut s = seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1;
    (0..n)
        .map(|_| {
            let mut row = vec![sot];
            for _ in 0..tokens - 2 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                row.push(1 + (s % (vocab as u64).saturating_sub(3).max(1)) as u32);
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
    cfg: &ClipConfig,
    w: &TensorMap,
    opts: &BenchOptions,
    p: Precision,
) -> Result<EngineModel, EngineError> {
    EngineModel::from_weights(
        cfg,
        w,
        &EngineOptions {
            precision: p,
            threads: opts.threads,
            max_batch: None,
        },
    )
}

/// Runs the benchmark and returns what it measured (nothing is printed).
pub fn run(opts: &BenchOptions) -> Result<BenchReport, EngineError> {
    let cfg = gclip_checkpoint::arch::by_name(&opts.arch)?;
    if opts.batch.is_empty() || opts.batch.contains(&0) {
        return Err(EngineError::Input("batch sizes must be positive".into()));
    }
    if !(opts.seconds.is_finite() && opts.seconds >= 0.0) {
        return Err(EngineError::Input(format!(
            "seconds must be a non-negative number, got {}",
            opts.seconds
        )));
    }
    let t0 = Instant::now();
    let weights = random_tensors(&cfg, opts.seed)?;
    let model = build(&cfg, &weights, opts, opts.precision)?;
    let fp32 = if model.precision() == Precision::Int8 && opts.check_int8 {
        Some(build(&cfg, &weights, opts, Precision::Fp32)?)
    } else {
        None
    };
    drop(weights);
    let build_s = t0.elapsed().as_secs_f64();
    let load_peak = peak_rss_kib();
    let int8_check = match &fp32 {
        Some(f) => {
            let n = 8;
            let px = fixed_pixels(n, cfg.vision.image_size, 11);
            let texts = fixed_texts(
                n,
                opts.text_tokens,
                cfg.text.context_length,
                cfg.text.vocab_size,
                12,
            );
            let e = model.embed_dim();
            let ci = cosines(
                model.encode_images(&px, n)?.as_slice(),
                f.encode_images(&px, n)?.as_slice(),
                e,
            );
            let ct = cosines(
                model.encode_texts(&texts)?.as_slice(),
                f.encode_texts(&texts)?.as_slice(),
                e,
            );
            let stat = |c: &[f32]| {
                (
                    c.iter().cloned().fold(1.0f32, f32::min),
                    c.iter().sum::<f32>() / c.len().max(1) as f32,
                )
            };
            let (image_cos_min, image_cos_mean) = stat(&ci);
            let (text_cos_min, text_cos_mean) = stat(&ct);
            Some(Int8Check {
                inputs: n,
                image_cos_min,
                image_cos_mean,
                text_cos_min,
                text_cos_mean,
            })
        }
        None => None,
    };
    drop(fp32);
    let peak_rss_reset = reset_peak_rss();
    let mut results = Vec::new();
    let s = cfg.vision.image_size;
    for &tower in &opts.towers {
        for &b in &opts.batch {
            let ips = match tower {
                BenchTower::Image => {
                    let px = fixed_pixels(b, s, b as u64);
                    measure(opts.seconds, b, || model.encode_images(&px, b).map(|_| ()))?
                }
                BenchTower::Text => {
                    let texts = fixed_texts(
                        b,
                        opts.text_tokens,
                        cfg.text.context_length,
                        cfg.text.vocab_size,
                        b as u64,
                    );
                    measure(opts.seconds, b, || model.encode_texts(&texts).map(|_| ()))?
                }
            };
            results.push(BenchResult {
                tower,
                batch: b,
                items_per_s: ips,
            });
        }
    }
    Ok(BenchReport {
        arch: opts.arch.clone(),
        precision: model.precision(),
        threads: model.threads(),
        isa: model.isa().name(),
        vnni: crate::cpu::features().vnni,
        int8_kernel: crate::quant::int8_kernel(model.isa()).name(),
        build_s,
        text_tokens: opts.text_tokens,
        int8_check,
        results,
        peak_rss_kib: peak_rss_kib(),
        peak_rss_reset,
        load_peak_rss_kib: load_peak,
    })
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
