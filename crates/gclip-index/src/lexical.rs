//! Lexical retrieval on tantivy: one tantivy index per gclip index (`text/` beside
//! `index.redb`), derived from the stored documents. Each (document, text field) pair is one
//! tantivy document (`_id`, `field`, `text` with positions), so a search can be restricted to
//! some fields and scores are summed over the fields a document matches. BM25 statistics are
//! tantivy's (k1 1.2, b 0.75), over the text of all fields.
//!
//! Every commit carries a payload `<index uuid> <generation>`, the generation being the redb
//! write counter it reflects; on open a text index whose payload differs from the store's is
//! rebuilt from the documents (a crash between the redb commit, which is the acknowledgement,
//! and the tantivy commit leaves it one generation behind). Quoted phrases are required,
//! other terms optional.

use crate::error::{Error, Result};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::StrColumn;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Schema, FAST, STRING, TEXT};
use tantivy::{
    DocId, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument, Term,
};

/// Lower-cased alphanumeric runs (the same split as tantivy's default tokenizer).
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A parsed lexical query.
#[derive(Debug, Clone, PartialEq)]
pub struct LexicalQuery {
    /// Every term, phrase words included (they score too).
    pub terms: Vec<String>,
    /// Phrases (token sequences) a document must contain in one searched field.
    pub phrases: Vec<Vec<String>>,
    /// `*`: every document matches.
    pub match_all: bool,
}

