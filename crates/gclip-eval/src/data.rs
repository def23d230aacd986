//! Tabular data files (CSV / TSV / JSONL / JSON) with arbitrary column names.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{io_err, EvalError, Result};

/// A table of optional string cells. Missing values (empty CSV cells, JSON `null`,
/// absent JSON keys) are `None`; numbers keep their JSON spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names, in first-seen order.
    pub columns: Vec<String>,
    /// Rows, one cell per column.
    pub rows: Vec<Vec<Option<String>>>,
    /// Directory that relative image paths are resolved against (the file's folder).
    pub base_dir: PathBuf,
    /// File the table came from (for messages).
    pub source: PathBuf,
}

impl Table {
    /// Reads `path` by extension: `.csv`, `.tsv`, `.jsonl`/`.ndjson` (one object per
    /// line) or `.json` (an array of objects, or Marqo's doc-meta object
    /// `{id: {field: value}}`, whose keys become column `id_column`).
    pub fn read(path: &Path, id_column: &str) -> Result<Table> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut t = Table {
            columns: Vec::new(),
            rows: Vec::new(),
            base_dir,
            source: path.to_owned(),
        };
        match ext.as_str() {
            "csv" => t.read_delimited(b','),
            "tsv" => t.read_delimited(b'\t'),
            "jsonl" | "ndjson" => {
                let text = std::fs::read_to_string(path).map_err(io_err(path))?;
                for (no, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let v: Value = serde_json::from_str(line)
                        .map_err(|e| t.err(format!("line {}: {e}", no + 1)))?;
                    t.push_object(&v, None, id_column)
                        .map_err(|m| t.err(format!("line {}: {m}", no + 1)))?;
                }
                Ok(())
            }
            "json" => {
                let text = std::fs::read_to_string(path).map_err(io_err(path))?;
                let v: Value = serde_json::from_str(&text).map_err(|e| t.err(e.to_string()))?;
                match v {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            t.push_object(item, None, id_column)
                                .map_err(|m| t.err(format!("item {i}: {m}")))?;
                        }
                    }
                    Value::Object(map) => {
                        for (id, item) in &map {
                            t.push_object(item, Some(id), id_column)
                                .map_err(|m| t.err(format!("document {id:?}: {m}")))?;
                        }
                    }
                    _ => return Err(t.err("expected a JSON array or object".into())),
                }
                Ok(())
            }
            _ => Err(t.err(format!(
                "unsupported extension {ext:?} (use .csv, .tsv, .jsonl, .ndjson or .json)"
            ))),
        }?;
        Ok(t)
    }

    fn err(&self, msg: String) -> EvalError {
        EvalError::Data {
            path: self.source.clone(),
            msg,
        }
    }

    fn read_delimited(&mut self, delim: u8) -> Result<()> {
        let mut r = csv::ReaderBuilder::new()
            .delimiter(delim)
            .from_path(&self.source)
            .map_err(|e| self.err(e.to_string()))?;
        self.columns = r
            .headers()
            .map_err(|e| self.err(e.to_string()))?
            .iter()
            .map(str::to_owned)
            .collect();
        for rec in r.records() {
            let rec = rec.map_err(|e| self.err(e.to_string()))?;
            let row = (0..self.columns.len())
                .map(|i| rec.get(i).filter(|s| !s.is_empty()).map(str::to_owned))
                .collect();
            self.rows.push(row);
        }
        Ok(())
    }

    fn column_or_add(&mut self, name: &str) -> usize {
        match self.column(name) {
            Some(i) => i,
            None => {
                self.columns.push(name.to_owned());
                for r in &mut self.rows {
                    r.push(None);
                }
                self.columns.len() - 1
            }
        }
    }

    fn push_object(
        &mut self,
        v: &Value,
        id: Option<&str>,
        id_column: &str,
    ) -> std::result::Result<(), String> {
        let Value::Object(map) = v else {
            return Err("expected a JSON object".into());
        };
        let mut row = vec![None; self.columns.len()];
        if let Some(id) = id {
            let c = self.column_or_add(id_column);
            row.resize(self.columns.len(), None);
            row[c] = Some(id.to_owned());
        }
        for (k, val) in map {
            let c = self.column_or_add(k);
            row.resize(self.columns.len(), None);
            let cell = match val {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            if id.is_none() || k != id_column {
                row[c] = cell;
            }
        }
        self.rows.push(row);
        Ok(())
    }

    /// Index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Index of column `name`, or an error naming the file and the columns it has.
    pub fn require(&self, name: &str, role: &str) -> Result<usize> {
        self.column(name).ok_or_else(|| {
            self.err(format!(
                "no column {name:?} ({role}); columns are {:?}",
                self.columns
            ))
        })
    }

    /// Resolves an image cell against the table's folder.
    pub fn resolve(&self, cell: &str) -> PathBuf {
        let p = Path::new(cell);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// Text, embedded with the text tower.
    Text,
    /// An image path, embedded with the image tower.
    Image,
}

const IMAGE_EXTS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// True when `s` ends in a known image file extension.
pub fn looks_like_image_path(s: &str) -> bool {
    Path::new(s)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}

impl FieldKind {
    /// Guesses the kind of column `col`: image when it has values and every value looks
    /// like an image path, text otherwise.
    pub fn detect(table: &Table, col: usize) -> FieldKind {
        let mut any = false;
        for r in &table.rows {
            if let Some(v) = &r[col] {
                any = true;
                if !looks_like_image_path(v) {
                    return FieldKind::Text;
                }
            }
        }
        if any {
            FieldKind::Image
        } else {
            FieldKind::Text
        }
    }
}

/// One input field of a query or document and its fusion weight.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldSpec {
    /// Column name.
    pub key: String,
    /// Fusion weight (non-negative).
    pub weight: f32,
    /// Text or image; `None` = detect from the data.
    pub kind: Option<FieldKind>,
}

