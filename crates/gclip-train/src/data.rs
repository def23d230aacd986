//! Training rows: reading CSV / JSONL / Parquet tables, turning rows into
//! weighted (left, right) examples as the config says, and encoding batches.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};

/// One raw table row: column name to cell text (`None` for null / empty).
pub type RawRow = BTreeMap<String, Option<String>>;

/// One field of an example side.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Text to tokenize.
    Text(String),
    /// Image file (already resolved against the data file's directory).
    Image(PathBuf),
    /// The cell is empty: the field's fusion weight becomes 0 for this row.
    Missing,
}

/// A training pair with its weight and group ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Fields of the left (query) side, in `leftKeys` order.
    pub left: Vec<Field>,
    /// Fields of the right (document) side, in `rightKeys` order.
    pub right: Vec<Field>,
    /// Pair weight after the score-to-weight function.
    pub weight: f32,
    /// Query group: rows with the same id are not each other's negatives.
    pub left_id: u64,
    /// Document group.
    pub right_id: u64,
    /// 1-based row number in the source file (for messages).
    pub row: usize,
}

/// The usable examples of a file plus what was rejected.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Examples, in file order.
    pub examples: Vec<Example>,
    /// Rows rejected while reading (bad weight, every field of a side empty).
    pub rejected: Vec<(usize, String)>,
}

impl Dataset {
    /// Appends another file's examples (their row numbers stay those of their own file).
    pub fn extend(&mut self, other: Dataset) {
        self.examples.extend(other.examples);
        self.rejected.extend(other.rejected);
    }

    /// Gives every example its own left and right id, so no two rows are exempt from
    /// being each other's negatives (the no-de-duplication ablation of GCL).
    pub fn make_ids_distinct(&mut self) {
        for (k, ex) in self.examples.iter_mut().enumerate() {
            ex.left_id = k as u64;
            ex.right_id = k as u64;
        }
    }
}

/// Reads every row of a `.csv`, `.jsonl`/`.ndjson`/`.json` (one object per
/// line) or `.parquet` file.
pub fn read_table(path: &Path) -> Result<Vec<RawRow>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" => read_csv(path, if ext == "tsv" { b'\t' } else { b',' }),
        "jsonl" | "ndjson" | "json" => read_jsonl(path),
        "parquet" => read_parquet(path),
        _ => Err(TrainError::Data(format!(
            "{}: unknown table format (expected .csv, .tsv, .jsonl or .parquet)",
            path.display()
        ))),
    }
}

fn read_csv(path: &Path, delim: u8) -> Result<Vec<RawRow>> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .from_path(path)
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    let headers = rdr
        .headers()
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?
        .clone();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec =
            rec.map_err(|e| TrainError::Data(format!("{} row {}: {e}", path.display(), i + 1)))?;
        let row = headers
            .iter()
            .zip(rec.iter())
            .map(|(h, v)| (h.to_string(), (!v.is_empty()).then(|| v.to_string())))
            .collect();
        rows.push(row);
    }
    Ok(rows)
}

fn json_cell(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<RawRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| TrainError::Data(format!("{} line {}: {e}", path.display(), i + 1)))?;
        let obj = v.as_object().ok_or_else(|| {
            TrainError::Data(format!(
                "{} line {}: not a JSON object",
                path.display(),
                i + 1
            ))
        })?;
        rows.push(obj.iter().map(|(k, v)| (k.clone(), json_cell(v))).collect());
    }
    Ok(rows)
}

