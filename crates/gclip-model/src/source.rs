//! Lazy, tensor-by-tensor access to a checkpoint in canonical (open_clip) naming.
//!
//! [`crate::load_weights`] materialises every tensor as an f32 candle tensor, so a consumer that
//! repacks the weights (the CPU engine) briefly holds two copies of the model. A
//! [`TensorSource`] instead memory-maps safetensors files, checks every key and shape against
//! the config from the file headers alone, and converts one tensor when it is asked for. The
//! mapped pages a tensor occupied are handed back to the kernel after it is read, so the
//! resident set stays near "what the consumer kept plus one tensor".

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::config::ClipConfig;
use crate::error::{io_err, ModelError, Result};
use crate::load::{
    canonicalise, read_tensor_files, resolve, sniff, unrecognised, Format, Layout, LoadOptions,
};
use crate::weights::{check_shapes, hf_to_canonical, is_hf_naming, is_ignorable_key, HfPart};
use crate::Weights;

/// A checkpoint opened for lazy reading: config and provenance like
/// [`crate::LoadedWeights`], tensors fetched one by one with [`TensorSource::get_f32`].
///
/// Opening already verifies that the keys and shapes are exactly those of the config (the
/// same errors as [`crate::load_weights`]), so a later `get` of an expected key only fails on
/// I/O or an unsupported element type.
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
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// PyTorch pickles are read eagerly (their zip members are compressed or scattered, and
    /// these files are rare for inference); the source then just hands out clones.
    Eager(Weights),
    /// Memory-mapped safetensors and, per canonical key, how to build it.
    Mapped {
        files: Vec<MappedFile>,
        plan: BTreeMap<String, Lazy>,
    },
}

struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("len", &self.mmap.len())
            .finish()
    }
}

