//! A content-addressed embedding cache over any [`FieldEncoder`] (the model boundary, defined
//! in `gclip-vectors` so that the model side implements it without depending on evaluation).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gclip_vectors::{BoxError, Embeddings, FieldEncoder};
use sha2::{Digest, Sha256};

use crate::error::{io_err, EvalError, Result};

/// Checks an encoder batch: `n` rows of finite values.
pub(crate) fn check_batch(n: usize, out: &Embeddings) -> Result<()> {
    if out.len() != n {
        return Err(EvalError::EncoderOutput(format!(
            "{} vectors returned for {n} inputs",
            out.len()
        )));
    }
    out.check_finite()
        .map_err(|e| EvalError::EncoderOutput(e.to_string()))
}

/// A fingerprint of the files holding a model's weights: per file its path, size,
/// modification time (nanoseconds) and a SHA-256 of its first and last 64 KiB. Retraining
/// into the same directory changes the modification time and almost surely the bytes, so
/// a cache keyed by it never serves the old model's embeddings; reading only the ends keeps
/// it cheap for multi-gigabyte checkpoints.
pub fn weights_fingerprint(files: &[PathBuf]) -> Result<String> {
    const EDGE: u64 = 64 * 1024;
    let mut h = Sha256::new();
    let mut files = files.to_vec();
    files.sort();
    for path in &files {
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let name = path.to_string_lossy();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(mtime.to_le_bytes());
        let mut f = File::open(path).map_err(io_err(path))?;
        let mut buf = Vec::new();
        (&mut f)
            .take(EDGE)
            .read_to_end(&mut buf)
            .map_err(io_err(path))?;
        if meta.len() > 2 * EDGE {
            f.seek(SeekFrom::End(-(EDGE as i64)))
                .map_err(io_err(path))?;
            f.read_to_end(&mut buf).map_err(io_err(path))?;
        } else {
            f.read_to_end(&mut buf).map_err(io_err(path))?;
        }
        h.update(&buf);
    }
    Ok(hex(&h.finalize()))
}

/// Hit and miss counters of a [`CachedEncoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Inputs served from the cache.
    pub hits: usize,
    /// Inputs passed to the wrapped encoder.
    pub misses: usize,
}

const MAGIC: &[u8; 8] = b"GCLIPEMB";
const VERSION: u32 = 1;

/// A [`FieldEncoder`] wrapper that stores every embedding on disk under the SHA-256 of
/// (model id, weights fingerprint, field kind, input), the input being the text or the image
/// file's bytes, so re-running an evaluation only encodes what changed, and weights
/// rewritten in place (see [`weights_fingerprint`]) start a fresh cache.
///
/// One append-only file per model id lives in the cache directory: a header holding the
/// model id, then records `key (32 bytes) | dim (u32 LE) | dim x f32 LE`. Only an index
/// (key -> offset) is kept in memory. A record cut short by a crash is dropped on open.
/// Two processes must not append to the same cache file at once.
pub struct CachedEncoder<E> {
    inner: E,
    model_id: String,
    path: PathBuf,
    file: File,
    index: HashMap<[u8; 32], (u64, u32)>,
    end: u64,
    stats: CacheStats,
}

