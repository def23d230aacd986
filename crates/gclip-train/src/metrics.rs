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

/// Panels per row of `curves.png`.
pub const CURVES_COLUMNS: u32 = 3;
/// Rows of panels.
pub const CURVES_ROWS: u32 = 2;
/// Width of one panel in pixels.
pub const CURVES_PANEL_WIDTH: u32 = crate::plot::PANEL_W;
/// Height of one panel in pixels.
pub const CURVES_PANEL_HEIGHT: u32 = crate::plot::PANEL_H;
/// Height of the band at the top of each panel that holds its title.
pub const CURVES_TITLE_BAND: u32 = crate::plot::TITLE_BAND;

/// The panel titles of `curves.png`, row by row.
pub const CURVES_TITLES: [&str; 6] = [
    "Training loss",
    "Learning rate",
    "Logit scale",
    "Gradient norm (before clipping)",
    "Throughput",
    "Held-out recall (left to right)",
];

/// Writes `curves.png`: six titled panels with labelled axes and tick values (text in a
/// font shipped with the crate). Row 1: training loss per step with the held-out loss
/// (markers), the learning rate, `exp(logit_scale)`; row 2: the global gradient norm
/// before clipping, pairs/s, held-out recall@1 / @5 on 0..1. A panel without data says
/// why (no steps yet, no `evalData` configured).
pub fn plot_curves(steps: &[StepRecord], evals: &[EvalRecord], path: &Path) -> Result<()> {
    use crate::plot::{draw_panel, PanelSpec, Series, Text, BACKGROUND};
    let blue = Rgb([31, 119, 180]);
    let orange = Rgb([255, 127, 14]);
    let green = Rgb([44, 160, 44]);
    let red = Rgb([214, 39, 40]);
    let purple = Rgb([148, 103, 189]);
    let brown = Rgb([140, 86, 75]);
    let per_step = |f: fn(&StepRecord) -> f64| -> Vec<(f64, f64)> {
        steps.iter().map(|s| (s.step as f64, f(s))).collect()
    };
    let per_eval = |f: fn(&EvalRecord) -> f64| -> Vec<(f64, f64)> {
        evals.iter().map(|e| (e.step as f64, f(e))).collect()
    };
    const NO_STEPS: &str = "no optimizer step logged yet";
    const XL: &str = "optimizer step";
    let line = |label, points, color| Series {
        label,
        points,
        color,
        markers: false,
    };
    let mut loss_series = vec![line("train", per_step(|s| s.loss as f64), blue)];
    if !evals.is_empty() {
        loss_series.push(Series {
            label: "held-out",
            points: per_eval(|e| e.loss as f64),
            color: orange,
            markers: true,
        });
    }
    let panels = [
        PanelSpec {
            title: CURVES_TITLES[0],
            x_label: XL,
            y_label: "loss",
            series: loss_series,
            y_range: None,
            y_from_zero: false,
            empty_message: NO_STEPS,
        },
        PanelSpec {
            title: CURVES_TITLES[1],
            x_label: XL,
            y_label: "learning rate",
            series: vec![line("lr", per_step(|s| s.lr), purple)],
            y_range: None,
            y_from_zero: true,
            empty_message: NO_STEPS,
        },
        PanelSpec {
            title: CURVES_TITLES[2],
            x_label: XL,
            y_label: "exp(logit_scale)",
            series: vec![line("scale", per_step(|s| s.logit_scale as f64), brown)],
            y_range: None,
            y_from_zero: false,
            empty_message: NO_STEPS,
        },
        PanelSpec {
            title: CURVES_TITLES[3],
            x_label: XL,
            y_label: "global L2 norm",
            series: vec![line("norm", per_step(|s| s.grad_norm), red)],
            y_range: None,
            y_from_zero: true,
            empty_message: NO_STEPS,
        },
        PanelSpec {
            title: CURVES_TITLES[4],
            x_label: XL,
            y_label: "pairs / s",
            series: vec![line("pairs/s", per_step(|s| s.samples_per_s), blue)],
            y_range: None,
            y_from_zero: true,
            empty_message: NO_STEPS,
        },
        PanelSpec {
            title: CURVES_TITLES[5],
            x_label: XL,
            y_label: "recall",
            series: if evals.is_empty() {
                Vec::new()
            } else {
                vec![
                    Series {
                        label: "recall@1",
                        points: per_eval(|e| e.recall_at_1 as f64),
                        color: green,
                        markers: true,
                    },
                    Series {
                        label: "recall@5",
                        points: per_eval(|e| e.recall_at_5 as f64),
                        color: red,
                        markers: true,
                    },
                ]
            },
            y_range: Some((0.0, 1.0)),
            y_from_zero: true,
            empty_message: NO_EVAL_MESSAGE,
        },
    ];
    let mut img = RgbImage::from_pixel(
        CURVES_COLUMNS * CURVES_PANEL_WIDTH,
        CURVES_ROWS * CURVES_PANEL_HEIGHT,
        BACKGROUND,
    );
    let text = Text::new();
    for (i, p) in panels.iter().enumerate() {
        let (c, r) = (i as u32 % CURVES_COLUMNS, i as u32 / CURVES_COLUMNS);
        draw_panel(
            &mut img,
            &text,
            (c * CURVES_PANEL_WIDTH, r * CURVES_PANEL_HEIGHT),
            p,
        );
    }
    img.save(path)
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
}

