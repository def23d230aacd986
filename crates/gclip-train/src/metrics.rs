//! Run artefacts: the per-step JSONL metrics log and a PNG plot of the curves.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// One optimizer step, as logged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// Optimizer step (1-based).
    pub step: usize,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean loss over the step's micro-batches.
    pub loss: f32,
    /// Learning rate used for the step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// `exp(logit_scale)` after the step.
    pub logit_scale: f32,
    /// Training pairs per second over this step.
    pub samples_per_s: f64,
    /// Rows skipped so far (unreadable images).
    pub skipped_rows: usize,
}

/// Held-out retrieval metrics at some step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalRecord {
    /// Optimizer step at which it was measured (0 = before training).
    pub step: usize,
    /// Left-to-right recall@1 (a hit: a top-k right item that is the row's document
    /// or another document of the same query).
    pub recall_at_1: f32,
    /// Left-to-right recall@5.
    pub recall_at_5: f32,
    /// Mean loss over the held-out batches.
    pub loss: f32,
}

/// Appends JSON lines to `metrics.jsonl` and keeps the curves for the plot.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    /// All step records of this run (and of the resumed part).
    pub steps: Vec<StepRecord>,
    /// All eval records.
    pub evals: Vec<EvalRecord>,
}

impl MetricsLog {
    /// Opens (appending) `dir/metrics.jsonl`, re-reading earlier records when resuming.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let mut steps = Vec::new();
        let mut evals = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Ok(s) = serde_json::from_str::<StepRecord>(line) {
                    steps.push(s);
                } else if let Ok(e) = serde_json::from_str::<EvalRecord>(line) {
                    evals.push(e);
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(MetricsLog {
            path,
            file,
            steps,
            evals,
        })
    }

    /// Forgets records past `step` (a resumed run repeats them).
    pub fn truncate_after(&mut self, step: usize) {
        self.steps.retain(|s| s.step <= step);
        self.evals.retain(|e| e.step <= step);
    }

    fn write_line(&mut self, v: &impl Serialize) -> Result<()> {
        let line = serde_json::to_string(v).map_err(|e| TrainError::Data(e.to_string()))?;
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))
    }

    /// Logs one step.
    pub fn step(&mut self, r: StepRecord) -> Result<()> {
        self.write_line(&r)?;
        self.steps.push(r);
        Ok(())
    }

    /// Logs one evaluation.
    pub fn eval(&mut self, r: EvalRecord) -> Result<()> {
        self.write_line(&r)?;
        self.evals.push(r);
        Ok(())
    }

    /// Draws `curves.png` in `dir` (see [`plot_curves`]).
    pub fn plot(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("curves.png");
        plot_curves(&self.steps, &self.evals, &path)?;
        Ok(path)
    }
}

/// A polyline of (x, y) points and its colour.
type Series = (Vec<(f32, f32)>, Rgb<u8>);

const W: u32 = 640;
const H: u32 = 240;
const PAD: u32 = 16;

fn line(img: &mut RgbImage, (x0, y0): (f32, f32), (x1, y1): (f32, f32), c: Rgb<u8>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f32 / n as f32;
        let x = (x0 + t * (x1 - x0)).round();
        let y = (y0 + t * (y1 - y0)).round();
        for (dx, dy) in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)] {
            let (px, py) = (x + dx, y + dy);
            if px >= 0.0 && py >= 0.0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
    }
}

/// Plots `(x, y)` series into the panel whose top edge is `top`, each scaled
/// to the panel (x shared across series, y per `range`).
fn panel(img: &mut RgbImage, top: u32, series: &[Series], xmax: f32, yrange: (f32, f32)) {
    let grey = Rgb([220, 220, 220]);
    let (x0, x1) = (PAD as f32, (W - PAD) as f32);
    let (y0, y1) = ((top + PAD) as f32, (top + H - PAD) as f32);
    for g in 0..=4 {
        let y = y0 + (y1 - y0) * g as f32 / 4.0;
        line(img, (x0, y), (x1, y), grey);
    }
    line(img, (x0, y0), (x0, y1), Rgb([0, 0, 0]));
    line(img, (x0, y1), (x1, y1), Rgb([0, 0, 0]));
    let (lo, hi) = yrange;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let map = |(x, y): (f32, f32)| {
        (
            x0 + (x1 - x0) * if xmax > 0.0 { x / xmax } else { 0.0 },
            y1 - (y1 - y0) * ((y - lo) / span),
        )
    };
    for (pts, c) in series {
        for w in pts.windows(2) {
            line(img, map(w[0]), map(w[1]), *c);
        }
        if pts.len() == 1 {
            let p = map(pts[0]);
            line(img, (p.0 - 2.0, p.1), (p.0 + 2.0, p.1), *c);
        }
    }
}

/// Writes a two-panel PNG: top, training loss per step (blue) with its
/// eval loss (orange dots joined); bottom, held-out recall@1 (green) and
/// recall@5 (red) on a 0..1 scale. No text is drawn (no font dependency);
/// the numbers are in `metrics.jsonl`.
pub fn plot_curves(steps: &[StepRecord], evals: &[EvalRecord], path: &Path) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, 2 * H, Rgb([255, 255, 255]));
    let xmax = steps
        .iter()
        .map(|s| s.step)
        .chain(evals.iter().map(|e| e.step))
        .max()
        .unwrap_or(1) as f32;
    let loss: Vec<(f32, f32)> = steps.iter().map(|s| (s.step as f32, s.loss)).collect();
    let eval_loss: Vec<(f32, f32)> = evals.iter().map(|e| (e.step as f32, e.loss)).collect();
    let all = loss
        .iter()
        .chain(&eval_loss)
        .map(|p| p.1)
        .filter(|v| v.is_finite());
    let (lo, hi) = all.fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let yr = if lo <= hi {
        (lo.min(0.0), hi)
    } else {
        (0.0, 1.0)
    };
    panel(
        &mut img,
        0,
        &[
            (loss, Rgb([31, 119, 180])),
            (eval_loss, Rgb([255, 127, 14])),
        ],
        xmax,
        yr,
    );
    let r1: Vec<(f32, f32)> = evals
        .iter()
        .map(|e| (e.step as f32, e.recall_at_1))
        .collect();
    let r5: Vec<(f32, f32)> = evals
        .iter()
        .map(|e| (e.step as f32, e.recall_at_5))
        .collect();
    panel(
        &mut img,
        H,
        &[(r1, Rgb([44, 160, 44])), (r5, Rgb([214, 39, 40]))],
        xmax,
        (0.0, 1.0),
    );
    img.save(path)
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
}
