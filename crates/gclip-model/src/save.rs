//! Writing a model as an open_clip or Hugging Face directory that the reference code loads.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use crate::config::ClipConfig;
use crate::error::{io_err, ModelError, Result};
use crate::load::Layout;
use crate::weights::{canonical_to_hf, Weights};

/// OpenAI CLIP normalisation constants (open_clip's and CLIPImageProcessor's defaults).
const OPENAI_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Writes `weights` with `cfg` into directory `dir` (created if needed):
/// - [`Layout::OpenClip`]: `open_clip_config.json` `{model_cfg, preprocess_cfg}` +
///   `open_clip_model.safetensors`;
/// - [`Layout::Hf`]: `config.json` + `model.safetensors` + `preprocessor_config.json`.
///
/// `preprocess` may be an open_clip `preprocess_cfg` or an HF `preprocessor_config.json`
/// (as in [`crate::LoadedWeights::preprocess`]); it is translated to the target layout. Without
/// it the OpenAI mean/std and bicubic shortest-side resize are written. [`Layout::Bare`] is
/// rejected (it has no config to write).
pub fn save(
    weights: &Weights,
    cfg: &ClipConfig,
    dir: &Path,
    layout: Layout,
    preprocess: Option<&Value>,
) -> Result<()> {
    weights.check(cfg)?;
    let (mean, std) = mean_std(preprocess);
    match layout {
        Layout::Bare => Err(ModelError::Unsupported(
            "saving in the bare layout; choose the open_clip or Hugging Face layout".into(),
        )),
        Layout::OpenClip => {
            let model_cfg = cfg.to_open_clip_json()?;
            let preprocess_cfg = match preprocess {
                Some(p) if p.get("mean").is_some() => p.clone(),
                _ => json!({
                    "mean": mean,
                    "std": std,
                    "interpolation": "bicubic",
                    "resize_mode": "shortest",
                }),
            };
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            write_json(
                &dir.join("open_clip_config.json"),
                &json!({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}),
            )?;
            write_safetensors(&dir.join("open_clip_model.safetensors"), weights.as_map())
        }
        Layout::Hf => {
            let config = cfg.to_hf_json()?;
            let hf = canonical_to_hf(weights)?;
            let s = cfg.vision.image_size;
            let pre = match preprocess {
                Some(p) if p.get("image_mean").is_some() => p.clone(),
                _ => json!({
                    "image_processor_type": "CLIPImageProcessor",
                    "do_resize": true,
                    "size": {"shortest_edge": s},
                    "resample": 3,
                    "do_center_crop": true,
                    "crop_size": {"height": s, "width": s},
                    "do_rescale": true,
                    "rescale_factor": 1.0 / 255.0,
                    "do_normalize": true,
                    "image_mean": mean,
                    "image_std": std,
                    "do_convert_rgb": true,
                }),
            };
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            write_json(&dir.join("config.json"), &config)?;
            write_json(&dir.join("preprocessor_config.json"), &pre)?;
            write_safetensors(&dir.join("model.safetensors"), &hf)
        }
    }
}

/// Mean/std from either preprocess form, else the OpenAI constants.
fn mean_std(pre: Option<&Value>) -> (Vec<f64>, Vec<f64>) {
    let triple = |v: Option<&Value>| -> Option<Vec<f64>> {
        let a: Vec<f64> = v?.as_array()?.iter().filter_map(Value::as_f64).collect();
        (a.len() == 3).then_some(a)
    };
    let p = pre;
    let mean = triple(p.and_then(|p| p.get("mean").or_else(|| p.get("image_mean"))));
    let std = triple(p.and_then(|p| p.get("std").or_else(|| p.get("image_std"))));
    (
        mean.unwrap_or_else(|| OPENAI_MEAN.to_vec()),
        std.unwrap_or_else(|| OPENAI_STD.to_vec()),
    )
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(io_err(path))
}

/// One f32 tensor in safetensors `View` form.
struct F32View {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &F32View {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes f32 safetensors with `{"format": "pt"}` metadata (transformers insists on it).
pub(crate) fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for (k, t) in tensors {
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let data = t.flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        views.push((
            k.clone(),
            F32View {
                shape: t.dims().to_vec(),
                bytes,
            },
        ));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let refs = views.iter().map(|(k, v)| (k.as_str(), v));
    safetensors::serialize_to_file(refs, Some(meta), path).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}