impl LexicalQuery {
    pub fn parse(q: &str) -> Self {
        if q.trim() == "*" {
            return Self {
                terms: Vec::new(),
                phrases: Vec::new(),
                match_all: true,
            };
        }
        let mut terms = Vec::new();
        let mut phrases = Vec::new();
        let mut rest = q;
        while let Some(open) = rest.find('"') {
            terms.extend(tokenize(&rest[..open]));
            let after = &rest[open + 1..];
            match after.find('"') {
                Some(close) => {
                    let p = tokenize(&after[..close]);
                    if !p.is_empty() {
                        terms.extend(p.iter().cloned());
                        phrases.push(p);
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    // An unclosed quote is read as plain terms.
                    rest = after;
                }
            }
        }
        terms.extend(tokenize(rest));
        Self {
            terms,
            phrases,
            match_all: false,
        }
    }
}

/// Writer heap: tantivy flushes a segment when it is full.
const WRITER_BYTES: usize = 32 << 20;

fn text_err(path: &Path, e: tantivy::TantivyError) -> Error {
    Error::TextIndex {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// One document's text to index: `(field, text)` pairs.
pub(crate) type DocTexts = Vec<(String, String)>;

/// A change to apply to the text index in the next commit.
pub(crate) enum TextOp {
    /// Remove every text of this document id.
    Delete(String),
    /// Index these texts for this id (after a `Delete` of the same id when it replaces).
    Add(String, DocTexts),
}

pub(crate) struct TextIndex {
    path: PathBuf,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    f_id: Field,
    f_field: Field,
    f_text: Field,
}

fn schema() -> (Schema, Field, Field, Field) {
    let mut b = Schema::builder();
    let id = b.add_text_field("_id", STRING | FAST);
    let field = b.add_text_field("field", STRING);
    let text = b.add_text_field("text", TEXT);
    (b.build(), id, field, text)
}

impl TextIndex {
    /// Opens (or creates) the text index in `path`. One that cannot be opened with this
    /// schema is deleted and created empty; the caller sees a stale payload and rebuilds it.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let (sch, f_id, f_field, f_text) = schema();
        let open = || -> tantivy::Result<tantivy::Index> {
            std::fs::create_dir_all(path)?;
            let dir = tantivy::directory::MmapDirectory::open(path)?;
            let index = tantivy::Index::open_or_create(dir, sch.clone())?;
            Ok(index)
        };
        let index = match open() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "text index unreadable; recreating it");
                std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
                open().map_err(|e| text_err(path, e))?
            }
        };
        let writer = index
            .writer_with_num_threads(1, WRITER_BYTES)
            .map_err(|e| text_err(path, e))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| text_err(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader,
            f_id,
            f_field,
            f_text,
        })
    }

    /// The payload of the last commit (`<uuid> <generation>`), if any.
    pub(crate) fn payload(&self) -> Option<String> {
        let w = self.writer.lock();
        w.index().load_metas().ok()?.payload
    }

    /// Applies `ops` and commits with `payload`; `reset` first deletes every document (a
    /// rebuild). Searches see the change when this returns.
    pub(crate) fn commit(&self, reset: bool, ops: Vec<TextOp>, payload: &str) -> Result<()> {
        let mut w = self.writer.lock();
        let err = |e| text_err(&self.path, e);
        if reset {
            w.delete_all_documents().map_err(err)?;
        }
        for op in ops {
            match op {
                TextOp::Delete(id) => {
                    w.delete_term(Term::from_field_text(self.f_id, &id));
                }
                TextOp::Add(id, texts) => {
                    for (field, text) in texts {
                        let mut d = TantivyDocument::default();
                        d.add_text(self.f_id, &id);
                        d.add_text(self.f_field, &field);
                        d.add_text(self.f_text, &text);
                        w.add_document(d).map_err(err)?;
                    }
                }
            }
        }
        let mut pc = w.prepare_commit().map_err(err)?;
        pc.set_payload(payload);
        pc.commit().map_err(err)?;
        drop(w);
        self.reader.reload().map_err(err)?;
        Ok(())
    }

    /// Restricts a query to texts of `fields` (every field when `None`).
    fn within(&self, q: Box<dyn Query>, fields: Option<&[String]>) -> Box<dyn Query> {
        let Some(fields) = fields else {
            return q;
        };
        let any: Vec<(Occur, Box<dyn Query>)> = fields
            .iter()
            .map(|f| {
                let t = TermQuery::new(
                    Term::from_field_text(self.f_field, f),
                    IndexRecordOption::Basic,
                );
                (Occur::Should, Box::new(t) as Box<dyn Query>)
            })
            .collect();
        let restriction = ConstScoreQuery::new(Box::new(BooleanQuery::new(any)), 0.0);
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(restriction) as Box<dyn Query>),
            (Occur::Must, q),
        ]))
    }

    fn term_query(&self, t: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(self.f_text, t),
            IndexRecordOption::WithFreqs,
        ))
    }

    fn run(&self, q: &dyn Query) -> Result<HashMap<String, f32>> {
        let searcher = self.reader.searcher();
        searcher
            .search(q, &ById { field: "_id" })
            .map_err(|e| text_err(&self.path, e))
    }

    /// BM25 scores by document id of the documents matching `q` in `fields` (all fields when
    /// `None`), summed over the fields a document matches.
    pub(crate) fn search(
        &self,
        q: &LexicalQuery,
        fields: Option<&[String]>,
    ) -> Result<HashMap<String, f32>> {
        if let Some(f) = fields {
            if f.is_empty() {
                return Ok(HashMap::new());
            }
        }
        if q.match_all {
            let all = self.within(
                Box::new(ConstScoreQuery::new(Box::new(AllQuery), 1.0)),
                fields,
            );
            let mut hits = self.run(all.as_ref())?;
            hits.values_mut().for_each(|s| *s = 1.0);
            return Ok(hits);
        }
        if q.terms.is_empty() {
            return Ok(HashMap::new());
        }
        let mut seen = HashSet::new();
        let terms: Vec<(Occur, Box<dyn Query>)> = q
            .terms
            .iter()
            .filter(|t| seen.insert(t.as_str()))
            .map(|t| (Occur::Should, self.term_query(t)))
            .collect();
        let scored = self.within(Box::new(BooleanQuery::new(terms)), fields);
        let mut hits = self.run(scored.as_ref())?;
        for p in &q.phrases {
            // A phrase must occur inside one field's text.
            let pq: Box<dyn Query> = if p.len() == 1 {
                self.term_query(&p[0])
            } else {
                Box::new(PhraseQuery::new(
                    p.iter()
                        .map(|t| Term::from_field_text(self.f_text, t))
                        .collect(),
                ))
            };
            let with = self.run(self.within(pq, fields).as_ref())?;
            hits.retain(|id, _| with.contains_key(id));
            if hits.is_empty() {
                break;
            }
        }
        Ok(hits)
    }
}

