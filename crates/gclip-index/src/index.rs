//! One index: its redb file (the source of truth), and the derived in-memory state (vectors,
//! HNSW graph) and the tantivy text index (`text/`) that serve searches.
//!
//! Write path: validate -> embed (outside any state lock) -> one redb transaction (durable on
//! commit: that is the acknowledgement) -> swap the documents into the in-memory state under a
//! short write lock -> link the new vectors into the graph under a read lock, so searches keep
//! running. Writers are serialised by one mutex. A document becomes visible in one step, never
//! half. The graph is checkpointed to `ann.bin` with the number of vectors it covers; on open,
//! vectors past that number are linked again (a crash never loses an acknowledged write).

use crate::chunk;
use crate::embedder::{Embedder, ImageInput};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::hnsw::{Cand, Hnsw};
use crate::lexical::{LexicalQuery, TextIndex, TextOp};
use crate::settings::{IndexSettings, SpaceType};
use crate::space;
use crate::types::*;
use crate::vectors::{Metric, VectorData};
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The on-disk layout this build reads and writes.
pub const LAYOUT_VERSION: u32 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("docs");
const VECTORS: TableDefinition<u64, &[u8]> = TableDefinition::new("vectors");

const DEAD: u32 = u32::MAX;
/// The float32 rows' scratch file of float16 / int8 indexes (see [`VectorData::spilled`]).
const ROWS_FILE: &str = "rows.f32";
const GRAPH_MAGIC: &[u8; 8] = b"GCLIPANN";
/// Fields whose names start with this are reserved (as in Marqo).
const RESERVED: [&str; 5] = ["_id", "_tensor_facets", "_highlights", "_score", "_found"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TensorKind {
    Text,
    Image,
    Combination { weights: BTreeMap<String, f32> },
    Custom,
}

/// A tensor field of a stored document: its content key (to detect unchanged content), the
/// chunk texts (highlights) and their vector ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TensorRec {
    key: String,
    #[serde(flatten)]
    kind: TensorKind,
    chunks: Vec<String>,
    vids: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DocRecord {
    fields: Map<String, Value>,
    tensor: BTreeMap<String, TensorRec>,
}

struct DocState {
    id: String,
    rec: DocRecord,
}

#[derive(Clone, Copy)]
struct VidInfo {
    doc: u32,
    field: u32,
    chunk: u32,
}

struct State {
    ids: HashMap<String, u32>,
    docs: Vec<Option<DocState>>,
    vids: Vec<VidInfo>,
    field_ids: HashMap<String, u32>,
    field_names: Vec<String>,
    vectors: VectorData,
    graph: Hnsw,
    /// Text changes not yet committed to the tantivy index.
    text_ops: Vec<TextOp>,
    /// The redb write counter (every write transaction increments it).
    generation: u64,
    /// A text commit failed: later commits are tagged stale so the next open rebuilds.
    text_stale: bool,
    live_vectors: usize,
    graph_saved: usize,
}

impl State {
    fn field_id(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.field_ids.get(name) {
            return i;
        }
        let i = self.field_names.len() as u32;
        self.field_names.push(name.to_string());
        self.field_ids.insert(name.to_string(), i);
        i
    }

    fn doc(&self, slot: u32) -> Option<&DocState> {
        self.docs.get(slot as usize).and_then(|d| d.as_ref())
    }

    /// Installs a document (replacing any previous version) and returns its slot.
    fn install(&mut self, id: String, rec: DocRecord) -> u32 {
        if let Some(old) = self.ids.get(&id).copied() {
            self.uninstall(old, Some(&rec));
        }
        let slot = self.docs.len() as u32;
        for (field, t) in &rec.tensor {
            let fid = self.field_id(field);
            for (c, &vid) in t.vids.iter().enumerate() {
                let v = vid as usize;
                if v < self.vids.len() {
                    if self.vids[v].doc == DEAD {
                        self.live_vectors += 1;
                    }
                    self.vids[v] = VidInfo {
                        doc: slot,
                        field: fid,
                        chunk: c as u32,
                    };
                }
            }
        }
        let texts: Vec<(String, String)> = rec
            .fields
            .iter()
            .flat_map(|(field, value)| {
                lexical_texts(value, rec.tensor.get(field))
                    .into_iter()
                    .map(move |t| (field.clone(), t.to_string()))
            })
            .collect();
        if !texts.is_empty() {
            self.text_ops.push(TextOp::Add(id.clone(), texts));
        }
        self.ids.insert(id.clone(), slot);
        self.docs.push(Some(DocState { id, rec }));
        slot
    }

    /// Removes a document; vectors that `keep` still uses stay live.
    fn uninstall(&mut self, slot: u32, keep: Option<&DocRecord>) {
        let Some(d) = self.docs.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        let kept: HashSet<u64> = keep
            .map(|k| {
                k.tensor
                    .values()
                    .flat_map(|t| t.vids.iter().copied())
                    .collect()
            })
            .unwrap_or_default();
        for t in d.rec.tensor.values() {
            for &vid in &t.vids {
                if !kept.contains(&vid) {
                    if let Some(v) = self.vids.get_mut(vid as usize) {
                        if v.doc != DEAD {
                            v.doc = DEAD;
                            self.live_vectors -= 1;
                        }
                    }
                }
            }
        }
        self.text_ops.push(TextOp::Delete(d.id.clone()));
        self.ids.remove(&d.id);
    }
}

/// The strings of a field that lexical search reads (image references are not text).
fn lexical_texts<'a>(value: &'a Value, rec: Option<&TensorRec>) -> Vec<&'a str> {
    if rec.is_some_and(|r| matches!(r.kind, TensorKind::Image)) {
        return Vec::new();
    }
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// One searchable, durable index.
pub struct Index {
    name: String,
    dir: PathBuf,
    db: Database,
    settings: IndexSettings,
    model_id: String,
    dim: usize,
    uuid: String,
    embedder: RwLock<Option<Arc<dyn Embedder>>>,
    state: RwLock<State>,
    writer: Mutex<()>,
    text: TextIndex,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("model_id", &self.model_id)
            .field("dim", &self.dim)
            .finish()
    }
}

fn metric_of(s: &IndexSettings) -> Metric {
    match s.ann_parameters.space_type {
        SpaceType::Euclidean => Metric::L2,
        _ => Metric::Dot,
    }
}

fn meta_get(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    k: &str,
) -> Result<Option<Vec<u8>>> {
    Ok(t.get(k)?.map(|g| g.value().to_vec()))
}

fn corrupt(what: impl Into<String>) -> Error {
    Error::Corrupt(what.into())
}

/// A prepared document: stored fields plus what each tensor field needs.
struct Candidate {
    pos: usize,
    id: String,
    fields: Map<String, Value>,
    plans: BTreeMap<String, Plan>,
    /// Tensor records kept as they are (partial update of other fields).
    carry: BTreeMap<String, TensorRec>,
}

enum Content {
    Text(String),
    Image(ImageInput, String),
}

enum Plan {
    Text {
        chunks: Vec<String>,
        key: String,
    },
    Image {
        input: ImageInput,
        reference: String,
        key: String,
    },
    Combination {
        weights: BTreeMap<String, f32>,
        parts: Vec<(Content, f32)>,
        label: String,
        key: String,
    },
    Custom {
        vector: Vec<f32>,
        content: String,
        key: String,
    },
}

impl Plan {
    fn key(&self) -> &str {
        match self {
            Plan::Text { key, .. }
            | Plan::Image { key, .. }
            | Plan::Combination { key, .. }
            | Plan::Custom { key, .. } => key,
        }
    }
}

fn hash128(parts: &[&[u8]]) -> String {
    // Two FNV-1a streams with different bases: a content fingerprint, not a security hash.
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for p in parts {
        for &x in *p {
            a = (a ^ x as u64).wrapping_mul(0x100_0000_01b3);
            b = (b ^ x as u64).wrapping_mul(0x100_0000_01b3).rotate_left(5);
        }
        a = (a ^ 0xff).wrapping_mul(0x100_0000_01b3);
        b = (b ^ 0xfe).wrapping_mul(0x100_0000_01b3);
    }
    format!("{a:016x}{b:016x}")
}

fn valid_field_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidFieldName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return bad("must start with a letter or `_`"),
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return bad("only letters, digits and `_` are allowed");
    }
    if name.starts_with("marqo__") || RESERVED.contains(&name) {
        return bad("the name is reserved");
    }
    Ok(())
}

const IMAGE_EXT: [&str; 9] = [
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif",
];

