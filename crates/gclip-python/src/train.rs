//! Training through the facade, as `gclip train` runs it.

use std::path::PathBuf;

use gclip::train::{Progress, TrainConfig};
use gclip::ImagePipeline;
use pyo3::prelude::*;

use crate::errors::{Failure, Result};

/// Trains from a config file (`path`, JSON or TOML, relative paths against the file) or a
/// config as JSON text (relative paths against the working directory); returns the output
/// directory and the run's summary as JSON.
#[pyfunction]
#[pyo3(signature = (path=None, config=None, progress=true, image_pipeline=None))]
pub fn train(
    py: Python<'_>,
    path: Option<PathBuf>,
    config: Option<String>,
    progress: bool,
    image_pipeline: Option<&str>,
) -> PyResult<(PathBuf, String)> {
    let pipeline = match image_pipeline {
        Some(p) => Some(
            p.parse::<ImagePipeline>()
                .map_err(|e| Failure::invalid(format!("image_pipeline: {e}")))?,
        ),
        None => None,
    };
    Ok(py.detach(|| -> Result<(PathBuf, String)> {
        let cfg = match (&path, &config) {
            (Some(p), _) => TrainConfig::from_file(p)
                .map_err(|e| Failure::from(e).context(format!("reading {}", p.display())))?,
            (None, Some(text)) => serde_json::from_str(text)
                .map_err(|e| Failure::new(crate::errors::Kind::Train, format!("config: {e}")))?,
            (None, None) => TrainConfig::default(),
        };
        let output = cfg.output.clone();
        let mut trainer = gclip::trainer(cfg, pipeline)?;
        let summary = trainer.run(Progress::from_quiet(!progress))?;
        Ok((output, serde_json::to_string(&summary)?))
    })?)
}