#[cfg(feature = "parquet")]
fn read_parquet(path: &Path) -> Result<Vec<RawRow>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field as PqField;
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    let iter = reader
        .get_row_iter(None)
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (i, row) in iter.enumerate() {
        let row =
            row.map_err(|e| TrainError::Data(format!("{} row {}: {e}", path.display(), i + 1)))?;
        let mut out = RawRow::new();
        for (name, field) in row.get_column_iter() {
            let cell = match field {
                PqField::Null => None,
                PqField::Str(s) if s.is_empty() => None,
                PqField::Str(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            out.insert(name.clone(), cell);
        }
        rows.push(out);
    }
    Ok(rows)
}

#[cfg(not(feature = "parquet"))]
fn read_parquet(path: &Path) -> Result<Vec<RawRow>> {
    Err(TrainError::Data(format!(
        "{}: Parquet support is not compiled in (rebuild gclip-train with `--features parquet`)",
        path.display()
    )))
}

/// Stable 64-bit id of a string (SipHash with fixed zero keys).
pub fn stable_id(s: &str) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn side_fields(row: &RawRow, keys: &[String], image_keys: &[String], base: &Path) -> Vec<Field> {
    keys.iter()
        .map(|k| match row.get(k).cloned().flatten() {
            None => Field::Missing,
            Some(v) if image_keys.contains(k) => {
                let p = PathBuf::from(&v);
                Field::Image(if p.is_relative() { base.join(p) } else { p })
            }
            Some(v) => Field::Text(v),
        })
        .collect()
}

fn side_id(row: &RawRow, key: Option<&str>, keys: &[String]) -> u64 {
    match key.and_then(|k| row.get(k).cloned().flatten()) {
        Some(v) => stable_id(&v),
        // No id column: rows with identical content form one group.
        None => {
            let joined: Vec<String> = keys
                .iter()
                .map(|k| row.get(k).cloned().flatten().unwrap_or_default())
                .collect();
            stable_id(&joined.join("\u{1f}"))
        }
    }
}

/// Turns raw rows into examples following `cfg` (`base` resolves relative
/// image paths). A configured column absent from every row is an error;
/// rows with an unusable weight or with every field of a side empty are
/// rejected and listed in [`Dataset::rejected`].
pub fn examples_from_rows(rows: &[RawRow], cfg: &TrainConfig, base: &Path) -> Result<Dataset> {
    let mut needed: Vec<&String> = cfg.left_keys.iter().chain(&cfg.right_keys).collect();
    if let Some(k) = &cfg.weight_key {
        needed.push(k);
    }
    for k in needed {
        if !rows.iter().any(|r| r.contains_key(k)) {
            let cols: Vec<&String> = rows.first().map(|r| r.keys().collect()).unwrap_or_default();
            return Err(TrainError::Data(format!(
                "no column `{k}` (columns: {cols:?})"
            )));
        }
    }
    let mut ds = Dataset::default();
    for (i, row) in rows.iter().enumerate() {
        let n = i + 1;
        let weight = match &cfg.weight_key {
            None => 1.0,
            Some(k) => {
                let Some(raw) = row.get(k).cloned().flatten() else {
                    ds.rejected.push((n, format!("empty weight column `{k}`")));
                    continue;
                };
                let Ok(x) = raw.trim().parse::<f32>() else {
                    ds.rejected
                        .push((n, format!("weight `{raw}` is not a number")));
                    continue;
                };
                match cfg.score_to_weight.apply(x) {
                    Some(w) => w,
                    None => {
                        ds.rejected.push((
                            n,
                            format!("weight of score {x} is not a non-negative number"),
                        ));
                        continue;
                    }
                }
            }
        };
        let left = side_fields(row, &cfg.left_keys, &cfg.image_keys, base);
        let right = side_fields(row, &cfg.right_keys, &cfg.image_keys, base);
        let usable = |f: &[Field], w: &[f32]| {
            f.iter()
                .zip(w)
                .any(|(f, w)| *f != Field::Missing && *w > 0.0)
        };
        if !usable(&left, &cfg.left_weights) || !usable(&right, &cfg.right_weights) {
            ds.rejected
                .push((n, "every weighted field of one side is empty".into()));
            continue;
        }
        ds.examples.push(Example {
            left,
            right,
            weight,
            left_id: side_id(row, cfg.left_id_key.as_deref(), &cfg.left_keys),
            right_id: side_id(row, cfg.right_id_key.as_deref(), &cfg.right_keys),
            row: n,
        });
    }
    Ok(ds)
}

/// Reads `path` and builds its examples (image paths relative to its directory).
pub fn load_dataset(path: &Path, cfg: &TrainConfig) -> Result<Dataset> {
    let rows = read_table(path)?;
    if rows.is_empty() {
        return Err(TrainError::Data(format!("{}: no rows", path.display())));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let ds = examples_from_rows(&rows, cfg, base)?;
    if ds.examples.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: none of the {} rows is usable (first problem: {:?})",
            path.display(),
            rows.len(),
            ds.rejected.first()
        )));
    }
    Ok(ds)
}

/// Turns texts into token ids. Implemented for the CLIP BPE tokenizer; tests
/// and custom vocabularies can supply their own.
pub trait TextEncoder: Send + Sync {
    /// Token ids of each text, padded / truncated to `context_length`
    /// (open_clip convention: SOT, ids, EOT, zeros; EOT is the largest id).
    fn encode(&self, texts: &[&str], context_length: usize) -> Result<Vec<Vec<u32>>>;
}

/// Turns an image file into the model's normalised CHW input.
pub trait ImageLoader: Send + Sync {
    /// `3 * size * size` floats, channel-major. An unreadable file is an error
    /// (the trainer then skips the row).
    fn load(&self, path: &Path) -> Result<Vec<f32>>;
}

#[cfg(all(test, feature = "parquet"))]
mod parquet_tests {
    use std::sync::Arc;

    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::*;

    #[test]
    fn parquet_rows_read_like_csv() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rows.parquet");
        let schema = Arc::new(
            parse_message_type(
                "message rows { REQUIRED BYTE_ARRAY query (UTF8); OPTIONAL BYTE_ARRAY title (UTF8); REQUIRED DOUBLE score; }",
            )
            .unwrap(),
        );
        let props = Arc::new(WriterProperties::builder().build());
        let file = std::fs::File::create(&path).unwrap();
        let mut w = SerializedFileWriter::new(file, schema, props).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut i = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            match i {
                0 => {
                    let v: Vec<ByteArray> = vec!["a b".into(), "c".into()];
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
                1 => {
                    let v: Vec<ByteArray> = vec!["T".into()];
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, Some(&[1, 0]), None)
                        .unwrap();
                }
                _ => {
                    col.typed::<DoubleType>()
                        .write_batch(&[2.5, 1.0], None, None)
                        .unwrap();
                }
            }
            col.close().unwrap();
            i += 1;
        }
        rg.close().unwrap();
        w.close().unwrap();
        let rows = read_table(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["query"].as_deref(), Some("a b"));
        assert_eq!(rows[0]["title"].as_deref(), Some("T"));
        assert_eq!(rows[1]["title"], None);
        assert_eq!(
            rows[1]["score"]
                .as_deref()
                .map(|s| s.parse::<f64>().unwrap()),
            Some(1.0)
        );
    }
}