impl Index {
    pub(crate) fn create(
        name: &str,
        dir: &Path,
        settings: IndexSettings,
        model_id: &str,
        dim: usize,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self> {
        settings.validate()?;
        if dim == 0 {
            return Err(Error::InvalidArgument("the model's dimension is 0".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let db = Database::create(dir.join("index.redb"))?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let tx = db.begin_write()?;
        {
            let mut m = tx.open_table(META)?;
            m.insert("layout", LAYOUT_VERSION.to_le_bytes().as_slice())?;
            let s = serde_json::to_vec(&settings).map_err(|e| corrupt(e.to_string()))?;
            m.insert("settings", s.as_slice())?;
            m.insert("model_id", model_id.as_bytes())?;
            m.insert("dim", (dim as u64).to_le_bytes().as_slice())?;
            m.insert("uuid", uuid.as_bytes())?;
            m.insert("next_vid", 0u64.to_le_bytes().as_slice())?;
            m.insert("name", name.as_bytes())?;
            tx.open_table(DOCS)?;
            tx.open_table(VECTORS)?;
        }
        tx.commit()?;
        drop(db);
        Self::open(name, dir, embedder)
    }

    /// Opens an existing index directory; with an embedder, its model must be the pinned one.
    pub(crate) fn open(
        name: &str,
        dir: &Path,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self> {
        let t0 = Instant::now();
        let path = dir.join("index.redb");
        if !path.exists() {
            return Err(Error::IndexNotFound(name.to_string()));
        }
        let db = Database::create(&path)?;
        let rtx = db.begin_read()?;
        let meta = rtx.open_table(META)?;
        let layout = meta_get(&meta, "layout")?
            .and_then(|b| b.try_into().ok().map(u32::from_le_bytes))
            .ok_or_else(|| corrupt("missing layout version"))?;
        if layout != LAYOUT_VERSION {
            return Err(Error::LayoutVersion {
                path,
                found: layout,
                supported: LAYOUT_VERSION,
            });
        }
        let settings: IndexSettings = serde_json::from_slice(
            &meta_get(&meta, "settings")?.ok_or_else(|| corrupt("missing settings"))?,
        )
        .map_err(|e| corrupt(format!("settings: {e}")))?;
        let model_id = String::from_utf8(meta_get(&meta, "model_id")?.unwrap_or_default())
            .map_err(|_| corrupt("model id is not UTF-8"))?;
        let u64_of = |k: &str| -> Result<u64> {
            meta_get(&meta, k)?
                .and_then(|b| b.try_into().ok().map(u64::from_le_bytes))
                .ok_or_else(|| corrupt(format!("missing {k}")))
        };
        let dim = u64_of("dim")? as usize;
        let next_vid = u64_of("next_vid")? as usize;
        // Indexes written before the counter existed start at 0 (their text index is rebuilt).
        let generation = u64_of("generation").unwrap_or(0);
        let uuid = String::from_utf8(meta_get(&meta, "uuid")?.unwrap_or_default())
            .map_err(|_| corrupt("uuid is not UTF-8"))?;
        if let Some(e) = &embedder {
            if e.model_id() != model_id || e.dim() != dim {
                return Err(Error::ModelMismatch {
                    index: name.to_string(),
                    stored: model_id,
                    stored_dim: dim,
                    given: e.model_id(),
                    given_dim: e.dim(),
                });
            }
        }
        let metric = metric_of(&settings);
        let p = settings.ann_parameters.parameters;
        // With float16 / int8 the float32 rows (read only to rescore and to build) go to a
        // memory-mapped scratch file written again on every open; redb stays the truth.
        let rows_path = dir.join(ROWS_FILE);
        let mut vectors =
            VectorData::spilled(dim, metric, settings.vector_numeric_type, &rows_path)
                .map_err(|e| Error::io(&rows_path, e))?;
        vectors
            .reserve(next_vid)
            .map_err(|e| Error::io(&rows_path, e))?;
        let push = |v: &mut VectorData, row: &[f32]| -> Result<()> {
            v.push(row)
                .map(|_| ())
                .map_err(|e| Error::io(&rows_path, e))
        };
        {
            let vt = rtx.open_table(VECTORS)?;
            let zero = vec![0f32; dim];
            let mut row = vec![0f32; dim];
            for item in vt.iter()? {
                let (k, v) = item?;
                let vid = k.value() as usize;
                if vid >= next_vid {
                    return Err(corrupt(format!("vector {vid} past next_vid {next_vid}")));
                }
                while vectors.len() < vid {
                    push(&mut vectors, &zero)?;
                }
                let b = v.value();
                if b.len() != dim * 4 {
                    return Err(corrupt(format!("vector {vid} has {} bytes", b.len())));
                }
                for (x, c) in row.iter_mut().zip(b.chunks_exact(4)) {
                    *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
                push(&mut vectors, &row)?;
            }
            while vectors.len() < next_vid {
                push(&mut vectors, &zero)?;
            }
        }
        let mut state = State {
            ids: HashMap::new(),
            docs: Vec::new(),
            vids: vec![
                VidInfo {
                    doc: DEAD,
                    field: 0,
                    chunk: 0
                };
                next_vid
            ],
            field_ids: HashMap::new(),
            field_names: Vec::new(),
            vectors,
            graph: Hnsw::new(p.m, p.ef_construction, 0x5eed),
            text_ops: Vec::new(),
            generation,
            text_stale: false,
            live_vectors: 0,
            graph_saved: 0,
        };
        {
            let dt = rtx.open_table(DOCS)?;
            for item in dt.iter()? {
                let (k, v) = item?;
                let rec: DocRecord = serde_json::from_slice(v.value())
                    .map_err(|e| corrupt(format!("document {}: {e}", k.value())))?;
                state.install(k.value().to_string(), rec);
            }
        }
        drop(meta);
        drop(rtx);
        let loaded = Self::load_graph(dir, &uuid, next_vid);
        let covered = loaded.as_ref().map_or(0, |g| g.len());
        if let Some(g) = loaded {
            state.graph = g;
        }
        state.graph_saved = covered;
        let text_dir = dir.join("text");
        let text = TextIndex::open(&text_dir)?;
        let want = format!("{uuid} {generation}");
        let ops = std::mem::take(&mut state.text_ops);
        if text.payload().as_deref() != Some(want.as_str()) {
            tracing::info!(
                index = name,
                documents = state.ids.len(),
                "rebuilding the text index from the documents"
            );
            text.commit(true, ops, &want)?;
        }
        let index = Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            db,
            settings,
            model_id,
            dim,
            uuid,
            embedder: RwLock::new(embedder),
            state: RwLock::new(state),
            writer: Mutex::new(()),
            text,
        };
        if covered < next_vid {
            tracing::info!(
                index = name,
                from = covered,
                to = next_vid,
                "linking vectors the saved graph lacks"
            );
            {
                let mut st = index.state.write();
                st.graph.grow(next_vid);
            }
            index.link(covered, next_vid);
            index.checkpoint()?;
        }
        tracing::info!(
            index = name,
            vectors = next_vid,
            secs = t0.elapsed().as_secs_f64(),
            "index opened"
        );
        Ok(index)
    }

    fn load_graph(dir: &Path, uuid: &str, next_vid: usize) -> Option<Hnsw> {
        let f = std::fs::File::open(dir.join("ann.bin")).ok()?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).ok()?;
        if &magic != GRAPH_MAGIC {
            return None;
        }
        let mut len = [0u8; 4];
        r.read_exact(&mut len).ok()?;
        let mut id = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut id).ok()?;
        if id != uuid.as_bytes() {
            return None;
        }
        let g = Hnsw::read_from(&mut r).ok()??;
        (g.len() <= next_vid).then_some(g)
    }

    /// Writes the graph to `ann.bin` (atomically: temporary file, fsync, rename).
    pub fn checkpoint(&self) -> Result<()> {
        let st = self.state.read();
        if st.graph_saved == st.graph.len() && self.dir.join("ann.bin").exists() {
            return Ok(());
        }
        let tmp = self.dir.join("ann.bin.tmp");
        let io = |e| Error::io(&tmp, e);
        let f = std::fs::File::create(&tmp).map_err(io)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(GRAPH_MAGIC).map_err(io)?;
        w.write_all(&(self.uuid.len() as u32).to_le_bytes())
            .map_err(io)?;
        w.write_all(self.uuid.as_bytes()).map_err(io)?;
        st.graph.write_to(&mut w).map_err(io)?;
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, self.dir.join("ann.bin")).map_err(|e| Error::io(&tmp, e))?;
        let n = st.graph.len();
        drop(st);
        self.state.write().graph_saved = n;
        Ok(())
    }

    /// Takes deleted vectors out of the graph and the store: graph links to them are repaired
    /// (see [`Hnsw::unlink`]), the repaired graph is checkpointed, then their rows are removed
    /// from redb (on open a missing row reads as a zero vector that nothing links to). Searches
    /// keep running; writes wait. Returns the number of vectors taken out. Deletes call it on
    /// their own once deleted vectors still in the graph pass a fifth of it.
    pub fn compact(&self) -> Result<usize> {
        let _w = self.writer.lock();
        self.compact_locked()
    }

    fn compact_locked(&self) -> Result<usize> {
        let t0 = Instant::now();
        let dead: Vec<u64> = {
            let st = self.state.read();
            if st.graph.len() < st.vids.len() {
                // Vectors not yet linked (an open still catching up): nothing to repair safely.
                return Ok(0);
            }
            let is_dead = |v: u32| st.vids[v as usize].doc == DEAD;
            let b = space::Build(&st.vectors);
            let repaired = st.graph.unlink(&b, &is_dead);
            tracing::info!(index = %self.name, repaired, "graph links to deleted vectors repaired");
            (0..st.vids.len() as u64)
                .filter(|&v| st.vids[v as usize].doc == DEAD)
                .collect()
        };
        // The repaired graph must be durable before the rows it no longer needs are dropped.
        self.state.write().graph_saved = usize::MAX;
        self.checkpoint()?;
        let tx = self.db.begin_write()?;
        let mut removed = 0;
        {
            let mut vt = tx.open_table(VECTORS)?;
            for &v in &dead {
                if vt.remove(v)?.is_some() {
                    removed += 1;
                }
            }
        }
        tx.commit()?;
        tracing::info!(
            index = %self.name,
            vectors = dead.len(),
            rows_removed = removed,
            secs = t0.elapsed().as_secs_f64(),
            "compacted"
        );
        Ok(dead.len())
    }

    /// Commits the pending text changes to tantivy (called by writers, under the writer
    /// lock, after the redb commit). A failure is logged, not returned: the write is already
    /// durable, and the text index is marked stale so that the next open rebuilds it.
    fn commit_text(&self) {
        let (ops, payload) = {
            let mut st = self.state.write();
            let payload = if st.text_stale {
                "stale".to_string()
            } else {
                format!("{} {}", self.uuid, st.generation)
            };
            (std::mem::take(&mut st.text_ops), payload)
        };
        if let Err(e) = self.text.commit(false, ops, &payload) {
            tracing::error!(index = %self.name, error = %e, "text index commit failed; it is rebuilt on the next open");
            self.state.write().text_stale = true;
        }
    }

    /// Links vectors `from..to` (already allocated in the graph) in parallel.
    fn link(&self, from: usize, to: usize) {
        let st = self.state.read();
        let b = space::Build(&st.vectors);
        let mut order = st.graph.insertion_order(from as u32, to as u32);
        // Deleted vectors (their rows may be gone after a compaction) are not linked.
        order.retain(|&v| st.vids.get(v as usize).is_some_and(|i| i.doc != DEAD));
        st.graph.insert_all(&b, &order, &|_| {});
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn settings(&self) -> &IndexSettings {
        &self.settings
    }
    pub fn model_id(&self) -> &str {
        &self.model_id
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Attaches (or replaces) the embedder; it must be the index's pinned model.
    pub fn set_embedder(&self, e: Arc<dyn Embedder>) -> Result<()> {
        if e.model_id() != self.model_id || e.dim() != self.dim {
            return Err(Error::ModelMismatch {
                index: self.name.clone(),
                stored: self.model_id.clone(),
                stored_dim: self.dim,
                given: e.model_id(),
                given_dim: e.dim(),
            });
        }
        *self.embedder.write() = Some(e);
        Ok(())
    }

    fn embedder(&self) -> Result<Arc<dyn Embedder>> {
        self.embedder.read().clone().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "index `{}` was opened without a model; load model `{}` to embed content",
                self.name, self.model_id
            ))
        })
    }

