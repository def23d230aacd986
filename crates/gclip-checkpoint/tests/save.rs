//! Saving in both layouts and element types, and re-loading what was written.

use gclip_checkpoint::{
    arch, load_tensors, open_tensors, random_tensors, save_tensors, write_safetensors,
    CheckpointError, ClipConfig, DType, Layout, LoadOptions, RawTensor, SaveOptions, TensorMap,
};

fn tiny() -> ClipConfig {
    let mut c = arch::by_name("ViT-B-32").unwrap();
    c.embed_dim = 16;
    c.vision.width = 32;
    c.vision.layers = 2;
    c.vision.heads = 2;
    c.vision.image_size = 32;
    c.vision.patch_size = 16;
    c.text.width = 32;
    c.text.layers = 2;
    c.text.heads = 2;
    c.text.vocab_size = 64;
    c.text.context_length = 8;
    c.text.eos_token_id = 63;
    c.text.bos_token_id = 62;
    c
}

fn save(t: &TensorMap, cfg: &ClipConfig, layout: Layout, dtype: DType) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let opts = SaveOptions::new(layout).with_dtype(dtype);
    save_tensors(t, cfg, dir.path(), &opts, None).unwrap();
    dir
}

#[test]
fn both_layouts_reload_identically() {
    let cfg = tiny();
    let t = random_tensors(&cfg, 3).unwrap();
    for layout in [Layout::OpenClip, Layout::Hf] {
        let dir = save(&t, &cfg, layout, DType::F32);
        let back = load_tensors(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(back.layout, layout);
        if layout == Layout::OpenClip {
            assert_eq!(back.config, cfg, "{layout:?} config");
        } else {
            // HF configs state first-EOS pooling, the same position as argmax here.
            assert_eq!(back.config.text.eos_token_id, 63);
            assert_eq!(back.config.vision, cfg.vision);
        }
        assert_eq!(back.tensors, t, "{layout:?} tensors");
    }
}

#[test]
fn f16_and_bf16_round_trip_within_rounding() {
    let cfg = tiny();
    let t = random_tensors(&cfg, 5).unwrap();
    for (dtype, bits) in [(DType::F16, 11), (DType::BF16, 8)] {
        for layout in [Layout::OpenClip, Layout::Hf] {
            let dir = save(&t, &cfg, layout, dtype);
            let back = load_tensors(dir.path(), &LoadOptions::default()).unwrap();
            let mut worst = 0f32;
            for (k, orig) in &t {
                let b = &back.tensors[k];
                assert_eq!(b.dtype(), dtype, "{k}");
                assert_eq!(b.shape(), orig.shape(), "{k}");
                for (x, y) in orig.to_f32().iter().zip(b.to_f32()) {
                    // Half an ulp of the target type, plus its smallest subnormal step.
                    let tol = x.abs() * 2f32.powi(-bits) + 6e-8;
                    assert!((x - y).abs() <= tol, "{dtype} {layout:?} {k}: {x} -> {y}");
                    worst = worst.max((x - y).abs() / x.abs().max(1e-3));
                }
            }
            eprintln!("{dtype} {layout:?}: worst relative error {worst:.2e}");
            // Saving the loaded f16 tensors as f16 again changes nothing.
            let again = save(&back.tensors, &cfg, layout, dtype);
            let back2 = load_tensors(again.path(), &LoadOptions::default()).unwrap();
            assert_eq!(back2.tensors, back.tensors);
        }
    }
}

#[test]
fn lazy_reads_agree_for_every_layout() {
    let cfg = tiny();
    let t = random_tensors(&cfg, 3).unwrap();
    for layout in [Layout::OpenClip, Layout::Hf] {
        let dir = save(&t, &cfg, layout, DType::F32);
        let src = open_tensors(dir.path(), &LoadOptions::default()).unwrap();
        assert!(src.is_lazy());
        assert_eq!(src.shapes().len(), t.len());
        for (k, want) in &t {
            let (shape, data) = src.get_f32(k).unwrap();
            assert_eq!(shape, want.shape(), "{layout:?} {k}");
            assert_eq!(data, want.to_f32(), "{layout:?} {k}");
        }
        assert!(src.get("no.such.key").is_err());
    }
}

#[test]
fn open_rejects_bad_files_naming_the_key() {
    let cfg = tiny();
    let t = random_tensors(&cfg, 4).unwrap();
    let cases: [(Layout, &str, &str); 2] = [
        (
            Layout::OpenClip,
            "open_clip_model.safetensors",
            "visual.proj",
        ),
        (
            Layout::Hf,
            "model.safetensors",
            "text_model.encoder.layers.1.self_attn.k_proj.weight",
        ),
    ];
    for (layout, file, key) in cases {
        let dir = save(&t, &cfg, layout, DType::F32);
        let path = dir.path().join(file);
        let mut m = gclip_checkpoint::read_file_tensors(&path).unwrap();
        if layout == Layout::OpenClip {
            let z =
                RawTensor::from_f32(vec![cfg.vision.width, 3], &vec![0.0; cfg.vision.width * 3]);
            m.insert(key.to_string(), z.unwrap());
        } else {
            m.remove(key);
        }
        write_safetensors(&path, &m).unwrap();
        let err = open_tensors(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
        let kind_ok = match layout {
            Layout::OpenClip => matches!(err, CheckpointError::ShapeMismatch { .. }),
            _ => matches!(err, CheckpointError::MissingTensor { .. }),
        };
        assert!(kind_ok, "{err:?}");
    }
}

#[test]
fn save_rejects_what_the_layout_cannot_hold() {
    let cfg = tiny();
    let mut t = random_tensors(&cfg, 1).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bad = SaveOptions::new(Layout::OpenClip).with_dtype(DType::I64);
    let e = save_tensors(&t, &cfg, tmp.path(), &bad, None).unwrap_err();
    assert!(e.to_string().contains("i64"), "{e}");
    let bare = SaveOptions::new(Layout::Bare);
    assert!(save_tensors(&t, &cfg, tmp.path(), &bare, None).is_err());
    t.remove("ln_final.bias");
    let e = save_tensors(&t, &cfg, tmp.path(), &SaveOptions::new(Layout::Hf), None).unwrap_err();
    assert!(matches!(e, CheckpointError::MissingTensor { ref key, .. } if key == "ln_final.bias"));
}
