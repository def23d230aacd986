//! Every colour mode through both reference pipelines: pixels against open_clip's
//! `image_transform` on `Image.open(path)` and transformers' `CLIPImageProcessor`, and
//! image embeddings of the tiny fixture models against each ecosystem's own. Fixtures:
//! `tests/fixtures/reference/generate_modes.py`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use gclip_image::{load_image, DecodeOptions, ImagePipeline, PreprocessConfig, Preprocessor};
use gclip_model::{ClipModel, LoadOptions};
use safetensors::SafeTensors;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference")
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()))
}

fn manifest() -> Value {
    serde_json::from_slice(&read(root().join("modes/manifest.json"))).unwrap()
}

const PIPELINES: [(ImagePipeline, &str); 2] = [
    (ImagePipeline::OpenClip, "open_clip"),
    (ImagePipeline::Transformers, "transformers"),
];

fn preprocessor(pipeline: ImagePipeline, size: usize) -> Preprocessor {
    Preprocessor::new(PreprocessConfig {
        image_size: (size, size),
        pipeline,
        ..PreprocessConfig::default()
    })
}

#[test]
fn every_mode_matches_both_references() {
    let m = manifest();
    let blob = read(root().join("modes/expected.safetensors"));
    let expected = SafeTensors::deserialize(&blob).unwrap();
    let cases = m["cases"].as_array().unwrap();
    assert!(cases.len() >= 15, "only {} mode fixtures", cases.len());
    // (pipeline, mode) -> (values, exact, max diff)
    let mut stats: BTreeMap<(&str, String), (usize, usize, u8)> = BTreeMap::new();
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let file = root()
            .join("modes/files")
            .join(case["file"].as_str().unwrap());
        let img =
            load_image(&file, &DecodeOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let pil_mode = case["pil_mode"].as_str().unwrap();
        assert_eq!(img.mode().name(), pil_mode, "{name}: mode");
        assert_eq!(
            img.dimensions(),
            (
                case["width"].as_u64().unwrap() as u32,
                case["height"].as_u64().unwrap() as u32
            ),
            "{name}: size"
        );
        assert_eq!(
            img.has_transparency(),
            case["has_transparency"].as_bool().unwrap() || matches!(pil_mode, "LA" | "RGBA"),
            "{name}: transparency"
        );
        for size in case["sizes"].as_array().unwrap() {
            let size = size.as_u64().unwrap() as usize;
            for (pipeline, label) in PIPELINES {
                let key = format!("{name}.{size}.{label}");
                let want = expected
                    .tensor(&key)
                    .unwrap_or_else(|_| panic!("{key} missing from expected.safetensors"));
                assert_eq!(want.shape(), [3, size, size], "{key}");
                let got = preprocessor(pipeline, size).preprocess_image_u8(&img);
                assert_eq!(got.len(), want.data().len(), "{key}");
                let (mut exact, mut max) = (0, 0u8);
                for (&a, &b) in got.iter().zip(want.data()) {
                    exact += (a == b) as usize;
                    max = max.max(a.abs_diff(b));
                }
                if max > 0 {
                    println!(
                        "{key}: {} of {} differ, max {max}",
                        got.len() - exact,
                        got.len()
                    );
                }
                let e = stats
                    .entry((label, format!("{pil_mode} ({name})")))
                    .or_default();
                e.0 += got.len();
                e.1 += exact;
                e.2 = e.2.max(max);
                checked += 1;
            }
        }
    }
    println!(
        "{:<14} {:<28} {:>9} {:>9}",
        "pipeline", "mode (file)", "exact %", "max diff"
    );
    let mut worst = 0;
    for ((label, mode), (n, exact, max)) in &stats {
        println!(
            "{label:<14} {mode:<28} {:>8.4}% {max:>9}",
            100.0 * *exact as f64 / *n as f64
        );
        worst = worst.max(*max);
    }
    assert!(checked >= 80, "only {checked} comparisons");
    // Every mode, both pipelines: bit-exact [0, 255] values.
    assert_eq!(worst, 0, "some pixels differ from the references");
}