    fn finish_vector(&self, mut v: Vec<f32>, what: &str) -> Result<Vec<f32>> {
        if v.len() != self.dim {
            return Err(Error::InvalidArgument(format!(
                "{what}: vector has dimension {}, the index expects {}",
                v.len(),
                self.dim
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "{what}: vector holds NaN or infinity"
            )));
        }
        if self.settings.normalize_embeddings
            || self.settings.ann_parameters.space_type == SpaceType::Angular
        {
            gclip_vectors::normalize(&mut v);
        }
        Ok(v)
    }

    fn image_ref(&self, s: &str) -> Option<ImageInput> {
        if let Some(rest) = s.strip_prefix("data:image/") {
            use base64::Engine as _;
            let b64 = rest.split_once(";base64,").map(|(_, b)| b)?;
            return base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .map(ImageInput::Bytes)
                .or(Some(ImageInput::Bytes(Vec::new())));
        }
        if !self.settings.treat_urls_and_pointers_as_images {
            return None;
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Some(ImageInput::Url(s.to_string()));
        }
        let lower = s.to_ascii_lowercase();
        (!s.contains('\n') && IMAGE_EXT.iter().any(|e| lower.ends_with(e)))
            .then(|| ImageInput::Path(PathBuf::from(s)))
    }

    fn describe_image(s: &str) -> String {
        if s.starts_with("data:") {
            format!("{}...", &s[..s.len().min(32)])
        } else {
            s.to_string()
        }
    }

    fn content_of(&self, s: &str) -> Content {
        match self.image_ref(s) {
            Some(i) => Content::Image(i, Self::describe_image(s)),
            None => Content::Text(s.to_string()),
        }
    }

