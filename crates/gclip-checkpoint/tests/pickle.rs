//! The PyTorch zip-pickle reader on committed fixtures, compared tensor by tensor with
//! safetensors twins written by `tests/fixtures/reference/generate_pickles.py`, and on
//! damaged archives (errors, never panics).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use gclip_checkpoint::{
    load_tensors, open_tensors, read_file_tensors, CheckpointError, DType, LoadOptions,
    PickleError, RawTensor, TensorMap,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference")
}

fn read(path: &Path) -> TensorMap {
    read_file_tensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Same keys, and for every key the same shape, dtype and bytes.
fn assert_same(what: &str, got: &TensorMap, want: &TensorMap) {
    let gk: Vec<&String> = got.keys().collect();
    let wk: Vec<&String> = want.keys().collect();
    assert_eq!(gk, wk, "{what}: keys");
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g.shape(), w.shape(), "{what} `{k}`: shape");
        assert_eq!(g.dtype(), w.dtype(), "{what} `{k}`: dtype");
        assert!(g.data() == w.data(), "{what} `{k}`: values differ");
    }
}

#[test]
fn views_checkpoint_matches_its_twin() {
    let dir = fixtures().join("pickles");
    let got = read(&dir.join("views.pt"));
    let want = read(&dir.join("views.safetensors"));
    assert_same("views.pt", &got, &want);
    // The cases the fixture is made of, so a regenerated fixture cannot drop one silently.
    assert_eq!(got["f16"].dtype(), DType::F16);
    assert_eq!(got["bf16"].dtype(), DType::BF16);
    assert_eq!(got["f64"].dtype(), DType::F64);
    assert_eq!(got["i64"].dtype(), DType::I64);
    assert_eq!(got["transposed"].shape(), &[5, 6]);
    assert_eq!(got["sliced"].shape(), &[3, 3]);
    assert_eq!(got["scalar"].shape(), &[] as &[usize]);
    assert_eq!(got["scalar"].to_f32(), vec![2.5]);
    assert_eq!(got["empty"].shape(), &[0, 3]);
    assert_eq!(
        got["i64"].to_f32(),
        (0..10).map(|x| x as f32).collect::<Vec<_>>()
    );
}

#[test]
fn committed_bin_fixtures_match_their_twins() {
    let f = fixtures();
    for (bin, twin) in [
        (
            "models/hf_gelu/pytorch_model.bin",
            "pickles/hf_gelu.safetensors",
        ),
        (
            "models/openclip_ckpt/open_clip_pytorch_model.bin",
            "pickles/openclip_ckpt.safetensors",
        ),
    ] {
        let got = read(&f.join(bin));
        assert!(got.len() > 40, "{bin}: only {} tensors", got.len());
        assert_same(bin, &got, &read(&f.join(twin)));
    }
}

/// Through the loader: canonical names, `module.` stripped, HF q/k/v concatenated.
#[test]
fn bin_checkpoints_load_to_canonical_tensors() {
    let f = fixtures();
    let twin = read(&f.join("pickles/openclip_ckpt.safetensors"));
    let lt = load_tensors(&f.join("models/openclip_ckpt"), &LoadOptions::default()).unwrap();
    assert_eq!(lt.tensors.len(), twin.len());
    for (k, t) in &lt.tensors {
        let w = &twin[&format!("module.{k}")];
        assert!(t.data() == w.data() && t.shape() == w.shape(), "`{k}`");
    }

    let twin = read(&f.join("pickles/hf_gelu.safetensors"));
    let src = open_tensors(&f.join("models/hf_gelu"), &LoadOptions::default()).unwrap();
    let qkv = src.get("text_model_dummy").unwrap_err();
    assert!(matches!(qkv, CheckpointError::MissingTensor { .. }));
    let cat = src
        .get("transformer.resblocks.1.attn.in_proj_weight")
        .unwrap();
    let parts: Vec<RawTensor> = ["q", "k", "v"]
        .iter()
        .map(|p| twin[&format!("text_model.encoder.layers.1.self_attn.{p}_proj.weight")].clone())
        .collect();
    assert_eq!(cat, RawTensor::cat0(&parts).unwrap());
    let proj = src.get("visual.proj").unwrap();
    assert_eq!(proj, twin["visual_projection.weight"].transposed().unwrap());
    // get_f32 agrees with get for every tensor.
    for (k, shape) in src.shapes() {
        let (s, v) = src.get_f32(&k).unwrap();
        assert_eq!(s, shape);
        assert_eq!(v, src.get(&k).unwrap().to_f32(), "`{k}`");
    }
}

/// The members of a zip archive, in order.
fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().unwrap().to_string(), b)
        })
        .collect()
}

fn write_zip(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in members {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn truncated_pickle_is_an_error_naming_the_file() {
    let src = fixtures().join("pickles/views.pt");
    let m = members(&src);
    let pkl = m.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cut.pt");
    let len = m[pkl].1.len();
    for cut in (0..len).step_by(7).chain([len - 1]) {
        let mut mm = m.clone();
        mm[pkl].1.truncate(cut);
        write_zip(&path, &mm);
        let err = read_file_tensors(&path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Pickle { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.to_string().contains("cut.pt"), "{err}");
    }
    // A cut right after PROTO is reported as truncation.
    let mut mm = m.clone();
    mm[pkl].1.truncate(2);
    write_zip(&path, &mm);
    match read_file_tensors(&path).unwrap_err() {
        CheckpointError::Pickle {
            source: PickleError::Truncated { .. },
            ..
        } => {}
        other => panic!("{other}"),
    }
}

#[test]
fn corrupt_archives_are_errors_not_panics() {
    let src = fixtures().join("pickles/views.pt");
    let bytes = std::fs::read(&src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.pt");
    // Truncated files: the zip directory is at the end, so every cut loses it.
    for cut in (0..bytes.len()).step_by(bytes.len() / 23) {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(read_file_tensors(&path).is_err(), "cut at {cut}");
    }
    // Flipped bytes anywhere in the pickle: an error or a (wrong) result, never a panic.
    let m = members(&src);
    let pkl = m.iter().position(|(n, _)| n.ends_with("data.pkl")).unwrap();
    for i in 0..m[pkl].1.len() {
        let mut mm = m.clone();
        mm[pkl].1[i] ^= 0x5a;
        write_zip(&path, &mm);
        let _ = read_file_tensors(&path);
    }
    // A storage member that is missing or too short names the tensor.
    let mut mm = m.clone();
    let data0 = mm.iter().position(|(n, _)| n.ends_with("/data/0")).unwrap();
    mm.remove(data0);
    write_zip(&path, &mm);
    let msg = read_file_tensors(&path).unwrap_err().to_string();
    assert!(msg.contains("missing") && msg.contains("bad.pt"), "{msg}");
    let mut mm = m.clone();
    mm[data0].1.truncate(4);
    write_zip(&path, &mm);
    let msg = read_file_tensors(&path).unwrap_err().to_string();
    assert!(msg.contains("data/0") && msg.contains("bytes"), "{msg}");
    // No data.pkl at all.
    let mm: Vec<_> = m
        .iter()
        .filter(|(n, _)| !n.ends_with("data.pkl"))
        .cloned()
        .collect();
    write_zip(&path, &mm);
    let msg = read_file_tensors(&path).unwrap_err().to_string();
    assert!(msg.contains("data.pkl"), "{msg}");
}