/// What the recall panel says when the run has no held-out data.
pub const NO_EVAL_MESSAGE: &str = "no held-out data: set evalData in the config";

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = CURVES_PANEL_WIDTH;
    const H: u32 = CURVES_PANEL_HEIGHT;

    fn records(n: usize) -> Vec<StepRecord> {
        (1..=n)
            .map(|i| StepRecord {
                step: i,
                epoch: 0,
                loss: 4.0 / (1.0 + i as f32 * 0.1),
                lr: 1e-4 * i as f64 / n as f64,
                grad_norm: 2.0 + (i as f64).sin(),
                logit_scale: 14.3 + i as f32 * 0.01,
                samples_per_s: 300.0 + i as f64,
                skipped_rows: 0,
            })
            .collect()
    }

    fn render(steps: &[StepRecord], evals: &[EvalRecord]) -> RgbImage {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curves.png");
        plot_curves(steps, evals, &p).unwrap();
        image::open(&p).expect("curves.png decodes").to_rgb8()
    }

    /// Pixels in the rectangle that satisfy `f`.
    fn count(
        img: &RgbImage,
        (x0, y0, x1, y1): (u32, u32, u32, u32),
        f: impl Fn(&Rgb<u8>) -> bool,
    ) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                if f(img.get_pixel(x, y)) {
                    n += 1;
                }
            }
        }
        n
    }

    fn dark(p: &Rgb<u8>) -> bool {
        p.0.iter().all(|&c| c < 160)
    }

    fn panel_origin(i: u32) -> (u32, u32) {
        ((i % CURVES_COLUMNS) * W, (i / CURVES_COLUMNS) * H)
    }

    #[test]
    fn curves_have_the_documented_size_and_titled_panels() {
        let evals = vec![
            EvalRecord {
                step: 0,
                recall_at_1: 0.1,
                recall_at_5: 0.3,
                loss: 4.2,
            },
            EvalRecord {
                step: 20,
                recall_at_1: 0.4,
                recall_at_5: 0.7,
                loss: 3.1,
            },
        ];
        let img = render(&records(20), &evals);
        assert_eq!(img.dimensions(), (CURVES_COLUMNS * W, CURVES_ROWS * H));
        for i in 0..CURVES_COLUMNS * CURVES_ROWS {
            let (x, y) = panel_origin(i);
            let title = count(&img, (x, y, x + W, y + CURVES_TITLE_BAND), dark);
            // A title of 10+ glyphs at 17 px covers hundreds of dark pixels.
            assert!(title > 150, "panel {i} title band has {title} dark pixels");
            // Tick labels left of the plot area.
            let yticks = count(&img, (x, y + CURVES_TITLE_BAND, x + 62, y + H - 48), dark);
            assert!(yticks > 40, "panel {i}: y tick labels missing ({yticks})");
            // Tick labels and axis label under the plot area.
            let xticks = count(&img, (x + 70, y + H - 44, x + W, y + H), dark);
            assert!(xticks > 40, "panel {i}: x labels missing ({xticks})");
        }
        // The recall panel holds its green recall@1 line.
        let (x, y) = panel_origin(5);
        let green = count(&img, (x, y, x + W, y + H), |p| p.0 == [44, 160, 44]);
        assert!(green > 20, "recall@1 not drawn ({green})");
        // The loss panel shows the held-out loss markers (orange).
        let (x, y) = panel_origin(0);
        let orange = count(&img, (x, y, x + W, y + H), |p| p.0 == [255, 127, 14]);
        assert!(orange > 20, "held-out loss not drawn ({orange})");
    }

    #[test]
    fn an_empty_panel_says_why() {
        let with = render(
            &records(5),
            &[EvalRecord {
                step: 5,
                recall_at_1: 0.5,
                recall_at_5: 0.9,
                loss: 3.0,
            }],
        );
        let without = render(&records(5), &[]);
        let (x, y) = panel_origin(5);
        // The middle band of the plot area, where the message is written.
        let mid = (x + 75, y + H / 2 - 20, x + W - 20, y + H / 2 + 10);
        let grey =
            |p: &Rgb<u8>| p.0.iter().all(|&c| c < 200) && p.0[0] == p.0[1] && p.0[1] == p.0[2];
        let msg = count(&without, mid, grey);
        assert!(
            msg > 100,
            "no message in the empty recall panel ({msg} grey pixels)"
        );
        let greens = count(&without, (x, y, x + W, y + H), |p| p.0 == [44, 160, 44]);
        assert_eq!(greens, 0, "an empty panel draws no series");
        // With data the same band has no text (the recall lines do not pass through it
        // as a grey run).
        let msg_with = count(&with, mid, grey);
        assert!(
            msg_with < msg / 4,
            "message drawn over data ({msg_with} vs {msg})"
        );
        // No steps at all: every step panel says so, and the file is still written.
        let none = render(&[], &[]);
        for i in 0..5 {
            let (x, y) = panel_origin(i);
            let m = count(
                &none,
                (x + 75, y + H / 2 - 20, x + W - 20, y + H / 2 + 10),
                grey,
            );
            assert!(m > 100, "panel {i}: no 'no step' message ({m})");
        }
    }

    #[test]
    fn tick_values_are_round_and_labels_short() {
        use crate::plot::{tick_label, ticks};
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(0.0, 1e-4, 5);
        assert_eq!(t.len(), 6);
        assert_eq!(tick_label(t[1], t[1] - t[0]), "2e-5");
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(7.5, 2.5), "7.5");
        assert_eq!(tick_label(40.0, 20.0), "40");
        assert_eq!(tick_label(0.0, 0.2), "0");
        let t = ticks(3.2, 4.4, 5);
        assert!(
            t.iter().all(|v| (3.2..=4.4 + 1e-9).contains(v)) && t.len() >= 3,
            "{t:?}"
        );
    }

    #[test]
    fn shipped_font_has_every_printable_ascii_glyph() {
        use ab_glyph::Font;
        let f =
            ab_glyph::FontRef::try_from_slice(include_bytes!("../assets/DejaVuSans-subset.ttf"))
                .unwrap();
        for c in ' '..='~' {
            assert_ne!(f.glyph_id(c).0, 0, "no glyph for {c:?}");
        }
    }
}
