//! `--precision int8` without AVX2 is a clear error, never a silent fp32
//! run. Its own test binary: `GCLIP_ISA` is read once per process.

use std::path::Path;

use gclip_checkpoint::{load_tensors, LoadOptions};
use gclip_engine::{EngineError, EngineModel, EngineOptions, Precision};

#[test]
fn int8_on_scalar_isa_is_unsupported() {
    // Set before anything reads the CPU features (the only test here).
    std::env::set_var("GCLIP_ISA", "scalar");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference/models/openclip_gelu");
    let lw = load_tensors(&dir, &LoadOptions::default()).unwrap();
    let opts = EngineOptions {
        precision: Precision::Int8,
        threads: Some(1),
        ..Default::default()
    };
    match EngineModel::from_weights(&lw.config, &lw.tensors, &opts) {
        Err(EngineError::Unsupported(msg)) => {
            assert!(msg.contains("AVX2") && msg.contains("scalar"), "{msg}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(m) => panic!("built an int8 model at precision {}", m.precision()),
    }
    // fp32 still works on the same ISA.
    let fp32 = EngineModel::from_weights(
        &lw.config,
        &lw.tensors,
        &EngineOptions {
            threads: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fp32.isa(), gclip_engine::cpu::Isa::Scalar);
}