/// Collects every match as document id -> summed score, reading ids from the fast field.
struct ById {
    field: &'static str,
}

struct ByIdSegment {
    ids: Option<StrColumn>,
    hits: Vec<(u64, Score)>,
}

impl Collector for ById {
    type Fruit = HashMap<String, f32>;
    type Child = ByIdSegment;

    fn for_segment(&self, _: u32, segment: &SegmentReader) -> tantivy::Result<ByIdSegment> {
        Ok(ByIdSegment {
            ids: segment.fast_fields().str(self.field)?,
            hits: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, parts: Vec<HashMap<String, f32>>) -> tantivy::Result<Self::Fruit> {
        let mut out: HashMap<String, f32> = HashMap::new();
        for p in parts {
            for (id, s) in p {
                *out.entry(id).or_default() += s;
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for ByIdSegment {
    type Fruit = HashMap<String, f32>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(col) = &self.ids {
            if let Some(ord) = col.term_ords(doc).next() {
                self.hits.push((ord, score));
            }
        }
    }

    fn harvest(self) -> Self::Fruit {
        let mut out: HashMap<String, f32> = HashMap::new();
        let Some(col) = self.ids else {
            return out;
        };
        let mut by_ord: HashMap<u64, f32> = HashMap::new();
        for (ord, s) in self.hits {
            *by_ord.entry(ord).or_default() += s;
        }
        let mut id = String::new();
        for (ord, s) in by_ord {
            id.clear();
            if col.ord_to_str(ord, &mut id).unwrap_or(false) {
                *out.entry(id.clone()).or_default() += s;
            }
        }
        out
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: &str, text: &str) -> TextOp {
        TextOp::Add(id.into(), vec![("title".into(), text.into())])
    }

    #[test]
    fn phrases_are_required_bm25_prefers_rare_terms_and_payload_persists() {
        let dir = tempfile::tempdir().unwrap();
        let t = TextIndex::open(dir.path()).unwrap();
        assert_eq!(t.payload(), None);
        let texts = [
            "red shoe for running",
            "blue shoe",
            "red mug",
            "running shoe red",
        ];
        let ops = texts
            .iter()
            .enumerate()
            .map(|(i, x)| add(&i.to_string(), x))
            .collect();
        t.commit(false, ops, "u 1").unwrap();
        let q = LexicalQuery::parse("\"red shoe\" running");
        assert_eq!(q.phrases, vec![vec!["red".to_string(), "shoe".to_string()]]);
        let s = t.search(&q, None).unwrap();
        assert_eq!(s.keys().cloned().collect::<Vec<_>>(), vec!["0".to_string()]);
        let s = t.search(&LexicalQuery::parse("mug shoe"), None).unwrap();
        assert!(s["2"] > s["1"], "mug is rarer than shoe");
        t.commit(false, vec![TextOp::Delete("2".into())], "u 2")
            .unwrap();
        assert!(t
            .search(&LexicalQuery::parse("mug"), None)
            .unwrap()
            .is_empty());
        assert_eq!(t.search(&LexicalQuery::parse("*"), None).unwrap().len(), 3);
        let other = ["desc".to_string()];
        assert!(t
            .search(&LexicalQuery::parse("shoe"), Some(&other))
            .unwrap()
            .is_empty());
        drop(t);
        let t = TextIndex::open(dir.path()).unwrap();
        assert_eq!(t.payload().as_deref(), Some("u 2"));
        assert_eq!(
            t.search(&LexicalQuery::parse("shoe"), None).unwrap().len(),
            3
        );
        t.commit(true, vec![add("9", "green mug")], "u 3").unwrap();
        assert_eq!(
            t.search(&LexicalQuery::parse("mug shoe"), None)
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            vec!["9".to_string()]
        );
    }
}
