//! Training steps per second of the fast CPU step (CLIP loss, full backward, clipped AdamW),
//! to compare with open_clip on PyTorch and with candle: `python bench/compare_train.py`
//! runs them side by side.
//!
//! `cargo bench -p gclip-fasttrain --bench fast_step [-- BATCH STEPS MODEL]` with MODEL
//! `tiny` (the reference fixture's model, default) or `experiment` (the GCL-vs-CLIP
//! experiment's architecture, random weights). Threads: `RAYON_NUM_THREADS` (default all).

use std::path::PathBuf;
use std::time::Instant;

use gclip_checkpoint::{ClipConfig, LoadOptions, TensorMap};
use gclip_fasttrain::optim::{clamp_logit_scale, clip_grad_norm, AdamW, AdamWConfig, Segment};
use gclip_fasttrain::{FastClip, StepInputs, TowerInput};

/// The experiment's architecture (crates/gclip/src/experiment: DEFAULT_ARCH).
const EXPERIMENT: &str = r#"{"embed_dim": 64,
  "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "head_width": 32, "layers": 4},
  "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3}}"#;

fn model(name: &str) -> Result<(ClipConfig, TensorMap), Box<dyn std::error::Error>> {
    match name {
        "tiny" => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/reference/train/tiny");
            let lt = gclip_checkpoint::load_tensors(&dir, &LoadOptions::default())?;
            Ok((lt.config, lt.tensors))
        }
        "experiment" => {
            let cfg = ClipConfig::from_open_clip_json(&serde_json::from_str(EXPERIMENT)?)?;
            let t = gclip_checkpoint::random_tensors(&cfg, 0)?;
            Ok((cfg, t))
        }
        other => Err(format!("unknown model `{other}` (tiny or experiment)").into()),
    }
}

fn no_decay(name: &str, rank: usize) -> bool {
    rank < 2
        || name.contains("ln")
        || name.contains("bias")
        || name.contains("logit_scale")
        || name.contains("embedding")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let batch: usize = args.first().map_or(Ok(32), |s| s.parse())?;
    let steps: usize = args.get(1).map_or(Ok(20), |s| s.parse())?;
    let name = args.get(2).map_or("tiny", |s| s.as_str());
    let (cfg, tensors) = model(name)?;
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok());
    let mut m = FastClip::new(&cfg, &tensors, threads)?;
    let segments = m
        .params
        .entries()
        .map(|(n, s, r)| Segment {
            range: r,
            decay: !no_decay(n, s.len()),
        })
        .collect();
    let mut opt = AdamW::new(
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.2,
        },
        m.params.len(),
        segments,
    );
    let s = cfg.vision.image_size;
    let ctx = cfg.text.context_length;
    let vocab = cfg.text.vocab_size as u32;
    // Deterministic pseudo-random pixels; full-length texts (EOT last) so no truncation
    // shortcut applies, as in the PyTorch and candle benchmarks.
    let images: Vec<f32> = (0..batch * 3 * s * s)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    let ids: Vec<Vec<u32>> = (0..batch)
        .map(|i| {
            (0..ctx)
                .map(|j| {
                    if j == ctx - 1 {
                        vocab - 1
                    } else {
                        1 + ((i * ctx + j) as u32 * 7919) % (vocab - 2)
                    }
                })
                .collect()
        })
        .collect();
    let ones = vec![1.0f32; batch];
    let mut step = |m: &mut FastClip| -> Result<f32, Box<dyn std::error::Error>> {
        let loss = m.step(&StepInputs {
            n: batch,
            left: vec![TowerInput::Image(&images)],
            left_alpha: &ones,
            right: vec![TowerInput::Text(&ids)],
            right_alpha: &ones,
            gcl: None,
            lock_image: false,
            lock_text: false,
        })?;
        clip_grad_norm(&mut m.grads, 1.0);
        let FastClip { params, grads, .. } = m;
        opt.update(&mut params.data, grads, 1e-4)?;
        clamp_logit_scale(m.logit_scale_mut());
        m.zero_grads();
        Ok(loss)
    };
    for _ in 0..3 {
        step(&mut m)?;
    }
    let t = Instant::now();
    let mut last = 0.0;
    for _ in 0..steps {
        last = step(&mut m)?;
    }
    let sps = steps as f64 / t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"model": name, "batch": batch, "steps": steps, "steps_per_s": sps,
                           "pairs_per_s": sps * batch as f64, "last_loss": last,
                           "isa": gclip_engine::cpu::features().isa.name(),
                           "peak_rss_mib": gclip_engine::bench::peak_rss_kib().map(|k| k / 1024)})
    );
    Ok(())
}
