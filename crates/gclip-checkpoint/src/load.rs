//! Checkpoint discovery and loading: HF `CLIPModel` dirs, open_clip dirs, bare files, read
//! lazily tensor by tensor from memory-mapped safetensors or PyTorch zip archives.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arch;
use crate::config::ClipConfig;
use crate::error::{io_err, CheckpointError, Result};
use crate::keys::{self, HfName, KeySpec};
use crate::stored::{self, Loc, MappedFile};
use crate::tensor::{RawTensor, TensorMap};

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

/// Options for [`load_tensors`] / `ClipModel::load` (gclip-model).
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

const OC_CONFIG: &str = "open_clip_config.json";
const OC_WEIGHTS: [&str; 2] = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];
const HF_CONFIG: &str = "config.json";
const HF_WEIGHTS: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
const HF_INDEX: &str = "model.safetensors.index.json";
const HF_PREPROCESS: &str = "preprocessor_config.json";

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn unrecognised(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::UnrecognisedPath {
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

/// A checkpoint located on disk: everything but the tensors.
pub(crate) struct Resolved {
    pub(crate) config: ClipConfig,
    pub(crate) layout: Layout,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) preprocess: Option<Value>,
    /// Weight files (several for a sharded HF checkpoint).
    pub(crate) files: Vec<PathBuf>,
}

/// Detects the layout of `path` and reads its config (see [`load_tensors`]).
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
                CheckpointError::InvalidConfig(format!(
                    "{}: no `weight_map` object",
                    index.display()
                ))
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

/// How to build one canonical tensor from stored ones.
#[derive(Debug, Clone)]
enum Recipe {
    /// Stored as is (a `[1]` logit scale is reinterpreted as a scalar).
    Direct(Loc),
    /// A 2-d tensor stored transposed (HF projections).
    Transposed(Loc),
    /// Parts concatenated along dim 0 (HF q/k/v into `in_proj`).
    Cat(Vec<Loc>),
}

/// A canonical tensor not yet read: its recipe and resulting (canonical) shape.
#[derive(Debug, Clone)]
struct Lazy {
    recipe: Recipe,
    shape: Vec<usize>,
}

fn missing(spec: &KeySpec, source_key: Option<&str>) -> CheckpointError {
    CheckpointError::MissingTensor {
        key: spec.key.clone(),
        expected: spec.shape.clone(),
        source_key: source_key.map(str::to_string),
    }
}

fn mismatch(spec: &KeySpec, found: Vec<usize>, source_key: Option<&str>) -> CheckpointError {
    CheckpointError::ShapeMismatch {
        key: spec.key.clone(),
        expected: spec.shape.clone(),
        found,
        source_key: source_key.map(str::to_string),
    }
}

/// Matches the stored tensors (prefix-stripped file key -> location) with the key table of
/// `cfg`, mapping HF naming when the file uses it; every key and shape is checked here, from
/// the headers alone.
fn plan(mut found: BTreeMap<String, Loc>, cfg: &ClipConfig) -> Result<BTreeMap<String, Lazy>> {
    let hf = keys::is_hf_naming(found.keys().map(String::as_str));
    let mut out = BTreeMap::new();
    for spec in keys::key_table(cfg) {
        let (recipe, shape, src): (Recipe, Vec<usize>, Option<String>) = if !hf {
            let loc = found
                .remove(&spec.key)
                .ok_or_else(|| missing(&spec, None))?;
            let shape = loc.shape.clone();
            (Recipe::Direct(loc), shape, None)
        } else {
            match &spec.hf {
                HfName::Same(h) => {
                    let loc = found.remove(h).ok_or_else(|| missing(&spec, Some(h)))?;
                    let shape = loc.shape.clone();
                    (Recipe::Direct(loc), shape, Some(h.clone()))
                }
                HfName::Transposed(h) => {
                    let loc = found.remove(h).ok_or_else(|| missing(&spec, Some(h)))?;
                    let &[r, c] = loc.shape.as_slice() else {
                        return Err(mismatch(&spec, loc.shape.clone(), Some(h)));
                    };
                    (Recipe::Transposed(loc), vec![c, r], Some(h.clone()))
                }
                HfName::Qkv(parts) => {
                    let mut locs = Vec::with_capacity(3);
                    for p in parts {
                        locs.push(found.remove(p).ok_or_else(|| missing(&spec, Some(p)))?);
                    }
                    let first = locs[0].shape.clone();
                    if let Some(i) = (1..3).find(|&i| locs[i].shape != first) {
                        return Err(mismatch(&spec, locs[i].shape.clone(), Some(&parts[i])));
                    }
                    let mut shape = first;
                    match shape.first_mut() {
                        Some(d0) => *d0 *= 3,
                        None => return Err(mismatch(&spec, vec![], Some(&parts[0]))),
                    }
                    let src = parts[0].replace(".q_proj.", ".{q,k,v}_proj.");
                    (Recipe::Cat(locs), shape, Some(src))
                }
                HfName::Absent => return Err(missing(&spec, None)),
            }
        };
        if !keys::shape_ok(&shape, &spec.shape) {
            return Err(mismatch(&spec, shape, src.as_deref()));
        }
        out.insert(
            spec.key.clone(),
            Lazy {
                recipe,
                shape: spec.shape.clone(),
            },
        );
    }
    if let Some((key, loc)) = found.into_iter().next() {
        return Err(CheckpointError::UnexpectedTensor {
            key,
            shape: loc.shape,
        });
    }
    Ok(out)
}

/// A checkpoint opened for reading: config and provenance, tensors fetched one by one in
/// canonical (open_clip) naming and orientation.
///
/// Opening already verifies that the keys and shapes are exactly those of the config, so a
/// later `get` of an expected key only fails on I/O or an unsupported element type. Both
/// safetensors and PyTorch zip checkpoints are memory-mapped and read lazily; the pages a
/// tensor occupied are handed back to the kernel after it is read, so a consumer that converts
/// tensor by tensor keeps its resident set near "what it kept plus one tensor".
#[derive(Debug)]
pub struct TensorSource {
    /// Model config (from the file beside the weights, the arch name, or the options).
    pub config: ClipConfig,
    /// The layout detected.
    pub layout: Layout,
    /// The model directory (for tokenizer / preprocessor files), if there is one.
    pub dir: Option<PathBuf>,
    /// Raw preprocessing config: open_clip `preprocess_cfg` or HF `preprocessor_config.json`.
    pub preprocess: Option<Value>,
    files: Vec<MappedFile>,
    plan: BTreeMap<String, Lazy>,
}

/// Opens the checkpoint at `path` for lazy reading, detecting the layout:
/// - a directory with `open_clip_config.json` and `open_clip_model.safetensors` /
///   `open_clip_pytorch_model.bin` (preferred when both layouts are present);
/// - a directory with HF `config.json` and `model.safetensors` (or a sharded
///   `model.safetensors.index.json`, or `pytorch_model.bin`);
/// - a single `.safetensors` or PyTorch zip pickle (`.pt`/`.bin`/`.pth`) holding a state dict or
///   a training checkpoint `{state_dict: ...}`, keys with or without `module.`, in open_clip
///   or HF naming. Its config comes from `opts`, else from a config file beside it.
///
/// Only headers (and a PyTorch checkpoint's pickle) are read here.
pub fn open_tensors(path: &Path, opts: &LoadOptions) -> Result<TensorSource> {
    let r = resolve(path, opts)?;
    let mut files = Vec::with_capacity(r.files.len());
    // Prefix-stripped file key -> location; a later duplicate replaces an earlier one.
    let mut found: BTreeMap<String, Loc> = BTreeMap::new();
    for (i, file) in r.files.iter().enumerate() {
        let (mapped, tensors) = match sniff(file)? {
            Format::Safetensors => stored::open_safetensors(file, i)?,
            Format::TorchZip => stored::open_torch_zip(file, i)?,
        };
        for (name, loc) in tensors {
            let key = keys::strip_wrapper_prefixes(&name);
            if keys::is_ignorable_key(key) {
                continue;
            }
            stored::known_dtype(&loc, &name, file)?;
            found.insert(key.to_string(), loc);
        }
        files.push(mapped);
    }
    let plan = plan(found, &r.config)?;
    Ok(TensorSource {
        config: r.config,
        layout: r.layout,
        dir: r.dir,
        preprocess: r.preprocess,
        files,
        plan,
    })
}

impl TensorSource {
    /// Canonical keys with their shapes, in key order.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.plan
            .iter()
            .map(|(k, l)| (k.clone(), l.shape.clone()))
            .collect()
    }

    /// Shape of the tensor under a canonical key, if present.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.plan.get(key).map(|l| l.shape.clone())
    }

    /// True: tensors are read on demand from memory-mapped files (safetensors and PyTorch
    /// zip checkpoints alike).
    pub fn is_lazy(&self) -> bool {
        true
    }

    fn lazy(&self, key: &str) -> Result<&Lazy> {
        self.plan
            .get(key)
            .ok_or_else(|| CheckpointError::MissingTensor {
                key: key.to_string(),
                expected: vec![],
                source_key: None,
            })
    }

    /// The tensor under a canonical key in its stored element type (transposed /
    /// concatenated for HF checkpoints; q/k/v of different types are converted to f32).
    pub fn get(&self, key: &str) -> Result<RawTensor> {
        let lazy = self.lazy(key)?;
        let t = match &lazy.recipe {
            Recipe::Direct(loc) => stored::read_raw(&self.files, loc, key)?,
            Recipe::Transposed(loc) => stored::read_raw(&self.files, loc, key)?.transposed()?,
            Recipe::Cat(locs) => {
                let parts = locs
                    .iter()
                    .map(|l| stored::read_raw(&self.files, l, key))
                    .collect::<Result<Vec<_>>>()?;
                RawTensor::cat0(&parts)?
            }
        };
        t.reshape(lazy.shape.clone())
    }

    /// The tensor under a canonical key as its shape and row-major f32 values, converted from
    /// the stored element type without an intermediate copy in that type.
    pub fn get_f32(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let lazy = self.lazy(key)?;
        let n: usize = lazy.shape.iter().product();
        let mut out = Vec::with_capacity(n);
        match &lazy.recipe {
            Recipe::Direct(loc) => stored::read_f32(&self.files, loc, key, &mut out)?,
            Recipe::Cat(locs) => {
                for loc in locs {
                    stored::read_f32(&self.files, loc, key, &mut out)?;
                }
            }
            Recipe::Transposed(loc) => {
                let mut stored = Vec::with_capacity(n);
                stored::read_f32(&self.files, loc, key, &mut stored)?;
                let (r, c) = (loc.shape[0], loc.shape[1]);
                out.resize(n, 0.0);
                for (i, row) in stored.chunks_exact(c.max(1)).enumerate().take(r) {
                    for (j, &v) in row.iter().enumerate() {
                        out[j * r + i] = v;
                    }
                }
            }
        }
        if out.len() != n {
            // Shapes were validated at open; this guards the recipe arithmetic above.
            return Err(CheckpointError::ShapeMismatch {
                key: key.to_string(),
                expected: lazy.shape.clone(),
                found: vec![out.len()],
                source_key: None,
            });
        }
        Ok((lazy.shape.clone(), out))
    }

    /// Reads every tensor (in its stored element type).
    pub fn read_all(&self) -> Result<TensorMap> {
        self.plan
            .keys()
            .map(|k| Ok((k.clone(), self.get(k)?)))
            .collect()
    }
}

