//! The native `Model`: a loaded [`Clip`] shared with indexes, every heavy call run with the
//! GIL released.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use gclip::{Backend, Clip, Embeddings, ImagePipeline, ModelSource, Precision, RuntimeOptions};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray4};
use numpy::{PyArray4, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::errors::{Failure, Result};
use crate::images::{self, ImageItem};

/// Items per forward pass unless `load(batch_size=...)` says otherwise (the facade's default).
const DEFAULT_BATCH: usize = 16;

/// A CLIP model with its tokenizer and image preprocessing (native half of `gclip.Model`).
#[pyclass(frozen, name = "Model", module = "gclip._gclip")]
pub struct PyModel {
    pub clip: Arc<Clip>,
    batch: usize,
}

/// `rows x cols` float32 numpy array owning `data` (no copy).
pub fn matrix<'py>(
    py: Python<'py>,
    data: Vec<f32>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    PyArray1::from_vec(py, data).reshape([rows, cols])
}

/// A float32 matrix as [`Embeddings`] (copied; rows must have a positive width).
pub fn embeddings(a: &PyReadonlyArray2<'_, f32>, what: &str) -> Result<Embeddings> {
    let [rows, dim] = [a.shape()[0], a.shape()[1]];
    if dim == 0 {
        return Err(Failure::invalid(format!(
            "{what}: rows of width 0 (shape [{rows}, 0])"
        )));
    }
    let data = match a.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    };
    Ok(Embeddings::new(dim, data)?)
}

/// Loads a model (native half of `gclip.load`).
#[pyfunction]
#[pyo3(signature = (path=None, precision="fp32", threads=None, arch=None, reference=false, image_pipeline=None, batch_size=None))]
#[allow(clippy::too_many_arguments)]
pub fn load(
    py: Python<'_>,
    path: Option<PathBuf>,
    precision: &str,
    threads: Option<usize>,
    arch: Option<String>,
    reference: bool,
    image_pipeline: Option<&str>,
    batch_size: Option<usize>,
) -> PyResult<PyModel> {
    let precision = match precision.to_ascii_lowercase().as_str() {
        "fp32" | "float32" => Precision::Fp32,
        "int8" => Precision::Int8,
        other => {
            return Err(Failure::invalid(format!(
                "precision must be \"fp32\" or \"int8\", got {other:?}"
            ))
            .into())
        }
    };
    if threads == Some(0) {
        return Err(Failure::invalid("threads must be at least 1").into());
    }
    if batch_size == Some(0) {
        return Err(Failure::invalid("batch_size must be at least 1").into());
    }
    let image_pipeline = match image_pipeline {
        Some(p) => Some(
            p.parse::<ImagePipeline>()
                .map_err(|e| Failure::invalid(format!("image_pipeline: {e}")))?,
        ),
        None => None,
    };
    let source = ModelSource::resolve_with_arch(path.as_deref(), arch.as_deref());
    let runtime = RuntimeOptions {
        backend: if reference {
            Backend::Candle
        } else {
            Backend::Engine
        },
        precision,
        threads,
        image_pipeline,
    };
    let batch = batch_size.unwrap_or(DEFAULT_BATCH);
    let clip = py.detach(|| -> Result<Clip> {
        // Image decoding runs on rayon's global pool: size it like the engine (first call).
        runtime.configure_global_threads()?;
        let mut clip = Clip::load_with(&source, &runtime).map_err(|e| {
            Failure::from(e).context(format!("loading model {}", source.describe()))
        })?;
        clip.set_batch_size(batch);
        Ok(clip)
    })?;
    Ok(PyModel {
        clip: Arc::new(clip),
        batch,
    })
}

fn items(
    list: &Bound<'_, PyList>,
    labels: Option<Vec<Option<String>>>,
) -> PyResult<Vec<ImageItem>> {
    let mut labels = labels.unwrap_or_default().into_iter();
    list.iter()
        .enumerate()
        .map(|(i, obj)| ImageItem::extract(&obj, i, labels.next().flatten()))
        .collect()
}