#[test]
fn other_geometry_matches_both_references() {
    // transformers resizing past its crop, open_clip `longest` padding in the image's mode.
    let m = manifest();
    let blob = read(root().join("modes/expected.safetensors"));
    let expected = SafeTensors::deserialize(&blob).unwrap();
    let extra = m["extra"].as_array().unwrap();
    assert!(extra.len() >= 12);
    for case in extra {
        let key = case["key"].as_str().unwrap();
        let size = case["size"].as_u64().unwrap() as usize;
        let cfg = PreprocessConfig {
            image_size: (size, size),
            pipeline: case["pipeline"].as_str().unwrap().parse().unwrap(),
            resize_shortest_edge: case["resize_shortest_edge"].as_u64().map(|v| v as usize),
            resize_mode: case["resize_mode"].as_str().unwrap().parse().unwrap(),
            fill_color: case["fill_color"].as_u64().unwrap() as u8,
            ..PreprocessConfig::default()
        };
        let file = root()
            .join("modes/files")
            .join(case["file"].as_str().unwrap());
        let img = load_image(&file, &DecodeOptions::default()).unwrap();
        let got = Preprocessor::new(cfg).preprocess_image_u8(&img);
        let want = expected.tensor(key).unwrap();
        assert_eq!(want.shape(), [3, size, size], "{key}");
        let max = got
            .iter()
            .zip(want.data())
            .map(|(&a, &b)| a.abs_diff(b))
            .max()
            .unwrap();
        println!("{key}: max diff {max}");
        assert_eq!(max, 0, "{key}");
    }
}

#[test]
fn transformers_normalisation_is_its_fused_arithmetic() {
    // (x - mean * 255) / (std * 255) in f32, not open_clip's x / 255 - mean, / std.
    let p = preprocessor(ImagePipeline::Transformers, 4);
    let img = gclip_image::RgbImage::from_pixel(4, 4, image_px(200));
    let got = p.preprocess(&img)[0];
    let m = gclip_image::OPENAI_MEAN[0] * 255.0;
    let s = gclip_image::OPENAI_STD[0] * 255.0;
    assert_eq!(got.to_bits(), ((200.0f32 - m) / s).to_bits());
}

fn image_px(v: u8) -> image::Rgb<u8> {
    image::Rgb([v, v, v])
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn embeddings_match_each_ecosystem() {
    let m = manifest();
    let blob = read(root().join("modes/embeddings.safetensors"));
    let expected = SafeTensors::deserialize(&blob).unwrap();
    let cases = m["cases"].as_array().unwrap();
    let mut worst = [1.0f64; 2];
    for (k, (pipeline, label)) in PIPELINES.into_iter().enumerate() {
        let model_dir = root()
            .join("models")
            .join(m[format!("{label}_model")].as_str().unwrap());
        let size = m[format!("{label}_size")].as_u64().unwrap() as usize;
        let model = ClipModel::load(&model_dir, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", model_dir.display()));
        let p = preprocessor(pipeline, size);
        let mut pixels = Vec::new();
        for case in cases {
            let file = root()
                .join("modes/files")
                .join(case["file"].as_str().unwrap());
            pixels.extend(p.preprocess_path(&file).unwrap());
        }
        let n = cases.len();
        let t = Tensor::from_vec(pixels, (n, 3, size, size), &Device::Cpu).unwrap();
        let got: Vec<Vec<f32>> = model
            .encode_images_normalized(&t)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (case, g) in cases.iter().zip(&got) {
            let name = case["name"].as_str().unwrap();
            let want: Vec<f32> = expected
                .tensor(&format!("{name}.{label}"))
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let c = cosine(g, &want);
            println!("{label:<13} {name:<16} 1 - cosine {:.1e}", 1.0 - c);
            worst[k] = worst[k].min(c);
            // Pixels are asserted bit-exact above; what is left is the model's f32
            // arithmetic (measured 1 - cos <= 6e-14), given room for other GEMM kernels.
            assert!(1.0 - c <= 1e-11, "{label} {name}: cosine {c}");
        }
    }
    println!(
        "min cosine: open_clip 1 - {:.1e}, transformers 1 - {:.1e}",
        1.0 - worst[0],
        1.0 - worst[1]
    );
}

#[test]
fn truncated_and_corrupted_mode_files_fail_cleanly() {
    let m = manifest();
    let mut refused = 0;
    for case in m["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let bytes = read(root().join("modes/files").join(file));
        let n = bytes.len();
        let mut variants: Vec<Vec<u8>> = [0, 8, 33, n / 4, n / 2, n - 13]
            .iter()
            .map(|&k| bytes[..k.min(n)].to_vec())
            .collect();
        // Corrupt the middle (palette, tRNS or pixel data, depending on the file).
        for at in [n / 3, n / 2] {
            let mut c = bytes.clone();
            for b in &mut c[at..(at + 40).min(n)] {
                *b ^= 0x5A;
            }
            variants.push(c);
        }
        for (i, v) in variants.iter().enumerate() {
            for (pipeline, label) in PIPELINES {
                // Must return (Ok or Err), never panic.
                let r = preprocessor(pipeline, 32).preprocess_bytes(v);
                if i == 4 && r.is_err() {
                    refused += 1;
                }
                if let Err(e) = &r {
                    assert!(!e.to_string().is_empty(), "{file} {label}");
                }
            }
        }
    }
    // Half a PNG / JPEG / GIF is missing pixel data: refused, not padded.
    assert!(refused >= 30, "only {refused} half files refused");
}
