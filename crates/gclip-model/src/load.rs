//! Checkpoint discovery and loading: HF `CLIPModel` dirs, open_clip dirs, bare files.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arch;
use crate::config::ClipConfig;
use crate::error::{io_err, ModelError, Result};
use crate::weights::{check_against, hf_to_canonical, is_hf_naming, is_ignorable_key, Weights};

/// Which on-disk layout a checkpoint came in (or should be written in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Hugging Face `CLIPModel` directory (`config.json` + `model.safetensors`).
    Hf,
    /// open_clip directory (`open_clip_config.json` + `open_clip_model.safetensors`).
    OpenClip,
    /// A single weight file whose config came from an architecture name.
    Bare,
}

/// Options for [`load_weights`] / [`crate::ClipModel::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Built-in open_clip architecture name (see [`crate::arch::names`]); required for a bare
    /// weight file, and overrides a config found beside the weights when set.
    pub arch: Option<String>,
    /// Explicit config; takes precedence over `arch` and any config file.
    pub config: Option<ClipConfig>,
}

impl LoadOptions {
    /// Options naming an architecture.
    pub fn with_arch(arch: impl Into<String>) -> Self {
        Self {
            arch: Some(arch.into()),
            config: None,
        }
    }
}

/// Result of [`load_weights`]: canonical weights plus where they came from.
#[derive(Debug, Clone)]
pub struct LoadedWeights {
    /// Model config (from the file beside the weights, the arch name, or the options).
    pub config: ClipConfig,
    /// Canonical (open_clip naming), shape-checked f32 CPU tensors.
    pub weights: Weights,
    /// The layout detected.
    pub layout: Layout,
    /// The model directory (for tokenizer / preprocessor files), if there is one.
    pub dir: Option<PathBuf>,
    /// Raw preprocessing config: open_clip `preprocess_cfg` or HF `preprocessor_config.json`.
    pub preprocess: Option<Value>,
}