impl<E: FieldEncoder> CachedEncoder<E> {
    /// Opens (or creates) the cache of `inner`'s model in directory `dir`.
    pub fn open(inner: E, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let model_id = format!(
            "{}|weights:{}",
            inner.model_id(),
            weights_fingerprint(&inner.weight_files())?
        );
        let name = hex(&Sha256::digest(model_id.as_bytes()))[..24].to_owned();
        let path = dir.join(format!("{name}.gemb"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let mut index = HashMap::new();
        let end = if len == 0 {
            let mut header = Vec::new();
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&VERSION.to_le_bytes());
            header.extend_from_slice(&(model_id.len() as u32).to_le_bytes());
            header.extend_from_slice(model_id.as_bytes());
            file.write_all(&header).map_err(io_err(&path))?;
            header.len() as u64
        } else {
            scan(&mut file, &path, &model_id, len, &mut index)?
        };
        if end < len {
            // Drop a partial record left by an interrupted run.
            file.set_len(end).map_err(io_err(&path))?;
        }
        Ok(Self {
            inner,
            model_id,
            path,
            file,
            index,
            end,
            stats: CacheStats::default(),
        })
    }

    /// Hit / miss counters since opening.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Path of the cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of embeddings stored.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when nothing is stored yet.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The wrapped encoder.
    pub fn into_inner(self) -> E {
        self.inner
    }

    fn key(&self, kind: &str, input: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        // Length prefixes keep (model, kind, input) boundaries unambiguous.
        h.update((self.model_id.len() as u64).to_le_bytes());
        h.update(self.model_id.as_bytes());
        h.update(kind.as_bytes());
        h.update([0u8]);
        h.update(input);
        h.finalize().into()
    }

    fn read_at(&mut self, offset: u64, dim: u32) -> Result<Vec<f32>> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(io_err(&self.path))?;
        let mut buf = vec![0u8; dim as usize * 4];
        self.file.read_exact(&mut buf).map_err(io_err(&self.path))?;
        Ok(buf
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Serves `keys` from the cache, computing misses with `compute` (called once, on
    /// the distinct missing inputs, in first-occurrence order).
    fn lookup(
        &mut self,
        keys: &[[u8; 32]],
        compute: impl FnOnce(&mut E, &[usize]) -> Result<Embeddings, BoxError>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut missing = Vec::new();
        let mut pending: HashMap<[u8; 32], usize> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if !self.index.contains_key(k) && !pending.contains_key(k) {
                pending.insert(*k, missing.len());
                missing.push(i);
            }
        }
        self.stats.misses += missing.len();
        self.stats.hits += keys.len() - missing.len();
        let fresh = if missing.is_empty() {
            Vec::new()
        } else {
            let out = compute(&mut self.inner, &missing).map_err(EvalError::Encoder)?;
            check_batch(missing.len(), &out)?;
            let out: Vec<Vec<f32>> = out.rows().map(<[f32]>::to_vec).collect();
            self.append(&missing.iter().map(|&i| keys[i]).collect::<Vec<_>>(), &out)?;
            out
        };
        let mut result = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(&j) = pending.get(k) {
                result.push(fresh[j].clone());
            } else {
                let (off, dim) = self.index[k];
                result.push(self.read_at(off, dim)?);
            }
        }
        Ok(result)
    }

    fn append(&mut self, keys: &[[u8; 32]], vecs: &[Vec<f32>]) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(self.end))
            .map_err(io_err(&self.path))?;
        let mut w = BufWriter::new(&mut self.file);
        let mut pos = self.end;
        let mut added = Vec::with_capacity(keys.len());
        for (k, v) in keys.iter().zip(vecs) {
            w.write_all(k).map_err(io_err(&self.path))?;
            w.write_all(&(v.len() as u32).to_le_bytes())
                .map_err(io_err(&self.path))?;
            for x in v {
                w.write_all(&x.to_le_bytes()).map_err(io_err(&self.path))?;
            }
            added.push((*k, (pos + 36, v.len() as u32)));
            pos += 36 + 4 * v.len() as u64;
        }
        w.flush().map_err(io_err(&self.path))?;
        drop(w);
        self.index.extend(added);
        self.end = pos;
        Ok(())
    }
}

/// Reads the header and record index of an existing cache file; returns the offset just
/// past the last complete record.
fn scan(
    file: &mut File,
    path: &Path,
    model_id: &str,
    len: u64,
    index: &mut HashMap<[u8; 32], (u64, u32)>,
) -> Result<u64> {
    let bad = |msg: &str| EvalError::Cache {
        path: path.to_owned(),
        msg: msg.to_owned(),
    };
    let mut r = BufReader::new(file);
    let mut head = [0u8; 16];
    r.read_exact(&mut head)
        .map_err(|_| bad("truncated header; delete the file"))?;
    if &head[..8] != MAGIC || u32::from_le_bytes([head[8], head[9], head[10], head[11]]) != VERSION
    {
        return Err(bad(
            "not a gclip embedding cache of this version; delete the file",
        ));
    }
    let id_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
    let mut id = vec![0u8; id_len];
    r.read_exact(&mut id)
        .map_err(|_| bad("truncated header; delete the file"))?;
    if id != model_id.as_bytes() {
        return Err(bad(
            "written for another model id (hash collision?); delete the file",
        ));
    }
    let mut pos = 16 + id_len as u64;
    let mut rec = [0u8; 36];
    while pos + 36 <= len {
        if r.read_exact(&mut rec).is_err() {
            break;
        }
        let dim = u32::from_le_bytes([rec[32], rec[33], rec[34], rec[35]]);
        let next = pos + 36 + 4 * dim as u64;
        if next > len {
            break;
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&rec[..32]);
        index.insert(key, (pos + 36, dim));
        r.seek_relative(4 * dim as i64)
            .map_err(|e| bad(&e.to_string()))?;
        pos = next;
    }
    Ok(pos)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stacks rows served by the cache into one batch.
fn stack(rows: Vec<Vec<f32>>) -> Result<Embeddings, BoxError> {
    let dim = rows.first().map_or(1, Vec::len);
    Ok(Embeddings::from_rows(dim, &rows)?)
}

impl<E: FieldEncoder> FieldEncoder for CachedEncoder<E> {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError> {
        let keys: Vec<_> = texts
            .iter()
            .map(|t| self.key("text", t.as_bytes()))
            .collect();
        stack(self.lookup(&keys, |enc, miss| {
            let batch: Vec<String> = miss.iter().map(|&i| texts[i].clone()).collect();
            enc.encode_texts(&batch)
        })?)
    }

    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError> {
        let mut keys = Vec::with_capacity(paths.len());
        for p in paths {
            let bytes = std::fs::read(p).map_err(io_err(p))?;
            keys.push(self.key("image", &bytes));
        }
        stack(self.lookup(&keys, |enc, miss| {
            let batch: Vec<PathBuf> = miss.iter().map(|&i| paths[i].clone()).collect();
            enc.encode_images(&batch)
        })?)
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn weight_files(&self) -> Vec<PathBuf> {
        self.inner.weight_files()
    }
}