/// One tensor inside a mapped file.
#[derive(Debug, Clone)]
struct Loc {
    file: usize,
    dtype: Dtype,
    /// Shape as stored.
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

#[derive(Debug, Clone)]
enum Recipe {
    /// Stored as is (a `[1]` logit scale is reinterpreted as a scalar).
    Direct(Loc),
    /// A 2-d tensor stored transposed (HF projections).
    Transposed(Loc),
    /// Parts concatenated along dim 0 (HF q/k/v into `in_proj`).
    Cat(Vec<Loc>),
}

/// A canonical tensor not yet read: its recipe and resulting shape.
#[derive(Debug, Clone)]
struct Lazy {
    recipe: Recipe,
    shape: Vec<usize>,
}

impl HfPart for Lazy {
    fn dims(&self) -> &[usize] {
        &self.shape
    }
    fn transposed(self) -> Result<Self> {
        match (self.recipe, self.shape.as_slice()) {
            (Recipe::Direct(loc), &[r, c]) => Ok(Lazy {
                recipe: Recipe::Transposed(loc),
                shape: vec![c, r],
            }),
            (_, shape) => Err(ModelError::Unsupported(format!(
                "cannot transpose a tensor of shape {shape:?} (a projection must be 2-d)"
            ))),
        }
    }
    fn cat0(parts: Vec<Self>) -> Result<Self> {
        let mut shape = parts.first().map(|p| p.shape.clone()).unwrap_or_default();
        if let Some(d0) = shape.first_mut() {
            *d0 *= parts.len();
        }
        let mut locs = Vec::with_capacity(parts.len());
        for p in parts {
            match p.recipe {
                Recipe::Direct(loc) => locs.push(loc),
                _ => {
                    return Err(ModelError::Unsupported(
                        "q/k/v parts must be stored tensors".into(),
                    ))
                }
            }
        }
        Ok(Lazy {
            recipe: Recipe::Cat(locs),
            shape,
        })
    }
}

/// Opens the checkpoint at `path` (same layouts and config rules as [`crate::load_weights`])
/// for lazy reading. Safetensors files are memory-mapped and only their headers are read
/// here; PyTorch pickles fall back to eager loading.
pub fn open_tensors(path: &Path, opts: &LoadOptions) -> Result<TensorSource> {
    let r = resolve(path, opts)?;
    let mut all_st = true;
    for f in &r.files {
        if !matches!(sniff(f)?, Format::Safetensors) {
            all_st = false;
        }
    }
    let inner = if all_st {
        map_files(&r.files, &r.config)?
    } else {
        let raw = read_tensor_files(&r.files)?;
        Inner::Eager(canonicalise(raw, &r.config)?)
    };
    Ok(TensorSource {
        config: r.config,
        layout: r.layout,
        dir: r.dir,
        preprocess: r.preprocess,
        inner,
    })
}

fn map_files(paths: &[PathBuf], config: &ClipConfig) -> Result<Inner> {
    let mut files = Vec::with_capacity(paths.len());
    // Prefix-stripped file key -> its location; a later duplicate replaces an earlier one, as
    // in eager loading.
    let mut raw: BTreeMap<String, Lazy> = BTreeMap::new();
    for (i, path) in paths.iter().enumerate() {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        // SAFETY: the map is read-only and private; like every mmap reader we rely on the file
        // not being truncated while the source lives.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let (header_len, meta) = SafeTensors::read_metadata(&mmap)
            .map_err(|e| unrecognised(path, format!("unreadable safetensors: {e}")))?;
        let data_start = 8 + header_len;
        for (name, info) in meta.tensors() {
            let key = name.strip_prefix("module.").unwrap_or(&name).to_string();
            if is_ignorable_key(&key) {
                continue;
            }
            if elem_size(info.dtype).is_none() {
                return Err(unrecognised(
                    path,
                    format!(
                        "tensor `{name}` has element type {:?}; only F32, F16, BF16 and F64 \
                         weights are supported",
                        info.dtype
                    ),
                ));
            }
            let loc = Loc {
                file: i,
                dtype: info.dtype,
                shape: info.shape.clone(),
                start: data_start + info.data_offsets.0,
                end: data_start + info.data_offsets.1,
            };
            raw.insert(
                key,
                Lazy {
                    shape: info.shape.clone(),
                    recipe: Recipe::Direct(loc),
                },
            );
        }
        files.push(MappedFile {
            path: path.clone(),
            mmap,
        });
    }
    let (mut plan, names) = if is_hf_naming(raw.keys().map(String::as_str)) {
        hf_to_canonical(raw)?
    } else {
        (raw, HashMap::new())
    };
    if let Some(ls) = plan.get_mut("logit_scale") {
        if ls.shape == [1] {
            ls.shape.clear();
        }
    }
    let shapes: BTreeMap<&str, &[usize]> = plan
        .iter()
        .map(|(k, l)| (k.as_str(), l.shape.as_slice()))
        .collect();
    check_shapes(&shapes, config, &names)?;
    Ok(Inner::Mapped { files, plan })
}

fn elem_size(d: Dtype) -> Option<usize> {
    match d {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        Dtype::F64 => Some(8),
        _ => None,
    }
}

impl TensorSource {
    /// Canonical keys with their shapes, in key order.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        match &self.inner {
            Inner::Eager(w) => w
                .iter()
                .map(|(k, t)| (k.clone(), t.dims().to_vec()))
                .collect(),
            Inner::Mapped { plan, .. } => plan
                .iter()
                .map(|(k, l)| (k.clone(), l.shape.clone()))
                .collect(),
        }
    }

    /// Shape of the tensor under a canonical key, if present.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        match &self.inner {
            Inner::Eager(w) => w.get(key).map(|t| t.dims().to_vec()),
            Inner::Mapped { plan, .. } => plan.get(key).map(|l| l.shape.clone()),
        }
    }

    /// True when tensors are read lazily from memory-mapped files (false for pickles).
    pub fn is_lazy(&self) -> bool {
        matches!(self.inner, Inner::Mapped { .. })
    }

    /// The tensor under a canonical key as its shape and row-major f32 values, converted from
    /// the stored element type (and transposed / concatenated for HF checkpoints). The file
    /// pages it occupied are released from this process afterwards.
    pub fn get_f32(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let missing = || ModelError::MissingTensor {
            key: key.to_string(),
            expected: vec![],
            source_key: None,
        };
        match &self.inner {
            Inner::Eager(w) => {
                let t = w.get(key).ok_or_else(missing)?;
                Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?))
            }
            Inner::Mapped { files, plan } => {
                let lazy = plan.get(key).ok_or_else(missing)?;
                let n: usize = lazy.shape.iter().product();
                let mut out = Vec::with_capacity(n);
                match &lazy.recipe {
                    Recipe::Direct(loc) => read_loc(files, loc, &mut out),
                    Recipe::Cat(locs) => {
                        for loc in locs {
                            read_loc(files, loc, &mut out);
                        }
                    }
                    Recipe::Transposed(loc) => {
                        let mut stored = Vec::with_capacity(n);
                        read_loc(files, loc, &mut stored);
                        let (r, c) = (loc.shape[0], loc.shape[1]);
                        out.resize(n, 0.0);
                        for (i, row) in stored.chunks_exact(c).enumerate() {
                            for (j, &v) in row.iter().enumerate() {
                                out[j * r + i] = v;
                            }
                        }
                    }
                }
                // Shapes were validated by the safetensors header check; this guards the
                // recipe arithmetic above.
                if out.len() != n {
                    return Err(ModelError::ShapeMismatch {
                        key: key.to_string(),
                        expected: lazy.shape.clone(),
                        found: vec![out.len()],
                        source_key: None,
                    });
                }
                Ok((lazy.shape.clone(), out))
            }
        }
    }

    /// The tensor under a canonical key as an f32 CPU candle tensor (see
    /// [`TensorSource::get_f32`]).
    pub fn get(&self, key: &str) -> Result<Tensor> {
        let (shape, data) = self.get_f32(key)?;
        Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
    }

    /// Reads every tensor into a [`Weights`] map (what [`crate::load_weights`] returns).
    pub fn to_weights(&self) -> Result<Weights> {
        if let Inner::Eager(w) = &self.inner {
            return Ok(w.clone());
        }
        let mut map = BTreeMap::new();
        for (k, _) in self.shapes() {
            let t = self.get(&k)?;
            map.insert(k, t);
        }
        Ok(Weights::from_map(map))
    }
}