    /// Validates one document and plans its tensor fields.
    fn prepare(
        &self,
        pos: usize,
        doc: &Value,
        tensor_fields: &HashSet<&str>,
        mappings: &BTreeMap<String, Mapping>,
        chunk_prefix: Option<&str>,
    ) -> (String, Result<Candidate>) {
        let id_of = |d: &Value| {
            d.get("_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let id = id_of(doc);
        let r = (|| {
            let Value::Object(obj) = doc else {
                return Err(Error::InvalidArgument(
                    "a document must be a JSON object".into(),
                ));
            };
            let size = serde_json::to_vec(doc)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > self.settings.max_document_bytes {
                return Err(Error::DocTooLarge {
                    size,
                    limit: self.settings.max_document_bytes,
                });
            }
            let id = match obj.get("_id") {
                None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 512 => s.clone(),
                Some(Value::String(_)) => {
                    return Err(Error::InvalidDocumentId(
                        "`_id` must be 1 to 512 characters".into(),
                    ))
                }
                Some(other) => {
                    return Err(Error::InvalidDocumentId(format!(
                        "`_id` must be a string, got {other}"
                    )))
                }
            };
            let mut fields = Map::new();
            let mut plans = BTreeMap::new();
            for (name, value) in obj {
                if name == "_id" {
                    continue;
                }
                valid_field_name(name)?;
                let mapping = mappings.get(name);
                if let Some(Mapping::MultimodalCombination { .. }) = mapping {
                    return Err(Error::InvalidArgument(format!(
                        "field `{name}` is a multimodal combination: it is built from its subfields, \
                         the document must not set it"
                    )));
                }
                if let Some(Mapping::CustomVector) = mapping {
                    let Value::Object(cv) = value else {
                        return Err(Error::InvalidArgument(format!(
                            "custom vector field `{name}` must be {{\"vector\": [...], \"content\": ...}}"
                        )));
                    };
                    let vector: Vec<f32> = cv
                        .get("vector")
                        .cloned()
                        .and_then(|v| serde_json::from_value(v).ok())
                        .ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "custom vector field `{name}` needs a numeric `vector`"
                            ))
                        })?;
                    let vector = self.finish_vector(vector, &format!("field `{name}`"))?;
                    let content = match cv.get("content") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(_) => {
                            return Err(Error::InvalidArgument(format!(
                                "`content` of custom vector field `{name}` must be a string"
                            )))
                        }
                    };
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    let key = format!("v:{}", hash128(&[&bytes, content.as_bytes()]));
                    fields.insert(name.clone(), Value::String(content.clone()));
                    plans.insert(
                        name.clone(),
                        Plan::Custom {
                            vector,
                            content,
                            key,
                        },
                    );
                    continue;
                }
                match value {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
                    Value::Array(a) if a.iter().all(Value::is_string) => {}
                    Value::Array(_) => {
                        return Err(Error::InvalidArgument(format!(
                            "field `{name}`: arrays may only hold strings"
                        )))
                    }
                    Value::Null => continue,
                    Value::Object(_) => {
                        return Err(Error::InvalidArgument(format!(
                            "field `{name}`: objects are only allowed for custom vector fields (see mappings)"
                        )))
                    }
                }
                if tensor_fields.contains(name.as_str()) {
                    let Value::String(s) = value else {
                        return Err(Error::InvalidArgument(format!(
                            "tensor field `{name}` must be a string (text or image), got {value}"
                        )));
                    };
                    plans.insert(name.clone(), self.plan_content(name, s, chunk_prefix)?);
                }
                fields.insert(name.clone(), value.clone());
            }
            for (name, m) in mappings {
                let Mapping::MultimodalCombination { weights } = m else {
                    continue;
                };
                if !tensor_fields.contains(name.as_str()) {
                    continue;
                }
                valid_field_name(name)?;
                let mut parts = Vec::new();
                let mut keyparts: Vec<String> = Vec::new();
                let mut label = Map::new();
                for (sub, &w) in weights {
                    if !w.is_finite() {
                        return Err(Error::InvalidArgument(format!(
                            "weight of `{sub}` is not finite"
                        )));
                    }
                    match fields.get(sub) {
                        None => continue,
                        Some(Value::String(s)) => {
                            let c = self.content_of(s);
                            keyparts.push(format!("{sub}={w}:{}", hash128(&[s.as_bytes()])));
                            label.insert(
                                sub.clone(),
                                Value::String(match &c {
                                    Content::Text(t) => t.clone(),
                                    Content::Image(_, d) => d.clone(),
                                }),
                            );
                            parts.push((c, w));
                        }
                        Some(_) => {
                            return Err(Error::InvalidArgument(format!(
                                "subfield `{sub}` of combination `{name}` must be a string"
                            )))
                        }
                    }
                }
                if parts.is_empty() {
                    continue;
                }
                let key = format!("c:{}", hash128(&[keyparts.join("|").as_bytes()]));
                let label = Value::Object(label).to_string();
                plans.insert(
                    name.clone(),
                    Plan::Combination {
                        weights: weights.clone(),
                        parts,
                        label,
                        key,
                    },
                );
            }
            Ok(Candidate {
                pos,
                id,
                fields,
                plans,
                carry: BTreeMap::new(),
            })
        })();
        let id = match &r {
            Ok(c) => c.id.clone(),
            Err(_) => id,
        };
        (id, r)
    }

    fn plan_content(&self, name: &str, s: &str, chunk_prefix: Option<&str>) -> Result<Plan> {
        Ok(match self.image_ref(s) {
            Some(input) => {
                let reference = Self::describe_image(s);
                Plan::Image {
                    key: format!("i:{}", hash128(&[s.as_bytes()])),
                    input,
                    reference,
                }
            }
            None => {
                let chunks = chunk::split(s, &self.settings.text_preprocessing);
                if chunks.is_empty() && !s.trim().is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "field `{name}` gave no chunks"
                    )));
                }
                let prefix = chunk_prefix
                    .or(self.settings.text_chunk_prefix.as_deref())
                    .unwrap_or("");
                Plan::Text {
                    key: format!("t:{}", hash128(&[prefix.as_bytes(), s.as_bytes()])),
                    chunks,
                }
            }
        })
    }

    /// Adds documents (replacing any with the same `_id`). One bad document fails alone.
    pub fn add_documents(&self, req: &AddDocuments) -> Result<BatchResponse> {
        let t0 = Instant::now();
        if req
            .image_download_headers
            .as_ref()
            .is_some_and(|h| !h.is_empty())
        {
            return Err(Error::InvalidArgument(
                "imageDownloadHeaders are not supported".into(),
            ));
        }
        for (name, m) in &req.mappings {
            valid_field_name(name)?;
            if let Mapping::MultimodalCombination { weights } = m {
                if weights.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "combination `{name}` has no weights"
                    )));
                }
            }
        }
        let tf: HashSet<&str> = req.tensor_fields.iter().map(String::as_str).collect();
        let mut results: Vec<Option<ItemStatus>> = vec![None; req.documents.len()];
        let mut cands: Vec<Candidate> = Vec::new();
        for (pos, d) in req.documents.iter().enumerate() {
            let (id, r) =
                self.prepare(pos, d, &tf, &req.mappings, req.text_chunk_prefix.as_deref());
            match r {
                Ok(c) => cands.push(c),
                Err(e) => results[pos] = Some(ItemStatus::failed(&id, &e)),
            }
        }
        // The same id twice in a batch: the last one wins.
        let mut last: HashMap<String, usize> = HashMap::new();
        for (i, c) in cands.iter().enumerate() {
            last.insert(c.id.clone(), i);
        }
        let cands: Vec<Candidate> = cands
            .into_iter()
            .enumerate()
            .filter(|(i, c)| last[&c.id] == *i)
            .map(|(_, c)| c)
            .collect();
        self.commit_candidates(cands, &mut results, 200, "created")?;
        let items: Vec<ItemStatus> = results.into_iter().flatten().collect();
        Ok(BatchResponse {
            errors: items.iter().any(|i| !i.is_ok()),
            items,
            processing_time_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Partial update: merges the given fields into existing documents; tensor fields whose
    /// content changed are re-embedded, the others keep their vectors. Missing ids get 404.
    pub fn update_documents(&self, documents: &[Value]) -> Result<BatchResponse> {
        let t0 = Instant::now();
        let mut results: Vec<Option<ItemStatus>> = vec![None; documents.len()];
        let mut cands = Vec::new();
        // Hold the writer so that the merged base cannot change under us.
        let guard = self.writer.lock();
        for (pos, d) in documents.iter().enumerate() {
            let id = d
                .get("_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let r = (|| {
                let Value::Object(obj) = d else {
                    return Err(Error::InvalidArgument(
                        "a document must be a JSON object".into(),
                    ));
                };
                if id.is_empty() {
                    return Err(Error::InvalidDocumentId(
                        "a partial update needs `_id`".into(),
                    ));
                }
                let (base, tensor) = {
                    let st = self.state.read();
                    let slot = *st
                        .ids
                        .get(&id)
                        .ok_or_else(|| Error::DocumentNotFound(id.clone()))?;
                    let d = st
                        .doc(slot)
                        .ok_or_else(|| Error::DocumentNotFound(id.clone()))?;
                    (d.rec.fields.clone(), d.rec.tensor.clone())
                };
                let mut merged = base;
                merged.insert("_id".into(), Value::String(id.clone()));
                let mut mappings = BTreeMap::new();
                let mut tfields: Vec<String> = Vec::new();
                let mut carry = BTreeMap::new();
                for (name, rec) in &tensor {
                    let touched = match &rec.kind {
                        TensorKind::Combination { weights } => {
                            weights.keys().any(|k| obj.contains_key(k))
                        }
                        _ => obj.contains_key(name),
                    };
                    match (&rec.kind, touched) {
                        (TensorKind::Combination { weights }, true) => {
                            mappings.insert(
                                name.clone(),
                                Mapping::MultimodalCombination {
                                    weights: weights.clone(),
                                },
                            );
                            tfields.push(name.clone());
                        }
                        (TensorKind::Custom, true) => {
                            mappings.insert(name.clone(), Mapping::CustomVector);
                            tfields.push(name.clone());
                        }
                        (_, true) => tfields.push(name.clone()),
                        (_, false) => {
                            carry.insert(name.clone(), rec.clone());
                            if matches!(rec.kind, TensorKind::Custom) {
                                // Its stored value is the content string; keep it out of planning.
                                continue;
                            }
                        }
                    }
                }
                for (k, v) in obj {
                    merged.insert(k.clone(), v.clone());
                }
                // Untouched custom vector fields are carried, so drop them from planning.
                let carried_custom: Vec<String> = carry
                    .iter()
                    .filter(|(_, r)| matches!(r.kind, TensorKind::Custom))
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut plan_doc = merged.clone();
                for k in &carried_custom {
                    plan_doc.remove(k);
                }
                let tf: HashSet<&str> = tfields.iter().map(String::as_str).collect();
                let (_, c) = self.prepare(pos, &Value::Object(plan_doc), &tf, &mappings, None);
                let mut c = c?;
                for k in carried_custom {
                    if let Some(v) = merged.get(&k) {
                        c.fields.insert(k, v.clone());
                    }
                }
                c.carry = carry;
                Ok(c)
            })();
            match r {
                Ok(c) => cands.push(c),
                Err(e) => results[pos] = Some(ItemStatus::failed(&id, &e)),
            }
        }
        drop(guard);
        self.commit_candidates(cands, &mut results, 200, "updated")?;
        let items: Vec<ItemStatus> = results.into_iter().flatten().collect();
        Ok(BatchResponse {
            errors: items.iter().any(|i| !i.is_ok()),
            items,
            processing_time_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Embeds what is new, writes one transaction, then publishes the documents.
    fn commit_candidates(
        &self,
        cands: Vec<Candidate>,
        results: &mut [Option<ItemStatus>],
        status: u16,
        result: &str,
    ) -> Result<()> {
        let _w = self.writer.lock();
        if cands.is_empty() {
            return Ok(());
        }
        // Which plans can reuse the vectors of the stored version of the same field.
        let mut existing: HashMap<String, BTreeMap<String, TensorRec>> = HashMap::new();
        {
            let st = self.state.read();
            for c in &cands {
                if let Some(d) = st.ids.get(&c.id).and_then(|&s| st.doc(s)) {
                    existing.insert(c.id.clone(), d.rec.tensor.clone());
                }
            }
        }
        let reusable = |c: &Candidate, field: &str, key: &str| -> Option<TensorRec> {
            existing
                .get(&c.id)
                .and_then(|m| m.get(field))
                .filter(|r| r.key == key)
                .cloned()
        };
        // Gather embedding work.
        let prefix_chunk = self.settings.text_chunk_prefix.clone().unwrap_or_default();
        let mut texts: Vec<(usize, String)> = Vec::new(); // (candidate, text)
        let mut images: Vec<(usize, ImageInput)> = Vec::new();
        for (ci, c) in cands.iter().enumerate() {
            for (field, p) in &c.plans {
                if reusable(c, field, p.key()).is_some() {
                    continue;
                }
                match p {
                    Plan::Text { chunks, .. } => {
                        texts.extend(chunks.iter().map(|t| (ci, format!("{prefix_chunk}{t}"))))
                    }
                    Plan::Image { input, .. } => images.push((ci, input.clone())),
                    Plan::Combination { parts, .. } => {
                        for (content, _) in parts {
                            match content {
                                Content::Text(t) => texts.push((ci, format!("{prefix_chunk}{t}"))),
                                Content::Image(i, _) => images.push((ci, i.clone())),
                            }
                        }
                    }
                    Plan::Custom { .. } => {}
                }
            }
        }
        let mut failed: HashMap<usize, Error> = HashMap::new();
        let mut text_vecs: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        let mut image_vecs: Vec<Option<Vec<f32>>> = vec![None; images.len()];
        if !texts.is_empty() || !images.is_empty() {
            let emb = match self.embedder() {
                Ok(e) => e,
                Err(e) => {
                    let needy: HashSet<usize> = texts
                        .iter()
                        .map(|(c, _)| *c)
                        .chain(images.iter().map(|(c, _)| *c))
                        .collect();
                    for ci in needy {
                        failed.insert(ci, Error::InvalidArgument(e.to_string()));
                    }
                    return self.finish_commit(
                        cands, results, failed, text_vecs, image_vecs, status, result,
                    );
                }
            };
            if !texts.is_empty() {
                let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
                match emb.embed_texts(&refs) {
                    Ok(e) if e.len() == refs.len() => {
                        for (i, row) in e.rows().enumerate() {
                            text_vecs[i] = Some(row.to_vec());
                        }
                    }
                    _ => {
                        // Attribute the failure: embed each document's texts on their own.
                        let mut by_doc: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
                        for (i, (ci, _)) in texts.iter().enumerate() {
                            by_doc.entry(*ci).or_default().push(i);
                        }
                        for (ci, idx) in by_doc {
                            let r: Vec<&str> = idx.iter().map(|&i| texts[i].1.as_str()).collect();
                            match emb.embed_texts(&r) {
                                Ok(e) if e.len() == r.len() => {
                                    for (k, row) in e.rows().enumerate() {
                                        text_vecs[idx[k]] = Some(row.to_vec());
                                    }
                                }
                                Ok(e) => {
                                    failed.insert(
                                        ci,
                                        Error::InvalidArgument(format!(
                                            "the model returned {} vectors for {} texts",
                                            e.len(),
                                            r.len()
                                        )),
                                    );
                                }
                                Err(e) => {
                                    failed.insert(ci, Error::Embed(e));
                                }
                            }
                        }
                    }
                }
            }
            if !images.is_empty() {
                let inputs: Vec<ImageInput> = images.iter().map(|(_, i)| i.clone()).collect();
                let out = emb.embed_images(&inputs);
                for (i, r) in out.into_iter().enumerate().take(images.len()) {
                    match r {
                        Ok(v) => image_vecs[i] = Some(v),
                        Err(e) => {
                            let ci = images[i].0;
                            failed.entry(ci).or_insert(Error::Embed(e));
                        }
                    }
                }
                for (i, v) in image_vecs.iter().enumerate() {
                    if v.is_none() {
                        failed.entry(images[i].0).or_insert_with(|| {
                            Error::InvalidArgument(
                                "the model returned no vector for an image".into(),
                            )
                        });
                    }
                }
            }
        }
        self.finish_commit(
            cands, results, failed, text_vecs, image_vecs, status, result,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_commit(
        &self,
        cands: Vec<Candidate>,
        results: &mut [Option<ItemStatus>],
        mut failed: HashMap<usize, Error>,
        text_vecs: Vec<Option<Vec<f32>>>,
        image_vecs: Vec<Option<Vec<f32>>>,
        status: u16,
        result: &str,
    ) -> Result<()> {
        let existing: HashMap<String, BTreeMap<String, TensorRec>> = {
            let st = self.state.read();
            cands
                .iter()
                .filter_map(|c| {
                    st.ids
                        .get(&c.id)
                        .and_then(|&s| st.doc(s))
                        .map(|d| (c.id.clone(), d.rec.tensor.clone()))
                })
                .collect()
        };
        let mut next_vid = self.state.read().vectors.len() as u64;
        let mut new_vectors: Vec<(u64, Vec<f32>)> = Vec::new();
        let mut records: Vec<(usize, String, DocRecord)> = Vec::new();
        let mut ti = 0usize;
        let mut ii = 0usize;
        for (ci, c) in cands.iter().enumerate() {
            // Consume this candidate's share of the embedding outputs in the gathering order.
            let mut take_text = |n: usize| -> Vec<Option<Vec<f32>>> {
                let v = text_vecs[ti..ti + n].to_vec();
                ti += n;
                v
            };
            let mut take_image = || -> Option<Vec<f32>> {
                let v = image_vecs[ii].clone();
                ii += 1;
                v
            };
            let mut tensor: BTreeMap<String, TensorRec> = c.carry.clone();
            let mut pending: Vec<Vec<f32>> = Vec::new();
            let mut err: Option<Error> = None;
            for (field, p) in &c.plans {
                let reuse = existing
                    .get(&c.id)
                    .and_then(|m| m.get(field))
                    .filter(|r| r.key == p.key())
                    .cloned();
                if let Some(r) = reuse {
                    tensor.insert(field.clone(), r);
                    continue;
                }
                let (kind, chunks, vecs): (TensorKind, Vec<String>, Vec<Option<Vec<f32>>>) = match p
                {
                    Plan::Text { chunks, .. } => {
                        (TensorKind::Text, chunks.clone(), take_text(chunks.len()))
                    }
                    Plan::Image { reference, .. } => (
                        TensorKind::Image,
                        vec![reference.clone()],
                        vec![take_image()],
                    ),
                    Plan::Custom {
                        vector, content, ..
                    } => (
                        TensorKind::Custom,
                        vec![content.clone()],
                        vec![Some(vector.clone())],
                    ),
                    Plan::Combination {
                        weights,
                        parts,
                        label,
                        ..
                    } => {
                        let mut rows: Vec<(Option<Vec<f32>>, f32)> = Vec::new();
                        for (content, w) in parts {
                            let v = match content {
                                Content::Text(_) => take_text(1).pop().flatten(),
                                Content::Image(..) => take_image(),
                            };
                            rows.push((v, *w));
                        }
                        let fused = if rows.iter().any(|(v, _)| v.is_none()) {
                            None
                        } else {
                            let mut normed: Vec<(Vec<f32>, f32)> = Vec::new();
                            for (v, w) in rows {
                                let v = v.unwrap_or_default();
                                match self.finish_vector(v, &format!("subfield of `{field}`")) {
                                    Ok(v) => normed.push((v, w)),
                                    Err(e) => {
                                        err.get_or_insert(e);
                                    }
                                }
                            }
                            let parts: Vec<(Option<&[f32]>, f32)> = normed
                                .iter()
                                .map(|(v, w)| (Some(v.as_slice()), *w))
                                .collect();
                            match gclip_vectors::fuse(self.dim, &parts) {
                                Ok(Some(v)) => Some(v),
                                Ok(None) => {
                                    err.get_or_insert(Error::InvalidArgument(format!(
                                        "combination `{field}`: the weights of the present subfields sum to 0"
                                    )));
                                    None
                                }
                                Err(e) => {
                                    err.get_or_insert(e.into());
                                    None
                                }
                            }
                        };
                        (
                            TensorKind::Combination {
                                weights: weights.clone(),
                            },
                            vec![label.clone()],
                            vec![fused],
                        )
                    }
                };
                if err.is_some() || failed.contains_key(&ci) {
                    continue;
                }
                let mut vids = Vec::new();
                for v in vecs {
                    let Some(v) = v else {
                        err.get_or_insert(Error::InvalidArgument(format!(
                            "field `{field}` could not be embedded"
                        )));
                        break;
                    };
                    match self.finish_vector(v, &format!("field `{field}`")) {
                        Ok(v) => {
                            vids.push(next_vid + pending.len() as u64);
                            pending.push(v);
                        }
                        Err(e) => {
                            err.get_or_insert(e);
                            break;
                        }
                    }
                }
                let key = p.key().to_string();
                tensor.insert(
                    field.clone(),
                    TensorRec {
                        key,
                        kind,
                        chunks,
                        vids,
                    },
                );
            }
            if let Some(e) = err {
                failed.entry(ci).or_insert(e);
            }
            if failed.contains_key(&ci) {
                continue;
            }
            for v in pending {
                new_vectors.push((next_vid, v));
                next_vid += 1;
            }
            records.push((
                ci,
                c.id.clone(),
                DocRecord {
                    fields: c.fields.clone(),
                    tensor,
                },
            ));
        }
        for (ci, e) in failed {
            results[cands[ci].pos] = Some(ItemStatus::failed(&cands[ci].id, &e));
        }
        if records.is_empty() {
            return Ok(());
        }
        // Room for the new rows first: after the commit below nothing may fail.
        let rows_path = self.dir.join(ROWS_FILE);
        self.state
            .write()
            .vectors
            .reserve(new_vectors.len())
            .map_err(|e| Error::io(&rows_path, e))?;
        // The acknowledgement point: one durable transaction.
        let generation = self.state.read().generation;
        let tx = self.db.begin_write()?;
        {
            let mut dt = tx.open_table(DOCS)?;
            let mut vt = tx.open_table(VECTORS)?;
            let mut mt = tx.open_table(META)?;
            for (_, id, rec) in &records {
                let b = serde_json::to_vec(rec).map_err(|e| corrupt(e.to_string()))?;
                dt.insert(id.as_str(), b.as_slice())?;
            }
            let mut buf = Vec::with_capacity(self.dim * 4);
            for (vid, v) in &new_vectors {
                buf.clear();
                v.iter()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
                vt.insert(*vid, buf.as_slice())?;
            }
            mt.insert("next_vid", next_vid.to_le_bytes().as_slice())?;
            mt.insert("generation", (generation + 1).to_le_bytes().as_slice())?;
        }
        tx.commit()?;
        let first_new = {
            let mut st = self.state.write();
            let first = st.vectors.len();
            for (_, v) in &new_vectors {
                // Cannot fail: the room was reserved before the commit.
                st.vectors.push(v).map_err(|e| Error::io(&rows_path, e))?;
                st.vids.push(VidInfo {
                    doc: DEAD,
                    field: 0,
                    chunk: 0,
                });
            }
            let n = st.vectors.len();
            st.graph.grow(n);
            for (ci, id, rec) in records {
                st.install(id.clone(), rec);
                results[cands[ci].pos] = Some(ItemStatus::ok(&id, status, result));
            }
            st.generation = generation + 1;
            first
        };
        self.commit_text();
        self.link(first_new, first_new + new_vectors.len());
        let (saved, n) = {
            let st = self.state.read();
            (st.graph_saved, st.graph.len())
        };
        if n.saturating_sub(saved) >= 20_000.max(saved / 5) {
            self.checkpoint()?;
        }
        Ok(())
    }
}

/// (rank from 1, tensor score, highlight) of a document in the tensor ranking.
type TensorRank = (usize, f32, Option<(u32, u32)>);

/// One document's best tensor match.
#[derive(Clone, Debug)]
struct DocHit {
    slot: u32,
    score: f32,
    highlight: Option<(u32, u32)>,
}

impl Index {
    fn doc_json(&self, d: &DocState, attrs: Option<&[String]>) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in &d.rec.fields {
            if attrs.is_none_or(|a| a.iter().any(|x| x == k)) {
                m.insert(k.clone(), v.clone());
            }
        }
        m.insert("_id".into(), Value::String(d.id.clone()));
        m
    }

    /// A document's stored fields and `_id`; with `expose_facets`, also `_tensor_facets`
    /// (each chunk with its vector).
    pub fn get_document(&self, id: &str, expose_facets: bool) -> Result<Map<String, Value>> {
        let st = self.state.read();
        let d = st
            .ids
            .get(id)
            .and_then(|&s| st.doc(s))
            .ok_or_else(|| Error::DocumentNotFound(id.to_string()))?;
        let mut m = self.doc_json(d, None);
        if expose_facets {
            let mut facets = Vec::new();
            for (field, t) in &d.rec.tensor {
                for (chunk, &vid) in t.chunks.iter().zip(&t.vids) {
                    let mut f = Map::new();
                    f.insert(field.clone(), Value::String(chunk.clone()));
                    let v: Vec<Value> = st
                        .vectors
                        .row(vid as u32)
                        .iter()
                        .map(|&x| Value::from(x))
                        .collect();
                    f.insert("_embedding".into(), Value::Array(v));
                    facets.push(Value::Object(f));
                }
            }
            m.insert("_tensor_facets".into(), Value::Array(facets));
        }
        Ok(m)
    }

    /// Several documents: found ones with `_found: true`, missing ones with status 404.
    pub fn get_documents(&self, ids: &[String], expose_facets: bool) -> Vec<Map<String, Value>> {
        ids.iter()
            .map(|id| match self.get_document(id, expose_facets) {
                Ok(mut m) => {
                    m.insert("_found".into(), Value::Bool(true));
                    m
                }
                Err(e) => {
                    let mut m = Map::new();
                    m.insert("_id".into(), Value::String(id.clone()));
                    m.insert("_found".into(), Value::Bool(false));
                    m.insert("status".into(), Value::from(e.http_status()));
                    m.insert("message".into(), Value::String(e.to_string()));
                    m
                }
            })
            .collect()
    }

    /// Deletes documents by id; unknown ids are reported with status 404.
    pub fn delete_documents(&self, ids: &[String]) -> Result<BatchResponse> {
        let t0 = Instant::now();
        let _w = self.writer.lock();
        let present: Vec<(String, u32)> = {
            let st = self.state.read();
            ids.iter()
                .filter_map(|id| st.ids.get(id).map(|&s| (id.clone(), s)))
                .collect()
        };
        if !present.is_empty() {
            let generation = self.state.read().generation;
            let tx = self.db.begin_write()?;
            {
                let mut dt = tx.open_table(DOCS)?;
                for (id, _) in &present {
                    dt.remove(id.as_str())?;
                }
                let mut mt = tx.open_table(META)?;
                mt.insert("generation", (generation + 1).to_le_bytes().as_slice())?;
            }
            tx.commit()?;
            {
                let mut st = self.state.write();
                for (_, slot) in &present {
                    st.uninstall(*slot, None);
                }
                st.generation = generation + 1;
            }
            self.commit_text();
            let (routing_dead, nodes) = {
                let st = self.state.read();
                let n = st.graph.len();
                let dead = n.saturating_sub(st.live_vectors);
                (dead.saturating_sub(st.graph.unlinked_nodes().min(dead)), n)
            };
            if routing_dead >= 1000.max(nodes / 5) {
                self.compact_locked()?;
            }
        }
        let found: HashSet<&str> = present.iter().map(|(i, _)| i.as_str()).collect();
        let items: Vec<ItemStatus> = ids
            .iter()
            .map(|id| {
                if found.contains(id.as_str()) {
                    ItemStatus::ok(id, 200, "deleted")
                } else {
                    ItemStatus::failed(id, &Error::DocumentNotFound(id.clone()))
                }
            })
            .collect();
        Ok(BatchResponse {
            errors: items.iter().any(|i| !i.is_ok()),
            items,
            processing_time_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Deletes every document matching a filter; returns how many were deleted.
    pub fn delete_by_filter(&self, filter: &str) -> Result<usize> {
        let f = Filter::parse(filter)?;
        let ids: Vec<String> = {
            let st = self.state.read();
            let max = self.settings.filter_string_max_length;
            st.docs
                .iter()
                .flatten()
                .filter(|d| f.matches(&d.id, &d.rec.fields, max))
                .map(|d| d.id.clone())
                .collect()
        };
        let r = self.delete_documents(&ids)?;
        Ok(r.items.iter().filter(|i| i.is_ok()).count())
    }

    pub fn stats(&self) -> Result<IndexStats> {
        let st = self.state.read();
        let mut bytes = 0;
        for f in ["index.redb", "ann.bin"] {
            bytes += std::fs::metadata(self.dir.join(f))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("text")) {
            bytes += rd
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum::<u64>();
        }
        let n = st.graph.len();
        Ok(IndexStats {
            number_of_documents: st.ids.len(),
            number_of_vectors: st.live_vectors,
            graph_nodes: n,
            deleted_vectors: n.saturating_sub(st.live_vectors),
            compacted_vectors: st
                .graph
                .unlinked_nodes()
                .min(n.saturating_sub(st.live_vectors)),
            bytes_on_disk: bytes,
            bytes_in_memory: (n * (st.vectors.bytes_per_row() + st.graph.bytes_per_node())) as u64,
        })
    }

    /// The ids of every document (in no particular order).
    pub fn document_ids(&self) -> Vec<String> {
        self.state.read().ids.keys().cloned().collect()
    }

    /// The query vector for `q` (and context vectors), as the index compares it.
    pub fn query_vector(&self, q: &Query, context: Option<&SearchContext>) -> Result<Vec<f32>> {
        let prefix = self.settings.text_query_prefix.clone().unwrap_or_default();
        let one = |s: &str| -> Result<Vec<f32>> {
            let e = self.embedder()?;
            let v = match self.image_ref(s) {
                Some(img) => e
                    .embed_images(std::slice::from_ref(&img))
                    .pop()
                    .ok_or_else(|| {
                        Error::InvalidArgument("the model returned no vector".into())
                    })??,
                None => {
                    let t = format!("{prefix}{s}");
                    let r = e.embed_texts(&[t.as_str()])?;
                    r.row(0)?.to_vec()
                }
            };
            self.finish_vector(v, "query")
        };
        let mut parts: Vec<(Vec<f32>, f32)> = match q {
            Query::Content(s) => vec![(one(s)?, 1.0)],
            Query::Vector(v) => vec![(self.finish_vector(v.clone(), "customVector")?, 1.0)],
            Query::Weighted(w) => {
                if w.is_empty() {
                    return Err(Error::InvalidArgument("an empty weighted query".into()));
                }
                w.iter()
                    .map(|(k, &x)| Ok((one(k)?, x)))
                    .collect::<Result<_>>()?
            }
        };
        for c in context.map(|c| c.tensor.as_slice()).unwrap_or(&[]) {
            parts.push((
                self.finish_vector(c.vector.clone(), "context vector")?,
                c.weight,
            ));
        }
        if parts.len() == 1 && parts[0].1 == 1.0 {
            return Ok(parts.pop().map(|p| p.0).unwrap_or_default());
        }
        // Marqo's rule: the mean of weight x vector, normalised when the index normalises.
        let mut out = vec![0f32; self.dim];
        let n = parts.len() as f32;
        for (v, w) in &parts {
            out.iter_mut().zip(v).for_each(|(o, x)| *o += w * x / n);
        }
        if self.settings.normalize_embeddings {
            gclip_vectors::normalize(&mut out);
        }
        Ok(out)
    }

    fn field_set(st: &State, names: Option<&[String]>) -> Option<HashSet<u32>> {
        names.map(|n| {
            n.iter()
                .filter_map(|x| st.field_ids.get(x).copied())
                .collect()
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn tensor_hits(
        &self,
        st: &State,
        q: &[f32],
        needed: usize,
        filter: Option<&Filter>,
        fields: Option<&[String]>,
        ef: Option<usize>,
        approximate: bool,
    ) -> Vec<DocHit> {
        let field_set = Self::field_set(st, fields);
        let max = self.settings.filter_string_max_length;
        let n = st.vids.len();
        // With a filter, mark the vectors of matching documents first.
        let allowed: Option<(Vec<u64>, usize)> = filter.map(|f| {
            let mut bits = vec![0u64; n.div_ceil(64)];
            let mut count = 0;
            for d in st.docs.iter().flatten() {
                if !f.matches(&d.id, &d.rec.fields, max) {
                    continue;
                }
                for (fname, t) in &d.rec.tensor {
                    if let Some(fs) = &field_set {
                        if !st.field_ids.get(fname).is_some_and(|i| fs.contains(i)) {
                            continue;
                        }
                    }
                    for &v in &t.vids {
                        bits[v as usize / 64] |= 1 << (v % 64);
                        count += 1;
                    }
                }
            }
            (bits, count)
        });
        let accept = |v: u32| -> bool {
            let info = st.vids[v as usize];
            if info.doc == DEAD {
                return false;
            }
            if let Some((bits, _)) = &allowed {
                return bits[v as usize / 64] >> (v % 64) & 1 == 1;
            }
            field_set.as_ref().is_none_or(|fs| fs.contains(&info.field))
        };
        let candidates = allowed.as_ref().map_or(st.live_vectors, |a| a.1);
        // Exact scan when it is cheap or the filter is selective: the graph walk would have to
        // visit most nodes to find enough matches, and the scan is exact.
        let exact = !approximate
            || candidates <= 256
            || (allowed.is_some() && (candidates <= 4096 || candidates * 25 <= st.live_vectors))
            || st.graph.len() < n;
        let group = |cands: &[Cand]| -> Vec<DocHit> {
            let mut best: HashMap<u32, DocHit> = HashMap::new();
            for c in cands {
                let info = st.vids[c.id as usize];
                let score = st.vectors.metric().score(c.dist);
                let e = best.entry(info.doc).or_insert(DocHit {
                    slot: info.doc,
                    score: f32::NEG_INFINITY,
                    highlight: None,
                });
                if score > e.score {
                    e.score = score;
                    e.highlight = Some((info.field, info.chunk));
                }
            }
            let mut v: Vec<DocHit> = best.into_values().collect();
            v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.slot.cmp(&b.slot)));
            v
        };
        if !exact {
            let quantized = st.vectors.precision() != crate::settings::VectorNumericType::Float32;
            let qn2 = crate::simd::dot_f32(q, q);
            let mut k = needed * 2 + 8;
            loop {
                let ef_s = ef.unwrap_or(64).max(k);
                let accept_dyn: &(dyn Fn(u32) -> bool + Sync) = &accept;
                let mut r = if quantized {
                    let sp = space::Approx {
                        v: &st.vectors,
                        q,
                        qn2,
                    };
                    let mut r = st.graph.search(&sp, ef_s, ef_s, Some(accept_dyn));
                    for c in r.iter_mut() {
                        c.dist = st.vectors.exact(q, c.id);
                    }
                    r.sort_unstable();
                    r
                } else {
                    let sp = space::Exact { v: &st.vectors, q };
                    st.graph.search(&sp, k, ef_s, Some(accept_dyn))
                };
                r.truncate(k.max(r.len().min(ef_s)));
                let hits = group(&r);
                if hits.len() >= needed || r.len() < k || k >= candidates {
                    return hits;
                }
                k *= 4;
                if k > candidates / 2 {
                    break;
                }
            }
        }
        // Exact scan: every accepted vector, best chunk per document.
        let mut best: HashMap<u32, Cand> = HashMap::new();
        let mut visit = |v: u32| {
            if !accept(v) {
                return;
            }
            let d = st.vectors.exact(q, v);
            let doc = st.vids[v as usize].doc;
            let e = best.entry(doc).or_insert(Cand {
                dist: f32::INFINITY,
                id: v,
            });
            if d < e.dist {
                *e = Cand { dist: d, id: v };
            }
        };
        match &allowed {
            Some((bits, _)) => {
                for (w, &word) in bits.iter().enumerate() {
                    let mut x = word;
                    while x != 0 {
                        let b = x.trailing_zeros();
                        visit((w * 64) as u32 + b);
                        x &= x - 1;
                    }
                }
            }
            None => (0..n as u32).for_each(&mut visit),
        }
        let cands: Vec<Cand> = best.into_values().collect();
        group(&cands)
    }

    fn modify(&self, st: &State, slot: u32, score: f32, m: Option<&ScoreModifiers>) -> f32 {
        let Some(m) = m else { return score };
        let Some(d) = st.doc(slot) else { return score };
        let num = |f: &str| d.rec.fields.get(f).and_then(Value::as_f64);
        let mut mult = 1.0f64;
        for fw in &m.multiply_score_by {
            if let Some(x) = num(&fw.field_name) {
                mult *= fw.weight * x;
            }
        }
        let mut add = 0.0f64;
        for fw in &m.add_to_score {
            if let Some(x) = num(&fw.field_name) {
                add += fw.weight * x;
            }
        }
        (mult * score as f64 + add) as f32
    }

    fn lexical_hits(
        &self,
        st: &State,
        q: &str,
        filter: Option<&Filter>,
        fields: Option<&[String]>,
    ) -> Result<Vec<(u32, f32)>> {
        let lq = LexicalQuery::parse(q);
        let max = self.settings.filter_string_max_length;
        let mut hits: Vec<(u32, f32)> = self
            .text
            .search(&lq, fields)?
            .into_iter()
            // The text index may briefly hold a document the state has not installed yet (or
            // has just removed): only installed documents are answered.
            .filter_map(|(id, score)| st.ids.get(&id).map(|&slot| (slot, score)))
            .filter(|(slot, _)| {
                st.doc(*slot)
                    .is_some_and(|d| filter.is_none_or(|f| f.matches(&d.id, &d.rec.fields, max)))
            })
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(hits)
    }

    /// Searches the index (tensor, lexical or hybrid), Marqo's parameters and reply shape.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        let t0 = Instant::now();
        if req.limit == 0 || req.limit > 1000 {
            return Err(Error::InvalidArgument(format!(
                "limit must be in 1..=1000, got {}",
                req.limit
            )));
        }
        if req.offset > 10_000 {
            return Err(Error::InvalidArgument(
                "offset must be at most 10000".into(),
            ));
        }
        let filter = match req.filter.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => Some(Filter::parse(f)?),
            _ => None,
        };
        let needed = req.offset + req.limit;
        let approximate = req.approximate.unwrap_or(true);
        let q = req.q.as_ref();
        // Compute the query vector before taking the state lock (embedding is slow).
        let qvec = match req.search_method {
            SearchMethod::Lexical => None,
            _ => match q {
                Some(q) => Some(self.query_vector(q, req.context.as_ref())?),
                None => {
                    return Err(Error::InvalidArgument(
                        "q is required for tensor and hybrid search".into(),
                    ))
                }
            },
        };
        let st = self.state.read();
        let mods = req.score_modifiers.as_ref();
        let hp = req.hybrid_parameters.clone().unwrap_or_default();
        // (slot, score, highlight, tensor score, lexical score)
        type Row = (u32, f32, Option<(u32, u32)>, Option<f32>, Option<f32>);
        let mut rows: Vec<Row> = match req.search_method {
            SearchMethod::Tensor => {
                let mut want = needed;
                if mods.is_some() {
                    want = (needed * 4).max(100);
                }
                let hits = self.tensor_hits(
                    &st,
                    qvec.as_deref().unwrap_or(&[]),
                    want,
                    filter.as_ref(),
                    req.searchable_attributes.as_deref(),
                    req.ef_search,
                    approximate,
                );
                hits.into_iter()
                    .map(|h| {
                        (
                            h.slot,
                            self.modify(&st, h.slot, h.score, mods),
                            h.highlight,
                            None,
                            None,
                        )
                    })
                    .collect()
            }
            SearchMethod::Lexical => {
                let text = match q {
                    Some(Query::Content(s)) => s.clone(),
                    None => "*".to_string(),
                    Some(_) => {
                        return Err(Error::InvalidArgument(
                            "lexical search needs a string q".into(),
                        ))
                    }
                };
                self.lexical_hits(
                    &st,
                    &text,
                    filter.as_ref(),
                    req.searchable_attributes.as_deref(),
                )?
                .into_iter()
                .map(|(s, sc)| (s, self.modify(&st, s, sc, mods), None, None, None))
                .collect()
            }
            SearchMethod::Hybrid => {
                let text = match q {
                    Some(Query::Content(s)) => s.clone(),
                    _ => {
                        return Err(Error::InvalidArgument(
                            "hybrid search needs a string q".into(),
                        ))
                    }
                };
                if !(0.0..=1.0).contains(&hp.alpha) || hp.rrf_k < 0.0 {
                    return Err(Error::InvalidArgument(
                        "hybridParameters: alpha in [0, 1] and rrfK >= 0".into(),
                    ));
                }
                let depth = needed.max(hp.rrf_k as usize).max(60) * 2;
                let tfields = hp
                    .searchable_attributes_tensor
                    .as_deref()
                    .or(req.searchable_attributes.as_deref());
                let lfields = hp
                    .searchable_attributes_lexical
                    .as_deref()
                    .or(req.searchable_attributes.as_deref());
                let tensor = if hp.retrieval_method == RetrievalMethod::Lexical
                    && hp.ranking_method == RankingMethod::Lexical
                {
                    Vec::new()
                } else {
                    self.tensor_hits(
                        &st,
                        qvec.as_deref().unwrap_or(&[]),
                        depth,
                        filter.as_ref(),
                        tfields,
                        req.ef_search,
                        approximate,
                    )
                };
                let lexical = self.lexical_hits(&st, &text, filter.as_ref(), lfields)?;
                let mut tmap: HashMap<u32, TensorRank> = HashMap::new();
                for (r, h) in tensor.iter().take(depth).enumerate() {
                    tmap.insert(h.slot, (r + 1, h.score, h.highlight));
                }
                let mut lmap: HashMap<u32, (usize, f32)> = HashMap::new();
                for (r, (s, sc)) in lexical.iter().take(depth).enumerate() {
                    lmap.insert(*s, (r + 1, *sc));
                }
                let pool: Vec<u32> = match hp.retrieval_method {
                    RetrievalMethod::Disjunction => {
                        let mut p: Vec<u32> = tmap.keys().chain(lmap.keys()).copied().collect();
                        p.sort_unstable();
                        p.dedup();
                        p
                    }
                    RetrievalMethod::Tensor => tensor.iter().take(depth).map(|h| h.slot).collect(),
                    RetrievalMethod::Lexical => lexical.iter().take(depth).map(|h| h.0).collect(),
                };
                let exact_t = |slot: u32| -> Option<f32> {
                    // A tensor score for a document the tensor retrieval did not return.
                    let d = st.doc(slot)?;
                    let fs = tfields;
                    d.rec
                        .tensor
                        .iter()
                        .filter(|(f, _)| fs.is_none_or(|a| a.iter().any(|x| x == *f)))
                        .flat_map(|(_, t)| t.vids.iter())
                        .map(|&v| {
                            st.vectors
                                .metric()
                                .score(st.vectors.exact(qvec.as_deref().unwrap_or(&[]), v as u32))
                        })
                        .reduce(f32::max)
                };
                pool.into_iter()
                    .map(|slot| {
                        let t = tmap.get(&slot);
                        let l = lmap.get(&slot);
                        let ts = t.map(|x| x.1).or_else(|| match hp.ranking_method {
                            RankingMethod::Tensor => exact_t(slot),
                            _ => None,
                        });
                        let ls = l.map(|x| x.1);
                        let score = match hp.ranking_method {
                            RankingMethod::Rrf => {
                                t.map_or(0.0, |x| hp.alpha / (hp.rrf_k + x.0 as f32))
                                    + l.map_or(0.0, |x| (1.0 - hp.alpha) / (hp.rrf_k + x.0 as f32))
                            }
                            RankingMethod::Tensor => ts.unwrap_or(f32::NEG_INFINITY),
                            RankingMethod::Lexical => ls.unwrap_or(0.0),
                        };
                        (
                            slot,
                            self.modify(&st, slot, score, mods),
                            t.and_then(|x| x.2),
                            ts,
                            ls,
                        )
                    })
                    .collect()
            }
        };
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let attrs = req.attributes_to_retrieve.as_deref();
        let hits = rows
            .into_iter()
            .skip(req.offset)
            .take(req.limit)
            .filter_map(|(slot, score, hl, ts, ls)| {
                let d = st.doc(slot)?;
                let mut m = self.doc_json(d, attrs);
                m.insert("_score".into(), Value::from(score));
                if req.show_highlights {
                    let h = hl.map(|(f, c)| {
                        let field = st.field_names[f as usize].clone();
                        let chunk = d
                            .rec
                            .tensor
                            .get(&field)
                            .and_then(|t| t.chunks.get(c as usize))
                            .cloned()
                            .unwrap_or_default();
                        let mut o = Map::new();
                        o.insert(field, Value::String(chunk));
                        Value::Object(o)
                    });
                    m.insert("_highlights".into(), Value::Array(h.into_iter().collect()));
                }
                if req.search_method == SearchMethod::Hybrid {
                    m.insert("_tensor_score".into(), ts.map_or(Value::Null, Value::from));
                    m.insert("_lexical_score".into(), ls.map_or(Value::Null, Value::from));
                }
                Some(m)
            })
            .collect();
        Ok(SearchResponse {
            hits,
            query: req.q.clone(),
            limit: req.limit,
            offset: req.offset,
            processing_time_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!(index = %self.name, error = %e, "could not save the graph; it will be rebuilt on open");
        }
    }
}