/// Result of [`load_tensors`]: canonical tensors plus where they came from.
#[derive(Debug, Clone)]
pub struct LoadedTensors {
    /// Model config (from the file beside the weights, the arch name, or the options).
    pub config: ClipConfig,
    /// Canonical (open_clip naming), shape-checked tensors in their stored element types.
    pub tensors: TensorMap,
    /// The layout detected.
    pub layout: Layout,
    /// The model directory (for tokenizer / preprocessor files), if there is one.
    pub dir: Option<PathBuf>,
    /// Raw preprocessing config: open_clip `preprocess_cfg` or HF `preprocessor_config.json`.
    pub preprocess: Option<Value>,
}

/// Loads every tensor of the checkpoint at `path` (layouts as in [`open_tensors`]).
pub fn load_tensors(path: &Path, opts: &LoadOptions) -> Result<LoadedTensors> {
    let src = open_tensors(path, opts)?;
    let tensors = src.read_all()?;
    Ok(LoadedTensors {
        tensors,
        config: src.config,
        layout: src.layout,
        dir: src.dir,
        preprocess: src.preprocess,
    })
}

/// The tensors of one weight file as stored (file keys, no renaming, no config), e.g. to
/// inspect a checkpoint or compare two files. PyTorch checkpoints give their state dict.
pub fn read_file_tensors(path: &Path) -> Result<TensorMap> {
    let (mapped, tensors) = match sniff(path)? {
        Format::Safetensors => stored::open_safetensors(path, 0)?,
        Format::TorchZip => stored::open_torch_zip(path, 0)?,
    };
    let files = [mapped];
    tensors
        .into_iter()
        .map(|(name, loc)| {
            let t = stored::read_raw(&files, &loc, &name)?;
            Ok((name, t))
        })
        .collect()
}