const OC_CONFIG: &str = "open_clip_config.json";
const OC_WEIGHTS: [&str; 2] = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];
const HF_CONFIG: &str = "config.json";
const HF_WEIGHTS: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
const HF_INDEX: &str = "model.safetensors.index.json";
const HF_PREPROCESS: &str = "preprocessor_config.json";

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn unrecognised(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::UnrecognisedPath {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Config from the options, if they specify one.
fn config_from_opts(opts: &LoadOptions) -> Result<Option<ClipConfig>> {
    if let Some(c) = &opts.config {
        c.validate()?;
        return Ok(Some(c.clone()));
    }
    match &opts.arch {
        Some(a) => Ok(Some(arch::by_name(a)?)),
        None => Ok(None),
    }
}

/// Loads canonical weights and config from `path`, detecting the layout:
/// - a directory with `open_clip_config.json` and `open_clip_model.safetensors` /
///   `open_clip_pytorch_model.bin` (preferred when both layouts are present);
/// - a directory with HF `config.json` and `model.safetensors` (or a sharded
///   `model.safetensors.index.json`, or `pytorch_model.bin`);
/// - a single `.safetensors` or PyTorch zip pickle (`.pt`/`.bin`/`.pth`) holding a state dict or
///   a training checkpoint `{state_dict: ...}`, keys with or without `module.`, in open_clip
///   or HF naming. Its config comes from `opts`, else from a config file beside it.
///
/// This materialises every tensor; to fetch them one at a time from memory-mapped
/// safetensors (much lower peak memory), see [`crate::open_tensors`].
pub fn load_weights(path: &Path, opts: &LoadOptions) -> Result<LoadedWeights> {
    let r = resolve(path, opts)?;
    let raw = read_tensor_files(&r.files)?;
    let weights = canonicalise(raw, &r.config)?;
    Ok(LoadedWeights {
        config: r.config,
        weights,
        layout: r.layout,
        dir: r.dir,
        preprocess: r.preprocess,
    })
}

/// A checkpoint located on disk: everything but the tensors.
pub(crate) struct Resolved {
    pub(crate) config: ClipConfig,
    pub(crate) layout: Layout,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) preprocess: Option<Value>,
    /// Weight files (several for a sharded HF checkpoint).
    pub(crate) files: Vec<PathBuf>,
}

/// Detects the layout of `path` and reads its config (see [`load_weights`]).
pub(crate) fn resolve(path: &Path, opts: &LoadOptions) -> Result<Resolved> {
    if path.is_dir() {
        let oc_cfg = path.join(OC_CONFIG);
        let oc_file = OC_WEIGHTS
            .iter()
            .map(|f| path.join(f))
            .find(|p| p.is_file());
        if let (true, Some(file)) = (oc_cfg.is_file(), oc_file) {
            return resolve_open_clip(path, &oc_cfg, &file, opts);
        }
        let hf_cfg = path.join(HF_CONFIG);
        if hf_cfg.is_file() {
            let files = hf_weight_files(path)?;
            if files.is_empty() {
                return Err(unrecognised(
                    path,
                    format!("has config.json but none of {HF_WEIGHTS:?} / {HF_INDEX}"),
                ));
            }
            return resolve_hf(path, &hf_cfg, files, opts);
        }
        if oc_cfg.is_file() {
            return Err(unrecognised(
                path,
                format!("has {OC_CONFIG} but none of {OC_WEIGHTS:?}"),
            ));
        }
        return Err(unrecognised(
            path,
            format!("directory has neither {OC_CONFIG} (open_clip) nor {HF_CONFIG} (Hugging Face)"),
        ));
    }
    if !path.is_file() {
        return Err(unrecognised(path, "no such file or directory"));
    }
    // A weight file inside a model directory uses that directory's config unless told otherwise.
    let parent = path.parent().map(Path::to_path_buf);
    if opts.arch.is_none() && opts.config.is_none() {
        if let Some(dir) = &parent {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if OC_WEIGHTS.contains(&name) && dir.join(OC_CONFIG).is_file() {
                return resolve_open_clip(dir, &dir.join(OC_CONFIG), path, opts);
            }
            if HF_WEIGHTS.contains(&name) && dir.join(HF_CONFIG).is_file() {
                return resolve_hf(dir, &dir.join(HF_CONFIG), vec![path.to_path_buf()], opts);
            }
        }
    }
    let Some(config) = config_from_opts(opts)? else {
        return Err(unrecognised(
            path,
            format!(
                "a bare weight file needs an architecture name (arch); known: {}",
                arch::names().join(", ")
            ),
        ));
    };
    Ok(Resolved {
        config,
        layout: Layout::Bare,
        dir: parent,
        preprocess: None,
        files: vec![path.to_path_buf()],
    })
}

fn resolve_open_clip(
    dir: &Path,
    cfg_path: &Path,
    file: &Path,
    opts: &LoadOptions,
) -> Result<Resolved> {
    let cfg_json = read_json(cfg_path)?;
    let config = match config_from_opts(opts)? {
        Some(c) => c,
        None => ClipConfig::from_open_clip_json(&cfg_json)?,
    };
    let preprocess = cfg_json
        .get("preprocess_cfg")
        .filter(|v| !v.is_null())
        .cloned();
    Ok(Resolved {
        config,
        layout: Layout::OpenClip,
        dir: Some(dir.to_path_buf()),
        preprocess,
        files: vec![file.to_path_buf()],
    })
}

fn resolve_hf(
    dir: &Path,
    cfg_path: &Path,
    files: Vec<PathBuf>,
    opts: &LoadOptions,
) -> Result<Resolved> {
    let config = match config_from_opts(opts)? {
        Some(c) => c,
        None => ClipConfig::from_hf_json(&read_json(cfg_path)?)?,
    };
    let pre = dir.join(HF_PREPROCESS);
    let preprocess = if pre.is_file() {
        Some(read_json(&pre)?)
    } else {
        None
    };
    Ok(Resolved {
        config,
        layout: Layout::Hf,
        dir: Some(dir.to_path_buf()),
        preprocess,
        files,
    })
}

fn hf_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(HF_WEIGHTS[0]);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(HF_INDEX);
    if index.is_file() {
        let v = read_json(&index)?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ModelError::InvalidConfig(format!("{}: no `weight_map` object", index.display()))
            })?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(Value::as_str)
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let bin = dir.join(HF_WEIGHTS[1]);
    Ok(if bin.is_file() { vec![bin] } else { vec![] })
}

