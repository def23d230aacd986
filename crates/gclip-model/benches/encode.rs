//! Encoder throughput of a random-weight model, side by side with open_clip when the
//! reference venv is present.
//!
//! `cargo bench -p gclip-model --bench encode [-- ARCH]` (default ViT-B-32). Set
//! `GCLIP_REF_PYTHON=/path/to/python` to choose the reference interpreter
//! (default /work/refvenv/bin/python; skipped if absent).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use gclip_model::{arch, ClipModel, Weights};

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm-up
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "ViT-B-32".into());
    let cfg = arch::by_name(&name)?;
    let model = ClipModel::from_weights(cfg.clone(), &Weights::random(&cfg, 0)?, &Device::Cpu)?;
    let s = cfg.vision.image_size;
    let ctx = cfg.text.context_length;
    let eot = cfg.text.vocab_size as u32 - 1;
    println!("gclip-model (candle, f32, CPU) {name}: items/s");
    for b in [1usize, 8] {
        let px = Tensor::randn(0f32, 1.0, (b, 3, s, s), &Device::Cpu)?;
        let dt = time(2, || {
            model.encode_images(&px).expect("encode");
        });
        println!("  image  batch {b:2}: {:8.2}", b as f64 / dt);
    }
    for (b, len) in [(1usize, ctx), (16, ctx), (16, 12)] {
        // Ids with EOT at `len - 1`: full-context rows vs short captions.
        let mut ids = vec![0u32; b * ctx];
        for r in 0..b {
            ids[r * ctx] = eot - 1;
            for c in 1..len - 1 {
                ids[r * ctx + c] = 100 + c as u32;
            }
            ids[r * ctx + len - 1] = eot;
        }
        let ids = Tensor::from_vec(ids, (b, ctx), &Device::Cpu)?.to_dtype(DType::U32)?;
        let dt = time(2, || {
            model.encode_texts(&ids).expect("encode");
        });
        println!(
            "  text   batch {b:2}, EOT at {len:2}: {:8.2}",
            b as f64 / dt
        );
    }

    let py =
        std::env::var("GCLIP_REF_PYTHON").unwrap_or_else(|_| "/work/refvenv/bin/python".into());
    if !std::path::Path::new(&py).exists() {
        println!("(reference python {py} not found; skipping open_clip)");
        return Ok(());
    }
    let script = format!(
        r#"
import time, torch, open_clip
torch.set_num_threads({threads})
m = open_clip.create_model("{name}", pretrained=None).eval()
s, ctx, eot = {s}, {ctx}, {eot}
def t(f, reps=2):
    f(); t0 = time.perf_counter()
    for _ in range(reps): f()
    return (time.perf_counter() - t0) / reps
print("open_clip (torch, f32, CPU) {name}: items/s")
with torch.no_grad():
    for b in (1, 8):
        x = torch.randn(b, 3, s, s)
        print(f"  image  batch {{b:2}}: {{b / t(lambda: m.encode_image(x)):8.2f}}")
    for b, n in ((1, ctx), (16, ctx), (16, 12)):
        ids = torch.zeros(b, ctx, dtype=torch.long)
        ids[:, 0] = eot - 1; ids[:, 1:n-1] = 100; ids[:, n-1] = eot
        print(f"  text   batch {{b:2}}, EOT at {{n:2}}: {{b / t(lambda: m.encode_text(ids)):8.2f}}")
"#,
        threads = std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let status = std::process::Command::new(&py)
        .arg("-c")
        .arg(script)
        .status()?;
    if !status.success() {
        println!("(reference run failed: {status})");
    }
    Ok(())
}