impl FieldSpec {
    /// Builds specs from parallel lists of keys, weights (empty = all 1) and kinds
    /// (empty = detect).
    pub fn list(keys: &[String], weights: &[f32], kinds: &[FieldKind]) -> Result<Vec<FieldSpec>> {
        if keys.is_empty() {
            return Err(EvalError::Config("no field keys given".into()));
        }
        if !weights.is_empty() && weights.len() != keys.len() {
            return Err(EvalError::Config(format!(
                "{} weights for {} keys",
                weights.len(),
                keys.len()
            )));
        }
        if !kinds.is_empty() && kinds.len() != keys.len() {
            return Err(EvalError::Config(format!(
                "{} kinds for {} keys",
                kinds.len(),
                keys.len()
            )));
        }
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let weight = weights.get(i).copied().unwrap_or(1.0);
                if !(weight >= 0.0 && weight.is_finite()) {
                    return Err(EvalError::Config(format!(
                        "weight {weight} of field {k:?} must be finite and >= 0"
                    )));
                }
                Ok(FieldSpec {
                    key: k.clone(),
                    weight,
                    kind: kinds.get(i).copied(),
                })
            })
            .collect()
    }
}

/// Fuses per-field embeddings as Marqo's evaluation does: each present field is
/// normalised, weights of present fields are renormalised to sum 1 (a missing field
/// gets weight 0), and the weighted sum is normalised ([`gclip_vectors::fuse`]). `None`
/// when no field with a positive weight is present; an error when the present fields
/// differ in length or `weights` does not have one weight per field.
pub fn fuse(
    fields: &[Option<&[f32]>],
    weights: &[f32],
) -> Result<Option<Vec<f32>>, gclip_vectors::VectorError> {
    if fields.len() != weights.len() {
        return Err(gclip_vectors::VectorError::DimMismatch {
            expected: fields.len(),
            got: weights.len(),
        });
    }
    let normalized: Vec<Option<Vec<f32>>> = fields
        .iter()
        .map(|f| {
            f.map(|e| {
                let mut e = e.to_vec();
                gclip_vectors::normalize(&mut e);
                e
            })
        })
        .collect();
    let Some(dim) = normalized.iter().flatten().next().map(Vec::len) else {
        return Ok(None);
    };
    let parts: Vec<(Option<&[f32]>, f32)> = normalized
        .iter()
        .zip(weights)
        .map(|(f, &w)| (f.as_deref(), w))
        .collect();
    if parts
        .iter()
        .filter(|(f, _)| f.is_some())
        .map(|(_, w)| w)
        .sum::<f32>()
        <= 0.0
    {
        return Ok(None);
    }
    gclip_vectors::fuse(dim, &parts)
}
