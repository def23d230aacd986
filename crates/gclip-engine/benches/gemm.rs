//! GEMM throughput at ViT shapes, in GFLOPS.
//!
//! `cargo bench -p gclip-engine --bench gemm [-- THREADS]`; compare with
//! `python crates/gclip-engine/benches/gemm_ref.py` (numpy/OpenBLAS and
//! torch on the same shapes), or run `benches/gemm_side_by_side.sh` for both
//! in one go.

use std::time::{Duration, Instant};

use gclip_engine::cpu;
use gclip_engine::gemm::{gemm, Epilogue, PackedMatrix};
use gclip_engine::ops::{attention, attention_loops, AttnShape};
use gclip_engine::quant::{gemm_i8, PackedI8};

/// Process CPU seconds (all threads).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best of several 0.3 s windows, by wall clock and by process CPU time.
/// The machine is shared: the best wall window is the closest to the real
/// speed, and with one thread GFLOPS per CPU-second measures the kernel
/// itself, whatever else runs.
fn best_rate(flops: f64, mut run: impl FnMut()) -> (f64, f64) {
    run();
    let (mut best, mut best_cpu) = (0.0f64, 0.0f64);
    for _ in 0..5 {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let mut iters = 0u32;
        while t0.elapsed() < Duration::from_millis(300) {
            run();
            iters += 1;
        }
        let work = flops * iters as f64 / 1e9;
        best = best.max(work / t0.elapsed().as_secs_f64());
        best_cpu = best_cpu.max(work / (cpu_seconds() - c0));
    }
    (best, best_cpu)
}

fn main() {
    let threads: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let isa = cpu::features().isa;
    println!("isa {} threads {threads}", isa.name());
    let shapes = [
        (800, 768, 768),
        (800, 768, 2304),
        (800, 768, 3072),
        (800, 3072, 768),
        (50, 768, 768),
        (50, 768, 3072),
        (192, 512, 2048),
        (12, 512, 2048),
    ];
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b = PackedMatrix::from_nk(&w, n, k).expect("pack");
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let f32_rate = best_rate(flops, || {
            gemm(
                isa,
                Some(&pool),
                m,
                &a,
                k,
                &b,
                &mut c,
                n,
                Epilogue::default(),
            )
            .expect("gemm")
        });
        let q = PackedI8::from_nk(&w, n, k).expect("pack");
        let i8_rate = best_rate(flops, || {
            gemm_i8(
                isa,
                Some(&pool),
                m,
                &a,
                k,
                &q,
                &mut c,
                n,
                Epilogue::default(),
            )
            .expect("gemm")
        });
        println!(
            "gemm M={m:4} K={k:4} N={n:4}: f32 {:7.1} GFLOPS ({:6.1} per CPU-s)   int8 {:7.1} GOPS ({:6.1} per CPU-s)",
            f32_rate.0, f32_rate.1, i8_rate.0, i8_rate.1
        );
    }
    // Attention: per-head GEMMs vs the per-query vector loops, in
    // (sequence, head) pairs per second, at ViT-B/32 image and text shapes.
    for (batch, seq, heads, causal) in [(16, 50, 12, false), (1, 50, 12, false), (16, 77, 8, true)]
    {
        let s = AttnShape {
            batch,
            seq,
            heads,
            head_dim: 64,
            causal,
        };
        let w = heads * 64;
        let qkv: Vec<f32> = (0..batch * seq * 3 * w)
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        let mut out = vec![0.0f32; batch * seq * w];
        let pairs = (batch * heads) as f64;
        let gemm_rate = best_rate(pairs, || {
            attention(isa, Some(&pool), &qkv, &mut out, s).expect("attention shape")
        });
        let loop_rate = best_rate(pairs, || {
            attention_loops(isa, Some(&pool), &qkv, &mut out, s).expect("attention shape")
        });
        println!(
            "attention batch={batch:2} seq={seq} heads={heads} causal={causal}: gemm {:8.0} heads/s, loops {:8.0} heads/s",
            gemm_rate.0 * 1e9,
            loop_rate.0 * 1e9
        );
    }
}
