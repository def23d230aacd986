//! The native `Index`: one index of a gclip data directory (the directory `gclip index
//! --data-dir` uses), documents and replies passed as Marqo's JSON.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use gclip::index::{
    AddDocuments, BatchResponse, Embedder, Engine, Index, IndexSettings, Mapping, Query,
    SearchMethod, SearchRequest,
};
use gclip::progress::Progress;
use gclip::{Clip, ModelSource};
use pyo3::prelude::*;
use serde_json::Value;

use crate::errors::{Failure, Result};
use crate::model::PyModel;

/// One engine per data directory and process while any handle uses it: an index's database
/// is opened once (a second open would fail on its lock), and dropping or closing the last
/// handle closes it, so another process can open it.
fn engine(dir: &Path) -> Result<Arc<Engine>> {
    static ENGINES: OnceLock<Mutex<HashMap<PathBuf, Weak<Engine>>>> = OnceLock::new();
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::invalid(format!("{}: {e}", dir.display())))?;
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut map = ENGINES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.retain(|_, e| e.strong_count() > 0);
    if let Some(e) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(e);
    }
    let e = Arc::new(Engine::open(&key).map_err(|e| {
        Failure::from(e).context(format!("opening data directory {}", dir.display()))
    })?);
    map.insert(key, Arc::downgrade(&e));
    Ok(e)
}

/// A search index (native half of `gclip.Index`).
#[pyclass(frozen, name = "Index", module = "gclip._gclip")]
pub struct PyIndex {
    /// `None` once closed. The engine is held so the database stays open while handles live.
    handle: RwLock<Option<(Arc<Engine>, Arc<Index>)>>,
    name: String,
    data_dir: PathBuf,
    /// Whether a model is attached (text and image queries and tensor fields need one).
    attached: AtomicBool,
}

impl PyIndex {
    fn new(engine: Arc<Engine>, index: Arc<Index>, data_dir: PathBuf, attached: bool) -> Self {
        Self {
            name: index.name().to_owned(),
            handle: RwLock::new(Some((engine, index))),
            data_dir,
            attached: AtomicBool::new(attached),
        }
    }

    fn ix(&self) -> Result<Arc<Index>> {
        let h = self.handle.read().unwrap_or_else(|p| p.into_inner());
        match &*h {
            Some((_, ix)) => Ok(ix.clone()),
            None => Err(Failure::invalid(format!("index `{}` is closed", self.name))),
        }
    }

