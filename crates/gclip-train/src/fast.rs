//! The trainer's fast CPU step: `gclip-fasttrain`'s hand-written backward and flat AdamW,
//! with the candle `VarMap` kept as the place checkpoints, evaluation and the saved model
//! read from (synchronised before each of those), so every artefact of a run is the same
//! whichever backend trained it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use gclip_fasttrain::loss::GclTerms;
use gclip_fasttrain::optim::{clamp_logit_scale, clip_grad_norm, grad_norm, AdamW, AdamWConfig};
use gclip_fasttrain::{FastClip, FastTrainError, StepInputs, TowerInput};
use gclip_model::{ClipConfig, Weights};

use crate::error::{Result, TrainError};

/// Where a fast-path error goes: unsupported architectures are configuration errors.
fn err(e: FastTrainError) -> TrainError {
    match e {
        FastTrainError::Unsupported(m) => TrainError::Config(format!(
            "the fast backend does not cover this model ({m}); use backend = \"candle\""
        )),
        other => TrainError::Model(other.to_string()),
    }
}

/// One side of a micro-batch as raw inputs.
pub(crate) enum RawField {
    Text(Vec<Vec<u32>>),
    Image(Vec<f32>),
}

fn field(f: &RawField) -> TowerInput<'_> {
    match f {
        RawField::Text(ids) => TowerInput::Text(ids),
        RawField::Image(px) => TowerInput::Image(px),
    }
}

/// A micro-batch in the form the fast step takes.
pub(crate) struct RawBatch {
    pub n: usize,
    pub left: Vec<RawField>,
    pub left_alpha: Vec<f32>,
    pub right: Vec<RawField>,
    pub right_alpha: Vec<f32>,
    pub weights: Vec<f32>,
    pub left_ids: Vec<u64>,
    pub right_ids: Vec<u64>,
}

/// The fast model, its optimizer and the names of the trained parameters.
pub(crate) struct FastState {
    pub model: FastClip,
    opt: AdamW,
    trainable: Vec<String>,
    micro: usize,
}

