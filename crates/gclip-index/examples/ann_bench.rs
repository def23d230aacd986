//! The ANN benchmark without the CLI (quicker to rebuild while tuning the graph). Takes the
//! flags of `gclip index bench` (a leading `index bench` is ignored), so
//! `bench/compare_faiss.py --gclip target/release/examples/ann_bench` works as well.
//! Usage: ann_bench --base B.npy --queries Q.npy [--k 10] [--ef 16,32,64] [--m 16]
//!        [--ef-construction 200] [--threads 1] [--build-threads 2]
//!        [--precision float32|float16|int8] [--filter-selectivity 0.01,0.1]

use gclip_index::bench::{run, BenchConfig};
use gclip_index::VectorNumericType;
use std::path::PathBuf;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    let mut base = None;
    let mut queries = None;
    let mut cfg = BenchConfig {
        k: 10,
        efs: vec![16, 32, 64, 128],
        m: 16,
        ef_construction: 200,
        threads: 1,
        build_threads: 2,
        precision: VectorNumericType::Float32,
        filter_selectivity: Vec::new(),
    };
    let list = |s: &str| -> Vec<String> { s.split(',').map(str::to_string).collect() };
    while let Some(a) = args.next() {
        if a == "index" || a == "bench" {
            continue;
        }
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--base" => base = Some(PathBuf::from(v)),
            "--queries" => queries = Some(PathBuf::from(v)),
            "--k" => cfg.k = v.parse()?,
            "--ef" => {
                cfg.efs = list(&v)
                    .iter()
                    .map(|x| x.parse())
                    .collect::<Result<_, _>>()?
            }
            "--m" => cfg.m = v.parse()?,
            "--ef-construction" => cfg.ef_construction = v.parse()?,
            "--threads" => cfg.threads = v.parse()?,
            "--build-threads" => cfg.build_threads = v.parse()?,
            "--precision" => {
                cfg.precision = match v.as_str() {
                    "float32" => VectorNumericType::Float32,
                    "float16" => VectorNumericType::Float16,
                    "int8" => VectorNumericType::Int8,
                    other => return Err(format!("unknown precision {other}").into()),
                }
            }
            "--filter-selectivity" => {
                cfg.filter_selectivity = list(&v)
                    .iter()
                    .filter(|x| !x.is_empty())
                    .map(|x| x.parse())
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let (_, dim, b) = gclip_index::npy::read_f32_2d(&base.ok_or("--base is required")?)?;
    let (_, qdim, q) = gclip_index::npy::read_f32_2d(&queries.ok_or("--queries is required")?)?;
    if dim != qdim {
        return Err(format!("base has dimension {dim}, queries {qdim}").into());
    }
    run(dim, &b, &q, &cfg, &mut |line| println!("{line}"))?;
    Ok(())
}
