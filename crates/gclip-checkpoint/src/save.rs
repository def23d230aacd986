//! Writing a checkpoint as an open_clip or Hugging Face directory that the reference code
//! loads, in f32, f16 or bf16.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::ClipConfig;
use crate::error::{io_err, CheckpointError, Result};
use crate::keys::{self, HfName};
use crate::load::Layout;
use crate::tensor::{DType, RawTensor, TensorMap};

/// OpenAI CLIP normalisation constants (open_clip's and CLIPImageProcessor's defaults).
const OPENAI_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// How [`save_tensors`] writes a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveOptions {
    /// Directory layout: [`Layout::OpenClip`] or [`Layout::Hf`].
    pub layout: Layout,
    /// Element type of every tensor: f32, f16 or bf16 (rounded to nearest even).
    pub dtype: DType,
}

impl SaveOptions {
    /// f32 tensors in `layout`.
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            dtype: DType::F32,
        }
    }

    /// The same options with another element type.
    pub fn with_dtype(self, dtype: DType) -> Self {
        Self { dtype, ..self }
    }
}

/// Writes canonical `tensors` with `cfg` into directory `dir` (created if needed):
/// - [`Layout::OpenClip`]: `open_clip_config.json` `{model_cfg, preprocess_cfg}` +
///   `open_clip_model.safetensors`;
/// - [`Layout::Hf`]: `config.json` + `model.safetensors` + `preprocessor_config.json`
///   (in_proj split into q/k/v, projections transposed).
///
/// `preprocess` may be an open_clip `preprocess_cfg` or an HF `preprocessor_config.json`
/// (as in [`crate::LoadedTensors::preprocess`]); it is translated to the target layout. Without
/// it the OpenAI mean/std and bicubic shortest-side resize are written. [`Layout::Bare`] is
/// rejected (it has no config to write).
pub fn save_tensors(
    tensors: &TensorMap,
    cfg: &ClipConfig,
    dir: &Path,
    opts: &SaveOptions,
    preprocess: Option<&Value>,
) -> Result<()> {
    keys::check_shapes(tensors.iter().map(|(k, t)| (k.as_str(), t.shape())), cfg)?;
    if !opts.dtype.is_storable() {
        return Err(CheckpointError::InvalidInput(format!(
            "cannot save tensors as {}; choose f32, f16 or bf16",
            opts.dtype
        )));
    }
    let (mean, std) = mean_std(preprocess);
    let convert = |t: &RawTensor| -> Result<RawTensor> {
        // The canonical scalar logit scale is written 0-d, as both libraries create it.
        t.to_dtype(opts.dtype)
    };
    match opts.layout {
        Layout::Bare => Err(CheckpointError::Unsupported(
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
            let mut out = BTreeMap::new();
            for (k, t) in tensors {
                let t = if k == keys::LOGIT_SCALE && t.shape() == [1] {
                    t.clone().reshape(vec![])?
                } else {
                    t.clone()
                };
                out.insert(k.clone(), convert(&t)?);
            }
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            write_json(
                &dir.join("open_clip_config.json"),
                &json!({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}),
            )?;
            write_safetensors(&dir.join("open_clip_model.safetensors"), &out)
        }
        Layout::Hf => {
            let config = cfg.to_hf_json()?;
            let hf = canonical_to_hf(tensors, cfg, &convert)?;
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

/// Canonical tensors renamed to HF `CLIPModel` keys through the key table. Fails for tensors
/// HF CLIP has no place for (layer scale, projection bias).
fn canonical_to_hf(
    tensors: &TensorMap,
    cfg: &ClipConfig,
    convert: &dyn Fn(&RawTensor) -> Result<RawTensor>,
) -> Result<BTreeMap<String, RawTensor>> {
    let mut out = BTreeMap::new();
    for spec in keys::key_table(cfg) {
        let Some(t) = tensors.get(&spec.key) else {
            continue; // check_shapes has already required every key
        };
        match &spec.hf {
            HfName::Same(h) => {
                let t = if t.shape() != spec.shape.as_slice() {
                    t.clone().reshape(spec.shape.clone())?
                } else {
                    t.clone()
                };
                out.insert(h.clone(), convert(&t)?);
            }
            HfName::Transposed(h) => {
                out.insert(h.clone(), convert(&t.transposed()?)?);
            }
            HfName::Qkv(names) => {
                for (part, name) in t.split0(3)?.into_iter().zip(names) {
                    out.insert(name.clone(), convert(&part)?);
                }
            }
            HfName::Absent => {
                return Err(CheckpointError::Unsupported(format!(
                    "tensor `{}` has no Hugging Face CLIP equivalent",
                    spec.key
                )))
            }
        }
    }
    Ok(out)
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
    let text = serde_json::to_string_pretty(v).map_err(|source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(io_err(path))
}

/// One tensor in safetensors `View` form.
struct View<'a>(&'a RawTensor);

impl safetensors::View for View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        match self.0.dtype() {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
            DType::F64 => safetensors::Dtype::F64,
            DType::I64 => safetensors::Dtype::I64,
        }
    }
    fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(self.0.data())
    }
    fn data_len(&self) -> usize {
        self.0.data().len()
    }
}

/// Writes safetensors with `{"format": "pt"}` metadata (transformers insists on it).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, RawTensor>) -> Result<()> {
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let views = tensors.iter().map(|(k, t)| (k.as_str(), View(t)));
    safetensors::serialize_to_file(views, Some(meta), path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(source) => CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        },
        source => CheckpointError::Safetensors {
            path: path.to_path_buf(),
            source,
        },
    })
}