impl FastState {
    /// Builds the fast model from the current weights; `trainable` are the parameter names
    /// the optimizer updates, `no_decay` decides their group.
    pub fn new(
        cfg: &ClipConfig,
        weights: &Weights,
        trainable: &[String],
        adam: AdamWConfig,
        no_decay: impl Fn(&str, usize) -> bool,
    ) -> Result<Self> {
        let tensors = weights
            .to_tensors()
            .map_err(|e| TrainError::Model(e.to_string()))?;
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|s| s.parse().ok());
        let model = FastClip::new(cfg, &tensors, threads).map_err(err)?;
        let mut segments = Vec::new();
        for name in trainable {
            let r = model.params.range(name).map_err(err)?;
            let rank = model.params.shape(name).map_or(0, |s| s.len());
            segments.push(gclip_fasttrain::optim::Segment {
                range: r,
                decay: !no_decay(name, rank),
            });
        }
        let opt = AdamW::new(adam, model.params.len(), segments);
        Ok(FastState {
            model,
            opt,
            trainable: trainable.to_vec(),
            micro: 0,
        })
    }

    /// Forward and backward of one micro-batch; gradients accumulate until
    /// [`Self::update`]. Returns the loss.
    pub fn micro_step(
        &mut self,
        b: &RawBatch,
        gcl: bool,
        lock_image: bool,
        lock_text: bool,
    ) -> Result<f32> {
        let inputs = StepInputs {
            n: b.n,
            left: b.left.iter().map(field).collect(),
            left_alpha: &b.left_alpha,
            right: b.right.iter().map(field).collect(),
            right_alpha: &b.right_alpha,
            gcl: gcl.then_some(GclTerms {
                weights: &b.weights,
                left_ids: &b.left_ids,
                right_ids: &b.right_ids,
            }),
            lock_image,
            lock_text,
        };
        let loss = self.model.step(&inputs).map_err(err)?;
        self.micro += 1;
        Ok(loss)
    }

    /// The step's worker pool, if it has more than one thread.
    pub fn thread_pool(&self) -> Option<std::sync::Arc<rayon::ThreadPool>> {
        self.model.thread_pool()
    }

    /// Micro-batches accumulated since the last update.
    pub fn micro_count(&self) -> usize {
        self.micro
    }

    /// Averages the accumulated gradients, clips them, takes one AdamW step and clamps the
    /// logit scale. Returns (gradient norm before clipping, exp(logit_scale)).
    pub fn update(&mut self, lr: f64, max_grad_norm: Option<f64>) -> Result<(f64, f32)> {
        if self.micro > 1 {
            let inv = 1.0 / self.micro as f32;
            self.model.grads.iter_mut().for_each(|g| *g *= inv);
        }
        let norm = match max_grad_norm {
            Some(m) => clip_grad_norm(&mut self.model.grads, m),
            None => grad_norm(&self.model.grads),
        };
        let FastClip { params, grads, .. } = &mut self.model;
        self.opt.update(&mut params.data, grads, lr).map_err(err)?;
        clamp_logit_scale(self.model.logit_scale_mut());
        self.model.zero_grads();
        self.micro = 0;
        Ok((norm, self.model.logit_scale().exp()))
    }

    /// Copies the fast model's weights into the candle variables (before evaluating or
    /// saving).
    pub fn sync_to(&self, vars: &[(String, Var)]) -> Result<()> {
        for (name, var) in vars {
            let Ok(vals) = self.model.params.get(name) else {
                continue;
            };
            let t = Tensor::from_slice(vals, var.dims(), &Device::Cpu)?;
            var.set(&t)?;
        }
        Ok(())
    }

    /// Writes the optimizer state in the candle optimizer's format (`m.NAME`, `v.NAME`,
    /// `step`), so a run can resume on either backend.
    pub fn save_optimizer(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for name in &self.trainable {
            let r = self.model.params.range(name).map_err(err)?;
            let shape = self.model.params.shape(name).unwrap_or(&[]).to_vec();
            map.insert(
                format!("m.{name}"),
                Tensor::from_slice(&self.opt.m[r.clone()], shape.clone(), &Device::Cpu)?,
            );
            map.insert(
                format!("v.{name}"),
                Tensor::from_slice(&self.opt.v[r], shape, &Device::Cpu)?,
            );
        }
        map.insert(
            "step".to_string(),
            Tensor::new(&[self.opt.step as u32], &Device::Cpu)?,
        );
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    /// Restores weights from the candle variables and the optimizer state from `path`.
    pub fn load(&mut self, vars: &[(String, Var)], path: &Path) -> Result<()> {
        for (name, var) in vars {
            let Ok(r) = self.model.params.range(name) else {
                continue;
            };
            let vals = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            self.model.params.data[r].copy_from_slice(&vals);
        }
        let map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
        for name in &self.trainable {
            let r = self.model.params.range(name).map_err(err)?;
            for (key, dst) in [("m", &mut self.opt.m), ("v", &mut self.opt.v)] {
                let k = format!("{key}.{name}");
                let t = map.get(&k).ok_or_else(|| {
                    TrainError::Checkpoint(format!(
                        "{}: missing optimizer state {k}",
                        path.display()
                    ))
                })?;
                let vals = t.flatten_all()?.to_vec1::<f32>()?;
                if vals.len() != r.len() {
                    return Err(TrainError::Checkpoint(format!(
                        "optimizer state {k} has {} values, the parameter {}",
                        vals.len(),
                        r.len()
                    )));
                }
                dst[r.clone()].copy_from_slice(&vals);
            }
        }
        let step = map
            .get("step")
            .ok_or_else(|| TrainError::Checkpoint(format!("{}: no `step`", path.display())))?
            .to_vec1::<u32>()?;
        self.opt.step = step.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The trainer's update against PyTorch with accumulation and a locked tower
    //! (`accum_lock` of tests/fixtures/reference/generate_train.py).
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::optim::is_no_decay;
    use crate::trainer::is_trainable;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/train")
    }

    fn f32s(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn i64s(t: &Tensor) -> Vec<i64> {
        t.to_vec1::<i64>().unwrap()
    }

    fn tokens(t: &Tensor) -> Vec<Vec<u32>> {
        t.to_vec2::<i64>()
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().map(|v| v as u32).collect())
            .collect()
    }

    /// ||a - b|| / ||b||.
    fn norm_rel(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let n: f64 = b.iter().map(|v| (*v as f64).powi(2)).sum();
        (d / n.max(1e-30)).sqrt()
    }

    #[test]
    fn accumulated_update_with_a_locked_image_tower_matches_pytorch() {
        let t: BTreeMap<String, Tensor> =
            candle_core::safetensors::load(dir().join("accum_lock.safetensors"), &Device::Cpu)
                .expect("fixture accum_lock.safetensors")
                .into_iter()
                .collect();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir().join("accum_lock.json")).unwrap())
                .unwrap();
        let loaded = gclip_model::load_weights(&dir().join("tiny"), &Default::default()).unwrap();
        let initial = loaded.weights.to_tensors().unwrap();
        let (lock_image, lock_text) = (meta["lock_image"].as_bool().unwrap(), false);
        let trainable: Vec<String> = loaded
            .weights
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| is_trainable(n, lock_image, lock_text))
            .collect();
        assert!(trainable.iter().all(|n| !n.starts_with("visual.")));
        let b = meta["betas"].as_array().unwrap();
        let adam = AdamWConfig {
            beta1: b[0].as_f64().unwrap(),
            beta2: b[1].as_f64().unwrap(),
            eps: meta["eps"].as_f64().unwrap(),
            weight_decay: meta["weight_decay"].as_f64().unwrap(),
        };
        let mut state = FastState::new(
            &loaded.config,
            &loaded.weights,
            &trainable,
            adam,
            is_no_decay,
        )
        .unwrap();
        let steps = meta["accum_steps"].as_u64().unwrap() as usize;
        for s in 0..steps {
            let key = |k: &str| &t[&format!("micro{s}.{k}")];
            let query = tokens(key("query_tokens"));
            let n = query.len();
            let batch = RawBatch {
                n,
                left: vec![RawField::Text(query)],
                left_alpha: vec![1.0; n],
                right: vec![
                    RawField::Image(f32s(key("images"))),
                    RawField::Text(tokens(key("title_tokens"))),
                ],
                right_alpha: f32s(key("right_alpha")),
                weights: f32s(key("weights")),
                left_ids: i64s(key("query_ids"))
                    .into_iter()
                    .map(|v| v as u64)
                    .collect(),
                right_ids: i64s(key("doc_ids")).into_iter().map(|v| v as u64).collect(),
            };
            let loss = state
                .micro_step(&batch, true, lock_image, lock_text)
                .unwrap();
            let want = meta["micro_losses"][s].as_f64().unwrap();
            let e = (loss as f64 - want).abs() / want;
            assert!(e < 1e-5, "micro-batch {s}: loss {loss} vs {want} ({e:e})");
        }
        assert_eq!(state.micro_count(), steps);
        let names: Vec<String> = meta["named"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        // The locked tower gets no gradient; the others the mean over the micro-batches.
        for name in &names {
            let r = state.model.params.range(name).unwrap();
            let g: Vec<f32> = state.model.grads[r]
                .iter()
                .map(|v| v / steps as f32)
                .collect();
            match t.get(&format!("grad.{name}")) {
                Some(want) => {
                    let e = norm_rel(&g, &f32s(want));
                    eprintln!("gradient {name}: {e:.1e}");
                    assert!(e < 2e-5, "gradient of {name}: rel err {e:e}");
                }
                None => assert!(g.iter().all(|&v| v == 0.0), "{name} is locked"),
            }
        }
        let max_norm = meta["max_grad_norm"].as_f64().unwrap();
        let (norm, _) = state
            .update(meta["lr"].as_f64().unwrap(), Some(max_norm))
            .unwrap();
        let want_norm = meta["grad_norm"].as_f64().unwrap();
        let en = (norm - want_norm).abs() / want_norm;
        assert!(en < 3e-6, "grad norm {norm} vs {want_norm}");
        for name in &names {
            let r = state.model.params.range(name).unwrap();
            let now = &state.model.params.data[r];
            if name.starts_with("visual.") {
                // Frozen: no step and no weight decay either.
                assert_eq!(
                    now,
                    initial[name.as_str()].to_f32().as_slice(),
                    "{name} moved"
                );
                continue;
            }
            let e = norm_rel(now, &f32s(&t[&format!("after.{name}")]));
            eprintln!("after {name}: {e:.1e}");
            assert!(e < 1e-5, "{name}: weights after the step, rel err {e:e}");
        }
        assert_eq!(state.micro_count(), 0);
    }
}