    /// Attaches `$GCLIP_MODEL` or the embedded default model when the index was created with
    /// it; otherwise says how to attach the right one.
    fn ensure_model(&self) -> Result<()> {
        if self.attached.load(Ordering::Acquire) {
            return Ok(());
        }
        let ix = self.ix()?;
        let source = ModelSource::resolve(None);
        let clip = Clip::load(&source).map_err(|e| {
            Failure::from(e).context(format!("loading model {}", source.describe()))
        })?;
        if Embedder::model_id(&clip) != ix.model_id() {
            return Err(Failure::invalid(format!(
                "index `{}` was created with model {} (dim {}), which is not {}: open it with \
                 gclip.Index.open(path, model=gclip.load(PATH))",
                ix.name(),
                ix.model_id(),
                ix.dim(),
                source.describe()
            )));
        }
        ix.set_embedder(Arc::new(clip))?;
        self.attached.store(true, Ordering::Release);
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

#[pymethods]
impl PyIndex {
    /// Creates index `name` in `data_dir`, pinned to `model`.
    #[staticmethod]
    #[pyo3(signature = (data_dir, name, model, settings=None))]
    fn create(
        py: Python<'_>,
        data_dir: PathBuf,
        name: String,
        model: PyRef<'_, PyModel>,
        settings: Option<String>,
    ) -> PyResult<Self> {
        let clip = model.clip.clone();
        let (engine, index) = py.detach(|| -> Result<(Arc<Engine>, Arc<Index>)> {
            let settings = match settings {
                Some(s) => IndexSettings::from_json(&serde_json::from_str(&s)?)?,
                None => IndexSettings::default(),
            };
            let e = engine(&data_dir)?;
            let ix = e.create_index(&name, settings, clip)?;
            Ok((e, ix))
        })?;
        Ok(Self::new(engine, index, data_dir, true))
    }

    /// Opens index `name` of `data_dir`; with `model`, that model must be the index's.
    #[staticmethod]
    #[pyo3(signature = (data_dir, name, model=None))]
    fn open(
        py: Python<'_>,
        data_dir: PathBuf,
        name: String,
        model: Option<PyRef<'_, PyModel>>,
    ) -> PyResult<Self> {
        let clip = model.map(|m| m.clip.clone());
        let attached = clip.is_some();
        let (engine, index) = py.detach(|| -> Result<(Arc<Engine>, Arc<Index>)> {
            let e = engine(&data_dir)?;
            let ix = e.index(&name, clip.map(|c| c as Arc<dyn Embedder>))?;
            Ok((e, ix))
        })?;
        Ok(Self::new(engine, index, data_dir, attached))
    }

    /// Attaches `model` (it must be the one the index was created with).
    fn attach(&self, py: Python<'_>, model: PyRef<'_, PyModel>) -> PyResult<()> {
        let clip = model.clip.clone();
        let ix = self.ix()?;
        py.detach(|| ix.set_embedder(clip)).map_err(Failure::from)?;
        self.attached.store(true, Ordering::Release);
        Ok(())
    }

    /// Adds documents (JSON list) in batches; returns the merged batch reply as JSON.
    #[pyo3(signature = (documents, tensor_fields, mappings=None, batch_size=64, progress=false))]
    fn add(
        &self,
        py: Python<'_>,
        documents: String,
        tensor_fields: Vec<String>,
        mappings: Option<String>,
        batch_size: usize,
        progress: bool,
    ) -> PyResult<String> {
        Ok(py.detach(|| -> Result<String> {
            let ix = self.ix()?;
            let docs: Vec<Value> = serde_json::from_str(&documents)?;
            let mappings: BTreeMap<String, Mapping> = match mappings {
                Some(m) => serde_json::from_str(&m)
                    .map_err(|e| Failure::invalid(format!("mappings: {e}")))?,
                None => BTreeMap::new(),
            };
            // A model is needed unless every field is a custom vector; when none can be
            // attached, the index itself reports what is missing, per document.
            let _ = self.ensure_model();
            let bar = Progress::from_quiet(!progress).bar(docs.len() as u64, "indexing");
            let mut merged = BatchResponse {
                errors: false,
                items: Vec::with_capacity(docs.len()),
                processing_time_ms: 0.0,
            };
            for chunk in docs.chunks(batch_size.max(1)) {
                let r = ix.add_documents(&AddDocuments {
                    documents: chunk.to_vec(),
                    tensor_fields: tensor_fields.clone(),
                    mappings: mappings.clone(),
                    ..Default::default()
                })?;
                merged.errors |= r.errors;
                merged.items.extend(r.items);
                merged.processing_time_ms += r.processing_time_ms;
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            ix.checkpoint()?;
            to_json(&merged)
        })?)
    }

    /// Partial updates (JSON list of objects with `_id`); returns the batch reply as JSON.
    fn update(&self, py: Python<'_>, documents: String) -> PyResult<String> {
        Ok(py.detach(|| -> Result<String> {
            let ix = self.ix()?;
            let docs: Vec<Value> = serde_json::from_str(&documents)?;
            let _ = self.ensure_model();
            let r = ix.update_documents(&docs)?;
            ix.checkpoint()?;
            to_json(&r)
        })?)
    }

    /// Runs a Marqo search body (JSON); returns the reply as JSON.
    fn search(&self, py: Python<'_>, request: String) -> PyResult<String> {
        Ok(py.detach(|| -> Result<String> {
            let ix = self.ix()?;
            let req: SearchRequest = serde_json::from_str(&request)
                .map_err(|e| Failure::invalid(format!("search request: {e}")))?;
            let needs_model = req.search_method != SearchMethod::Lexical
                && !matches!(req.q, Some(Query::Vector(_)) | None);
            if needs_model {
                self.ensure_model()?;
            }
            to_json(&ix.search(&req)?)
        })?)
    }

    /// One document as JSON; an unknown id raises.
    #[pyo3(signature = (id, facets=false))]
    fn get(&self, py: Python<'_>, id: String, facets: bool) -> PyResult<String> {
        Ok(py.detach(|| -> Result<String> {
            let ix = self.ix()?;
            to_json(&ix.get_document(&id, facets)?)
        })?)
    }

    /// Documents as JSON, each with `_found`.
    #[pyo3(signature = (ids, facets=false))]
    fn get_many(&self, py: Python<'_>, ids: Vec<String>, facets: bool) -> PyResult<String> {
        let ix = self.ix()?;
        Ok(py.detach(|| to_json(&ix.get_documents(&ids, facets)))?)
    }

    /// Deletes documents by id; returns the batch reply as JSON.
    fn delete(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<String> {
        Ok(py.detach(|| -> Result<String> {
            let ix = self.ix()?;
            let r = ix.delete_documents(&ids)?;
            to_json(&r)
        })?)
    }

    /// Deletes every document matching a filter; returns how many.
    fn delete_by_filter(&self, py: Python<'_>, filter: String) -> PyResult<usize> {
        Ok(py.detach(|| -> Result<usize> { Ok(self.ix()?.delete_by_filter(&filter)?) })?)
    }

    /// Statistics as JSON.
    fn stats(&self, py: Python<'_>) -> PyResult<String> {
        Ok(py.detach(|| -> Result<String> { to_json(&self.ix()?.stats()?) })?)
    }

    /// Ids of every document.
    fn document_ids(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let ix = self.ix()?;
        Ok(py.detach(|| ix.document_ids()))
    }

    /// Writes the graph and lets go of the index; the database closes when no other handle
    /// in this process uses its data directory.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .handle
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((engine, ix)) = taken {
            py.detach(|| -> Result<()> {
                ix.checkpoint()?;
                drop(ix);
                drop(engine);
                Ok(())
            })?;
        }
        Ok(())
    }

    #[getter]
    fn closed(&self) -> bool {
        self.handle
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Writes the graph to disk (adds do it themselves; for shutdown paths).
    fn checkpoint(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.detach(|| -> Result<()> { Ok(self.ix()?.checkpoint()?) })?)
    }

    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    #[getter]
    fn dir(&self) -> PyResult<PathBuf> {
        Ok(self.ix()?.dir().to_path_buf())
    }

    #[getter]
    fn model_id(&self) -> PyResult<String> {
        Ok(self.ix()?.model_id().to_owned())
    }

    #[getter]
    fn dim(&self) -> PyResult<usize> {
        Ok(self.ix()?.dim())
    }

    /// Settings as JSON (Marqo's camelCase).
    #[getter]
    fn settings(&self) -> PyResult<String> {
        Ok(to_json(self.ix()?.settings())?)
    }
}

/// Names of the indexes in a data directory.
#[pyfunction]
pub fn list_indexes(py: Python<'_>, data_dir: PathBuf) -> PyResult<Vec<String>> {
    Ok(py.detach(|| -> Result<Vec<String>> { Ok(engine(&data_dir)?.list()?) })?)
}

/// Deletes an index and its files.
#[pyfunction]
pub fn drop_index(py: Python<'_>, data_dir: PathBuf, name: String) -> PyResult<()> {
    Ok(py.detach(|| -> Result<()> { Ok(engine(&data_dir)?.drop_index(&name)?) })?)
}