/// Strips DDP / compile prefixes, drops buffers, maps HF naming, converts to f32 CPU and
/// shape-checks against `config`.
pub(crate) fn canonicalise(raw: Vec<(String, Tensor)>, config: &ClipConfig) -> Result<Weights> {
    let mut map = BTreeMap::new();
    for (k, t) in raw {
        let k = k.strip_prefix("module.").unwrap_or(&k).to_string();
        if is_ignorable_key(&k) {
            continue;
        }
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        map.insert(k, t);
    }
    let (mut map, names) = if is_hf_naming(map.keys().map(String::as_str)) {
        hf_to_canonical(map)?
    } else {
        (map, HashMap::new())
    };
    // A [1]-shaped logit_scale (some exporters) becomes the canonical 0-d scalar.
    if let Some(ls) = map.get("logit_scale") {
        if ls.dims() == [1] {
            let s = ls.reshape(())?;
            map.insert("logit_scale".into(), s);
        }
    }
    check_against(&map, config, &names)?;
    Ok(Weights::from_map(map))
}

/// File format, by magic bytes rather than extension.
pub(crate) enum Format {
    Safetensors,
    TorchZip,
}

pub(crate) fn sniff(path: &Path) -> Result<Format> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut head = [0u8; 9];
    let n = f.read(&mut head).map_err(io_err(path))?;
    if n >= 2 && &head[..2] == b"PK" {
        return Ok(Format::TorchZip);
    }
    // safetensors: u64 LE header length, then a JSON object.
    if n == 9 && head[8] == b'{' {
        return Ok(Format::Safetensors);
    }
    if n >= 2 && head[0] == 0x80 {
        return Err(unrecognised(
            path,
            "legacy (non-zip) PyTorch pickle; re-save it with torch.save (PyTorch >= 1.6) or as safetensors",
        ));
    }
    Err(unrecognised(
        path,
        "neither a safetensors file nor a PyTorch zip checkpoint",
    ))
}

/// Reads all tensors of the given files. Safetensors are memory-mapped; PyTorch zips are
/// read tensor by tensor, taking the `state_dict` entry of a training checkpoint.
pub(crate) fn read_tensor_files(files: &[PathBuf]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for file in files {
        match sniff(file)? {
            Format::Safetensors => {
                // SAFETY: the mapping is only read while this function runs and every tensor is
                // copied out; the file must not be truncated concurrently (as for any mmap).
                let bad = |e: candle_core::Error| {
                    unrecognised(file, format!("unreadable safetensors: {e}"))
                };
                let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }
                    .map_err(bad)?;
                for (name, _) in st.tensors() {
                    let t = st.load(&name, &Device::Cpu).map_err(bad)?;
                    out.push((name, t));
                }
            }
            Format::TorchZip => {
                // Training checkpoints nest the weights under `state_dict`; plain state dicts
                // do not have that key, which candle reports as an error.
                let pth = match candle_core::pickle::PthTensors::new(file, Some("state_dict")) {
                    Ok(p) if !p.tensor_infos().is_empty() => p,
                    _ => candle_core::pickle::PthTensors::new(file, None).map_err(|e| {
                        unrecognised(file, format!("unreadable PyTorch checkpoint: {e}"))
                    })?,
                };
                let mut names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
                names.sort();
                if names.is_empty() {
                    return Err(unrecognised(file, "PyTorch checkpoint holds no tensors (neither a state dict nor {state_dict: ...})"));
                }
                for name in names {
                    let t = pth
                        .get(&name)
                        .map_err(|e| unrecognised(file, format!("reading tensor `{name}`: {e}")))?;
                    if let Some(t) = t {
                        out.push((name, t));
                    }
                }
            }
        }
    }
    Ok(out)
}