/// Appends the f32 values of one stored tensor to `out`, then drops its pages from this
/// process's resident set (they stay in the page cache, so a re-read is cheap).
fn read_loc(files: &[MappedFile], loc: &Loc, out: &mut Vec<f32>) {
    let f = &files[loc.file];
    let bytes = &f.mmap[loc.start..loc.end];
    match loc.dtype {
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        Dtype::F64 => out.extend(bytes.chunks_exact(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            f64::from_le_bytes(a) as f32
        })),
        // Rejected when the file was opened.
        _ => {}
    }
    release(&f.mmap, loc.start, loc.end - loc.start);
}

/// Drops the mapped pages of a byte range from the resident set. Without this a streamed load
/// would end with the whole file resident (file-backed pages count towards RSS).
#[cfg(unix)]
fn release(mmap: &Mmap, offset: usize, len: usize) {
    // SAFETY: the mapping is private, read-only and never written, so MADV_DONTNEED only
    // discards clean pages; a later access re-reads them from the file. No slice into the
    // range is alive across this call. Failure is harmless (the pages just stay resident).
    let _ = unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
}

#[cfg(not(unix))]
fn release(_mmap: &Mmap, _offset: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{arch, load_weights, save};

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
        c
    }

    #[test]
    fn lazy_matches_eager_for_every_layout() {
        let cfg = tiny();
        let w = Weights::random(&cfg, 3).unwrap();
        for layout in [Layout::OpenClip, Layout::Hf] {
            let dir = tempfile::tempdir().unwrap();
            save(&w, &cfg, dir.path(), layout, None).unwrap();
            let eager = load_weights(dir.path(), &LoadOptions::default()).unwrap();
            let src = open_tensors(dir.path(), &LoadOptions::default()).unwrap();
            assert!(src.is_lazy());
            assert_eq!(src.layout, layout);
            assert_eq!(src.shapes().len(), eager.weights.len());
            for (k, t) in eager.weights.iter() {
                let (shape, data) = src.get_f32(k).unwrap();
                assert_eq!(shape, t.dims(), "{k}");
                let want = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(data, want, "{k} ({layout:?})");
                // A second read (after the pages were released) gives the same values.
                assert_eq!(src.get_f32(k).unwrap().1, want, "{k} re-read");
            }
        }
    }

    /// Rewrites the weight file of a saved directory with `edit` applied to its tensors.
    fn rewrite(file: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
        let mut m = candle_core::safetensors::load(file, &Device::Cpu).unwrap();
        edit(&mut m);
        candle_core::safetensors::save(&m, file).unwrap();
    }

    #[test]
    fn open_rejects_like_load_weights() {
        let cfg = tiny();
        let w = Weights::random(&cfg, 4).unwrap();
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
            let dir = tempfile::tempdir().unwrap();
            save(&w, &cfg, dir.path(), layout, None).unwrap();
            rewrite(&dir.path().join(file), |m| {
                if layout == Layout::OpenClip {
                    let t =
                        Tensor::zeros((cfg.vision.width, 3), candle_core::DType::F32, &Device::Cpu);
                    m.insert(key.to_string(), t.unwrap());
                } else {
                    m.remove(key);
                }
            });
            let eager = load_weights(dir.path(), &LoadOptions::default()).unwrap_err();
            let lazy = open_tensors(dir.path(), &LoadOptions::default()).unwrap_err();
            assert_eq!(eager.to_string(), lazy.to_string());
            assert!(lazy.to_string().contains(key), "{lazy}");
        }
    }
}
