//! AdamW with parameter groups, global gradient-norm clipping and gradient
//! accumulation, over named candle `Var`s.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};

use crate::error::{Result, TrainError};

/// Hyper-parameters of AdamW (PyTorch's `torch.optim.AdamW` semantics:
/// decoupled weight decay `p -= lr * wd * p` before the Adam update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    /// Exponential decay of the first moment.
    pub beta1: f64,
    /// Exponential decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator for stability.
    pub eps: f64,
    /// Weight decay of the decayed group.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        // open_clip's defaults for ViT models
        AdamWParams {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.2,
        }
    }
}

/// open_clip's rule, extended to embeddings: gains, biases, 1-d tensors,
/// embeddings and the logit scale get no weight decay.
pub fn is_no_decay(name: &str, rank: usize) -> bool {
    rank < 2
        || name.contains("ln")
        || name.contains("bias")
        || name.contains("logit_scale")
        || name.contains("embedding")
}

struct Slot {
    name: String,
    var: Var,
    decay: bool,
    m: Tensor,
    v: Tensor,
}

/// AdamW over a fixed set of named variables, each either in the decayed group
/// or in the no-decay group ([`is_no_decay`]).
pub struct AdamW {
    params: AdamWParams,
    slots: Vec<Slot>,
    step: usize,
}

impl AdamW {
    /// Builds the optimizer; the grouping of each variable is decided by
    /// `no_decay(name, rank)`.
    pub fn new(
        vars: impl IntoIterator<Item = (String, Var)>,
        params: AdamWParams,
        no_decay: impl Fn(&str, usize) -> bool,
    ) -> Result<Self> {
        let mut slots = Vec::new();
        for (name, var) in vars {
            let decay = !no_decay(&name, var.rank());
            let m = var.zeros_like()?;
            let v = var.zeros_like()?;
            slots.push(Slot {
                name,
                var,
                decay,
                m,
                v,
            });
        }
        Ok(AdamW {
            params,
            slots,
            step: 0,
        })
    }

    /// Number of updates done so far.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// Names of the optimised variables, in order, with whether they are decayed.
    pub fn groups(&self) -> impl Iterator<Item = (&str, bool)> {
        self.slots.iter().map(|s| (s.name.as_str(), s.decay))
    }

    /// The optimised variables by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.var))
    }

    /// One update with learning rate `lr` from the gradients in `grads`
    /// (keyed by variable name). Variables without a gradient are left as they
    /// are, as PyTorch does for `grad is None`.
    pub fn step(&mut self, grads: &BTreeMap<String, Tensor>, lr: f64) -> Result<()> {
        self.step += 1;
        let AdamWParams {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.params;
        let t = self.step as i32;
        let bc1 = 1.0 - beta1.powi(t);
        let bc2 = 1.0 - beta2.powi(t);
        let step_size = lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        for s in &mut self.slots {
            let Some(g) = grads.get(&s.name) else {
                continue;
            };
            let g = g.to_dtype(DType::F32)?;
            let mut p = s.var.as_tensor().detach();
            if s.decay && weight_decay != 0.0 {
                p = (p * (1.0 - lr * weight_decay))?;
            }
            s.m = ((&s.m * beta1)? + (&g * (1.0 - beta1))?)?;
            s.v = ((&s.v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let denom = ((s.v.sqrt()? / bc2_sqrt)? + eps)?;
            let upd = ((&s.m / denom)? * step_size)?;
            s.var.set(&(p - upd)?)?;
        }
        Ok(())
    }

    /// Saves the moments and step count (safetensors) for resuming.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = std::collections::HashMap::new();
        for s in &self.slots {
            map.insert(format!("m.{}", s.name), s.m.clone());
            map.insert(format!("v.{}", s.name), s.v.clone());
        }
        map.insert(
            "step".to_string(),
            Tensor::new(&[self.step as u32], &candle_core::Device::Cpu)?,
        );
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    /// Restores the state written by [`AdamW::save`]; the variable set must match.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let map = candle_core::safetensors::load(path, &dev)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
        let step = map
            .get("step")
            .ok_or_else(|| TrainError::Checkpoint(format!("{}: no `step`", path.display())))?
            .to_vec1::<u32>()?;
        for s in &mut self.slots {
            let get = |k: String| {
                map.get(&k).cloned().ok_or_else(|| {
                    TrainError::Checkpoint(format!(
                        "{}: missing optimizer state {k}",
                        path.display()
                    ))
                })
            };
            let m = get(format!("m.{}", s.name))?;
            let v = get(format!("v.{}", s.name))?;
            if m.dims() != s.var.dims() || v.dims() != s.var.dims() {
                return Err(TrainError::Checkpoint(format!(
                    "optimizer state of {} has shape {:?}, variable has {:?}",
                    s.name,
                    m.dims(),
                    s.var.dims()
                )));
            }
            s.m = m;
            s.v = v;
        }
        self.step = step.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

/// Global L2 norm of all gradients (as `torch.nn.utils.clip_grad_norm_` computes it).
pub fn grad_norm(grads: &BTreeMap<String, Tensor>) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.values() {
        total += g
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
    }
    Ok(total.sqrt())
}

/// Scales all gradients so their global norm is at most `max_norm`, with
/// PyTorch's coefficient `max_norm / (norm + 1e-6)` clamped to 1.
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut BTreeMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads)?;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in grads.values_mut() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

/// Sums gradients of successive micro-batches; [`GradAccumulator::take`]
/// returns their mean.
#[derive(Default)]
pub struct GradAccumulator {
    sum: BTreeMap<String, Tensor>,
    count: usize,
}

impl GradAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the gradients of `vars` found in `grads` (one micro-batch).
    pub fn add<'a>(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        vars: impl IntoIterator<Item = (&'a str, &'a Var)>,
    ) -> Result<()> {
        for (name, var) in vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                let g = g.detach();
                let e = match self.sum.remove(name) {
                    Some(s) => (s + g)?,
                    None => g,
                };
                self.sum.insert(name.to_string(), e);
            }
        }
        self.count += 1;
        Ok(())
    }

    /// Number of micro-batches added since the last [`GradAccumulator::take`].
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean gradient over the added micro-batches; resets the accumulator.
    pub fn take(&mut self) -> Result<BTreeMap<String, Tensor>> {
        let n = self.count.max(1) as f64;
        let sum = std::mem::take(&mut self.sum);
        self.count = 0;
        let mut out = BTreeMap::new();
        for (k, g) in sum {
            let g = if n == 1.0 { g } else { (g / n)? };
            out.insert(k, g);
        }
        Ok(out)
    }
}
