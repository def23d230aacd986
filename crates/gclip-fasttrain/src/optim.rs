//! Global-norm clipping and AdamW over flat buffers, in one pass each.

use std::ops::Range;

use crate::{FastTrainError, Result};

/// AdamW hyper-parameters (PyTorch's `torch.optim.AdamW`: decoupled decay `p -= lr wd p`
/// before the Adam update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Weight decay of the decayed group.
    pub weight_decay: f64,
}

/// A contiguous run of parameters that the optimizer updates, and whether it is decayed.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Range in the flat buffers.
    pub range: Range<usize>,
    /// In the weight-decay group.
    pub decay: bool,
}

/// AdamW state over a flat parameter buffer; only the given segments are updated (a locked
/// tower's parameters have none and keep their values and moments).
#[derive(Debug, Clone)]
pub struct AdamW {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    /// The updated segments.
    pub segments: Vec<Segment>,
    /// First moments (same layout as the parameters).
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
    /// Updates done.
    pub step: usize,
}

impl AdamW {
    /// Zero moments for `len` parameters.
    pub fn new(config: AdamWConfig, len: usize, segments: Vec<Segment>) -> Self {
        AdamW {
            config,
            segments,
            m: vec![0.0; len],
            v: vec![0.0; len],
            step: 0,
        }
    }

    /// One update of `params` from `grads` at learning rate `lr`.
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], lr: f64) -> Result<()> {
        if params.len() != self.m.len() || grads.len() != self.m.len() {
            return Err(FastTrainError::Shape(format!(
                "AdamW over {} values, given {} parameters and {} gradients",
                self.m.len(),
                params.len(),
                grads.len()
            )));
        }
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = (lr / bc1) as f32;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let (ob1, ob2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
        let inv_bc2 = (1.0 / bc2_sqrt) as f32;
        let eps = c.eps as f32;
        for s in &self.segments {
            let decay = if s.decay {
                (1.0 - lr * c.weight_decay) as f32
            } else {
                1.0
            };
            let r = s.range.clone();
            for (((p, &g), m), v) in params[r.clone()]
                .iter_mut()
                .zip(&grads[r.clone()])
                .zip(&mut self.m[r.clone()])
                .zip(&mut self.v[r])
            {
                *m = b1 * *m + ob1 * g;
                *v = b2 * *v + ob2 * g * g;
                let denom = v.sqrt() * inv_bc2 + eps;
                *p = *p * decay - step_size * (*m / denom);
            }
        }
        Ok(())
    }
}

/// Global L2 norm (`torch.nn.utils.clip_grad_norm_`'s total norm), summed in f64.
pub fn grad_norm(grads: &[f32]) -> f64 {
    grads
        .iter()
        .map(|&g| (g as f64) * (g as f64))
        .sum::<f64>()
        .sqrt()
}

/// Scales `grads` so their global norm is at most `max_norm` (PyTorch's coefficient
/// `max_norm / (norm + 1e-6)`, applied only when below 1); returns the norm before.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f64) -> f64 {
    let norm = grad_norm(grads);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        let c = coef as f32;
        grads.iter_mut().for_each(|g| *g *= c);
    }
    norm
}

/// open_clip's clamp of the logit scale after every update: `0 <= logit_scale <= ln 100`.
pub fn clamp_logit_scale(v: &mut f32) {
    *v = v.clamp(0.0, 100f32.ln());
}
