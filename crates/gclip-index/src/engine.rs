//! The engine: a data directory holding named indexes, each in its own folder
//! (`<data dir>/indexes/<name>/index.redb` plus the derived `ann.bin`).

use crate::embedder::Embedder;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::settings::IndexSettings;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable that overrides the default data directory.
pub const DATA_DIR_ENV: &str = "GCLIP_DATA_DIR";

/// `$GCLIP_DATA_DIR`, else `$XDG_DATA_HOME/gclip`, else `~/.local/share/gclip`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("gclip");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/gclip")
}

/// Checks Marqo's index name rule: `[a-zA-Z_-][a-zA-Z0-9_-]*`.
pub fn validate_index_name(name: &str) -> Result<()> {
    let mut c = name.chars();
    let ok = c
        .next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == '-')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '-')
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidIndexName(name.to_string()))
    }
}

pub struct Engine {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<Index>>>,
}

impl Engine {
    /// Opens (creating if needed) a data directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let idx = dir.join("indexes");
        std::fs::create_dir_all(&idx).map_err(|e| Error::io(&idx, e))?;
        Ok(Self {
            dir,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn index_dir(&self, name: &str) -> PathBuf {
        self.dir.join("indexes").join(name)
    }

    /// Creates an index pinned to `embedder`'s model.
    pub fn create_index(
        &self,
        name: &str,
        settings: IndexSettings,
        embedder: Arc<dyn Embedder>,
    ) -> Result<Arc<Index>> {
        let (id, dim) = (embedder.model_id(), embedder.dim());
        self.create_index_for(name, settings, &id, dim, Some(embedder))
    }

    /// Creates an index pinned to a model identity and dimension (for indexes that only hold
    /// custom vectors, or when the model is attached later).
    pub fn create_index_for(
        &self,
        name: &str,
        settings: IndexSettings,
        model_id: &str,
        dim: usize,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Arc<Index>> {
        validate_index_name(name)?;
        let mut open = self.open.lock();
        let dir = self.index_dir(name);
        if dir.join("index.redb").exists() {
            return Err(Error::IndexAlreadyExists(name.to_string()));
        }
        let ix = Arc::new(Index::create(
            name, &dir, settings, model_id, dim, embedder,
        )?);
        open.insert(name.to_string(), ix.clone());
        Ok(ix)
    }

    /// Opens an index (once per process; later calls share it). With an embedder, its model
    /// must be the one the index was created with.
    pub fn index(&self, name: &str, embedder: Option<Arc<dyn Embedder>>) -> Result<Arc<Index>> {
        validate_index_name(name).map_err(|_| Error::IndexNotFound(name.to_string()))?;
        let mut open = self.open.lock();
        if let Some(ix) = open.get(name) {
            if let Some(e) = embedder {
                ix.set_embedder(e)?;
            }
            return Ok(ix.clone());
        }
        let ix = Arc::new(Index::open(name, &self.index_dir(name), embedder)?);
        open.insert(name.to_string(), ix.clone());
        Ok(ix)
    }

    /// Names of every index in the data directory, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let d = self.dir.join("indexes");
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("index.redb").exists())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes an index and its files. Handles to it held elsewhere keep working on their
    /// open files until dropped.
    pub fn drop_index(&self, name: &str) -> Result<()> {
        validate_index_name(name).map_err(|_| Error::IndexNotFound(name.to_string()))?;
        let mut open = self.open.lock();
        let dir = self.index_dir(name);
        if !dir.join("index.redb").exists() {
            return Err(Error::IndexNotFound(name.to_string()));
        }
        open.remove(name);
        // Remove the truth first, so a crash half-way leaves no index that looks valid.
        let db = dir.join("index.redb");
        std::fs::remove_file(&db).map_err(|e| Error::io(&db, e))?;
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(())
    }

    /// Writes every open index's graph to disk.
    pub fn checkpoint_all(&self) -> Result<()> {
        let open: Vec<Arc<Index>> = self.open.lock().values().cloned().collect();
        open.iter().try_for_each(|i| i.checkpoint())
    }
}
