//! The canonical weight map as candle tensors, converted from and to the checkpoint core's raw
//! tensors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use gclip_checkpoint::{
    check_shapes, open_tensors, random_tensors, save_tensors, ClipConfig, Layout, LoadOptions,
    RawTensor, SaveOptions, TensorMap, TensorSource,
};
use serde_json::Value;

use crate::error::{candle, CandleExt, Result};

/// Named f32 CPU tensors in open_clip key naming (`visual.conv1.weight`, `text_projection`, ...).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps an existing map (no checks; see [`Weights::check`]).
    pub fn from_map(tensors: BTreeMap<String, Tensor>) -> Self {
        Self { tensors }
    }

    /// The tensor under a canonical key.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// Inserts or replaces a tensor.
    pub fn insert(&mut self, key: impl Into<String>, t: Tensor) -> Option<Tensor> {
        self.tensors.insert(key.into(), t)
    }

    /// Removes a tensor.
    pub fn remove(&mut self, key: &str) -> Option<Tensor> {
        self.tensors.remove(key)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Keys and tensors in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    /// Consumes into the underlying map.
    pub fn into_map(self) -> BTreeMap<String, Tensor> {
        self.tensors
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count()).sum()
    }

    /// Verifies that the keys and shapes are exactly those of `cfg`: a missing, unexpected or
    /// mis-shaped tensor is an error naming the key and both shapes.
    pub fn check(&self, cfg: &ClipConfig) -> Result<()> {
        check_shapes(
            self.tensors.iter().map(|(k, t)| (k.as_str(), t.dims())),
            cfg,
        )
    }

    /// f32 CPU tensors from raw ones (any stored float type).
    pub fn from_tensors(tensors: &TensorMap) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (k, t) in tensors {
            map.insert(k.clone(), to_candle(t.shape().to_vec(), t.to_f32())?);
        }
        Ok(Self { tensors: map })
    }

    /// Reads every tensor of a source, one at a time, as f32 CPU tensors.
    pub fn from_source(src: &TensorSource) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (k, _) in src.shapes() {
            let (shape, data) = src.get_f32(&k)?;
            map.insert(k, to_candle(shape, data)?);
        }
        Ok(Self { tensors: map })
    }

    /// The tensors as raw f32 tensors (for the checkpoint core's saver or the CPU engine).
    pub fn to_tensors(&self) -> Result<TensorMap> {
        let mut out = TensorMap::new();
        for (k, t) in &self.tensors {
            let data: Vec<f32> = t
                .to_device(&Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .c()?;
            out.insert(k.clone(), RawTensor::from_f32(t.dims().to_vec(), &data)?);
        }
        Ok(out)
    }

    /// A `VarBuilder` over these tensors (for [`crate::ClipModel::new`]); tensors are moved to
    /// `device` and cast to `dtype` on access.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> candle_nn::VarBuilder<'static> {
        let map: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        candle_nn::VarBuilder::from_tensors(map, dtype, device)
    }

    /// Trainable copies of all tensors in a `VarMap` (same keys), e.g. to fine-tune.
    pub fn to_var_map(&self, device: &Device) -> Result<candle_nn::VarMap> {
        let vm = candle_nn::VarMap::new();
        {
            let mut data = vm
                .data()
                .lock()
                .map_err(|_| candle(candle_core::Error::Msg("VarMap mutex poisoned".into())))?;
            for (k, t) in &self.tensors {
                let var = candle_core::Var::from_tensor(&t.to_device(device).c()?).c()?;
                data.insert(k.clone(), var);
            }
        }
        Ok(vm)
    }

    /// Snapshot of the current values of a `VarMap` built with canonical keys.
    pub fn from_var_map(vm: &candle_nn::VarMap) -> Result<Self> {
        let data = vm
            .data()
            .lock()
            .map_err(|_| candle(candle_core::Error::Msg("VarMap mutex poisoned".into())))?;
        let mut tensors = BTreeMap::new();
        for (k, v) in data.iter() {
            let t = v
                .as_tensor()
                .to_device(&Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.copy())
                .c()?;
            tensors.insert(k.clone(), t);
        }
        Ok(Self { tensors })
    }

    /// Random weights shaped for `cfg`, initialised like open_clip's `CLIP.init_parameters`
    /// (see [`gclip_checkpoint::random_tensors`]). Deterministic in `seed`.
    pub fn random(cfg: &ClipConfig, seed: u64) -> Result<Self> {
        Self::from_tensors(&random_tensors(cfg, seed)?)
    }
}

fn to_candle(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu).c()
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

/// Loads canonical weights and config from `path` as f32 candle tensors (layouts as in
/// [`gclip_checkpoint::open_tensors`]). Tensors are converted one at a time from the
/// memory-mapped files.
pub fn load_weights(path: &Path, opts: &LoadOptions) -> Result<LoadedWeights> {
    let src = open_tensors(path, opts)?;
    let weights = Weights::from_source(&src)?;
    Ok(LoadedWeights {
        weights,
        config: src.config,
        layout: src.layout,
        dir: src.dir,
        preprocess: src.preprocess,
    })
}

/// Writes `weights` with `cfg` into `dir` in `layout`, as f32 (see
/// [`gclip_checkpoint::save_tensors`]).
pub fn save(
    weights: &Weights,
    cfg: &ClipConfig,
    dir: &Path,
    layout: Layout,
    preprocess: Option<&Value>,
) -> Result<()> {
    save_with(weights, cfg, dir, &SaveOptions::new(layout), preprocess)
}

/// [`save`] with explicit options (layout and element type, e.g. f16).
pub fn save_with(
    weights: &Weights,
    cfg: &ClipConfig,
    dir: &Path,
    opts: &SaveOptions,
    preprocess: Option<&Value>,
) -> Result<()> {
    // Check before converting, so the error names the key rather than a conversion.
    weights.check(cfg)?;
    save_tensors(&weights.to_tensors()?, cfg, dir, opts, preprocess)
}