#[pymethods]
impl PyModel {
    /// Text embeddings `[n, dim]` float32, unit rows when `normalize`.
    #[pyo3(signature = (texts, normalize=true))]
    fn embed_texts<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let clip = &self.clip;
        let n = texts.len();
        let data = py.detach(|| -> Result<Vec<f32>> {
            Ok(clip.embed_texts(&texts, normalize)?.into_vec())
        })?;
        matrix(py, data, n, clip.dim())
    }

    /// Image embeddings `[n, dim]`: each item a path (`str`), encoded `bytes` or a `uint8`
    /// `(H, W, 3)` array; `labels` name non-path items in error messages.
    #[pyo3(signature = (images, normalize=true, labels=None))]
    fn embed_images<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyList>,
        normalize: bool,
        labels: Option<Vec<Option<String>>>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let items = items(images, labels)?;
        let (clip, batch) = (&self.clip, self.batch);
        let data = py.detach(|| images::embed(clip, &items, normalize, batch))?;
        matrix(py, data, items.len(), clip.dim())
    }

    /// Preprocessed pixels `[n, 3, H, W]` float32, as the model sees them.
    #[pyo3(signature = (images, labels=None))]
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyList>,
        labels: Option<Vec<Option<String>>>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let items = items(images, labels)?;
        let clip = &self.clip;
        let data = py.detach(|| images::preprocess(clip, &items))?;
        let (h, w) = clip.preprocessor().config().image_size;
        PyArray1::from_vec(py, data).reshape([items.len(), 3, h, w])
    }

    /// Embeddings of preprocessed pixels `[n, 3, S, S]` float32.
    #[pyo3(signature = (pixels, normalize=true))]
    fn embed_pixels<'py>(
        &self,
        py: Python<'py>,
        pixels: PyReadonlyArray4<'py, f32>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let shape = pixels.shape().to_vec();
        let s = self.clip.config().vision.image_size;
        if shape[1..] != [3, s, s] {
            return Err(Failure::invalid(format!(
                "pixels must have shape (n, 3, {s}, {s}) for this model, got {shape:?}"
            ))
            .into());
        }
        let data: Vec<f32> = match pixels.as_slice() {
            Ok(v) => v.to_vec(),
            Err(_) => pixels.as_array().iter().copied().collect(),
        };
        let clip = &self.clip;
        let out = py.detach(|| -> Result<Vec<f32>> {
            Ok(clip.embed_pixels(&data, normalize)?.into_vec())
        })?;
        matrix(py, out, shape[0], clip.dim())
    }

    /// Token ids `[n, context_length]` (int64; start, BPE, end, zero padding).
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let clip = &self.clip;
        let ctx = clip.config().text.context_length;
        let ids = py.detach(|| clip.tokenizer().tokenize_batch(&texts, ctx));
        let flat: Vec<i64> = ids.iter().flatten().map(|&t| i64::from(t)).collect();
        PyArray1::from_vec(py, flat).reshape([texts.len(), ctx])
    }

    /// Embeddings of token id rows `[n, L]` (L at most the context length; zero padding).
    #[pyo3(signature = (ids, normalize=true))]
    fn embed_tokens<'py>(
        &self,
        py: Python<'py>,
        ids: PyReadonlyArray2<'py, i64>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let cfg = &self.clip.config().text;
        let (n, len) = (ids.shape()[0], ids.shape()[1]);
        if len > cfg.context_length {
            return Err(Failure::invalid(format!(
                "{len} tokens exceed the model's context length {}",
                cfg.context_length
            ))
            .into());
        }
        let arr = ids.as_array();
        let mut rows = Vec::with_capacity(n);
        for row in arr.rows() {
            let mut r = Vec::with_capacity(len);
            for &t in row {
                if t < 0 || t as u64 >= cfg.vocab_size as u64 {
                    return Err(Failure::invalid(format!(
                        "token id {t} is outside the vocabulary (0..{})",
                        cfg.vocab_size
                    ))
                    .into());
                }
                r.push(t as u32);
            }
            rows.push(r);
        }
        let clip = &self.clip;
        let out = py.detach(|| -> Result<Vec<f32>> {
            Ok(clip.embed_token_ids(&rows, normalize)?.into_vec())
        })?;
        matrix(py, out, n, clip.dim())
    }

    /// Zero-shot probabilities `[n_images, n_labels]` (labels in the given order) for image
    /// embeddings; `templates` are prompt templates with `{}`; `scale` overrides the model's
    /// logit scale.
    #[pyo3(signature = (image_embeddings, labels, templates=Vec::new(), scale=None))]
    fn zero_shot<'py>(
        &self,
        py: Python<'py>,
        image_embeddings: PyReadonlyArray2<'py, f32>,
        labels: Vec<String>,
        templates: Vec<String>,
        scale: Option<f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let images = embeddings(&image_embeddings, "image embeddings")?;
        let clip = &self.clip;
        let n_labels = labels.len();
        let probs = py.detach(|| -> Result<Vec<f32>> {
            let zs = gclip::ZeroShotClassifier::new(clip, &labels, &templates, scale)?;
            let preds = zs.classify(&images, n_labels)?;
            let mut out = Vec::with_capacity(preds.len() * n_labels);
            for row in preds {
                // Equal labels have equal probabilities, so the label text is a safe key.
                let by_label: HashMap<&str, f32> = row
                    .iter()
                    .map(|p| (p.label.as_str(), p.probability))
                    .collect();
                out.extend(labels.iter().map(|l| by_label[l.as_str()]));
            }
            Ok(out)
        })?;
        matrix(py, probs, images.len(), n_labels)
    }

    /// `exp(logit_scale)`: the factor applied to cosine similarities before a softmax.
    #[getter]
    fn logit_scale(&self) -> PyResult<f32> {
        Ok(self.clip.logit_scale().map_err(Failure::from)?)
    }

    #[getter]
    fn dim(&self) -> usize {
        self.clip.dim()
    }

    #[getter]
    fn image_size(&self) -> usize {
        self.clip.config().vision.image_size
    }

    #[getter]
    fn context_length(&self) -> usize {
        self.clip.config().text.context_length
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.clip.config().text.vocab_size
    }

    #[getter]
    fn batch_size(&self) -> usize {
        self.batch
    }

    /// Where the model was loaded from.
    #[getter]
    fn source(&self) -> String {
        self.clip.source().to_owned()
    }

    /// The identity an index pins (architecture, pipeline and a hash of the weights).
    #[getter]
    fn model_id(&self) -> String {
        gclip::index::Embedder::model_id(&*self.clip)
    }

    #[getter]
    fn ecosystem(&self) -> String {
        self.clip.ecosystem().to_string()
    }

    #[getter]
    fn image_pipeline(&self) -> String {
        self.clip.image_pipeline().to_string()
    }

    #[getter]
    fn precision(&self) -> &'static str {
        match self.clip.runtime().1 {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    #[getter]
    fn backend(&self) -> &'static str {
        match self.clip.runtime().0 {
            Backend::Engine => "engine",
            Backend::Candle => "reference",
        }
    }
}

/// Cosine similarity matrix `[len(a), len(b)]` of two float32 matrices (gclip's arithmetic,
/// as `gclip similarity` computes it).
#[pyfunction]
pub fn cosine_matrix<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, f32>,
    b: PyReadonlyArray2<'py, f32>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (a, b) = (embeddings(&a, "a")?, embeddings(&b, "b")?);
    let m = py.detach(|| gclip::cosine_matrix(&a, &b).map_err(Failure::from))?;
    matrix(py, m.concat(), a.len(), b.len())
}

/// Row-wise softmax of `scale * m`.
#[pyfunction]
pub fn softmax_rows<'py>(
    py: Python<'py>,
    m: PyReadonlyArray2<'py, f32>,
    scale: f32,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (rows, cols) = (m.shape()[0], m.shape()[1]);
    let arr = m.as_array();
    let rows_v: Vec<Vec<f32>> = arr.rows().into_iter().map(|r| r.to_vec()).collect();
    let p = gclip::softmax_rows(&rows_v, scale);
    matrix(py, p.concat(), rows, cols)
}

/// OpenAI's 80 ImageNet prompt templates.
#[pyfunction]
pub fn imagenet_templates() -> Vec<String> {
    gclip::imagenet_templates()
}
