//! Lexical retrieval: an in-memory inverted index per field with BM25 scoring. It is derived
//! from the stored documents and rebuilt when an index opens (about a second per 100k short
//! documents). Quoted phrases are required; other terms are optional and only score.

use std::collections::HashMap;

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// Lower-cased alphanumeric runs.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[derive(Default)]
struct FieldIndex {
    postings: HashMap<String, Vec<(u32, u32)>>,
    doc_len: HashMap<u32, u32>,
    total_len: u64,
}

#[derive(Default)]
pub struct Lexical {
    fields: HashMap<String, FieldIndex>,
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

impl Lexical {
    /// Indexes the text of one field of document `doc`.
    pub fn add(&mut self, doc: u32, field: &str, text: &str) {
        let toks = tokenize(text);
        let fi = self.fields.entry(field.to_string()).or_default();
        let mut tf: HashMap<&str, u32> = HashMap::new();
        for t in &toks {
            *tf.entry(t.as_str()).or_default() += 1;
        }
        for (t, n) in tf {
            fi.postings.entry(t.to_string()).or_default().push((doc, n));
        }
        *fi.doc_len.entry(doc).or_default() += toks.len() as u32;
        fi.total_len += toks.len() as u64;
    }

    /// Forgets a document (its postings are skipped from now on and dropped lazily).
    pub fn remove(&mut self, doc: u32) {
        for fi in self.fields.values_mut() {
            if let Some(l) = fi.doc_len.remove(&doc) {
                fi.total_len -= l as u64;
            }
        }
    }

    /// BM25 scores of documents matching `q` in `fields` (all fields when `None`), summed over
    /// fields. `text_of(doc, field)` gives the field's text, to check phrases.
    pub fn search(
        &self,
        q: &LexicalQuery,
        fields: Option<&[String]>,
        text_of: &dyn Fn(u32, &str) -> Option<String>,
    ) -> HashMap<u32, f32> {
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let names: Vec<&String> = match fields {
            Some(f) => f.iter().filter(|n| self.fields.contains_key(*n)).collect(),
            None => self.fields.keys().collect(),
        };
        if q.match_all {
            for n in &names {
                for &d in self.fields[*n].doc_len.keys() {
                    scores.insert(d, 1.0);
                }
            }
            return scores;
        }
        for name in &names {
            let fi = &self.fields[*name];
            let n_docs = fi.doc_len.len() as f32;
            if n_docs == 0.0 {
                continue;
            }
            let avg = fi.total_len as f32 / n_docs;
            for t in &q.terms {
                let Some(post) = fi.postings.get(t) else {
                    continue;
                };
                let live: Vec<(u32, u32, u32)> = post
                    .iter()
                    .filter_map(|&(d, tf)| fi.doc_len.get(&d).map(|&l| (d, tf, l)))
                    .collect();
                let df = live.len() as f32;
                let idf = ((n_docs - df + 0.5) / (df + 0.5) + 1.0).ln();
                for (d, tf, len) in live {
                    let tf = tf as f32;
                    let s = idf * tf * (K1 + 1.0)
                        / (tf + K1 * (1.0 - B + B * len as f32 / avg.max(1e-6)));
                    *scores.entry(d).or_default() += s;
                }
            }
        }
        if !q.phrases.is_empty() {
            scores.retain(|&d, _| {
                q.phrases.iter().all(|p| {
                    names
                        .iter()
                        .any(|f| text_of(d, f).is_some_and(|t| contains_phrase(&tokenize(&t), p)))
                })
            });
        }
        scores
    }
}

fn contains_phrase(toks: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && toks.windows(phrase.len()).any(|w| w == phrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_required_and_bm25_prefers_rare_terms() {
        let texts = [
            "red shoe for running",
            "blue shoe",
            "red mug",
            "running shoe red",
        ];
        let mut l = Lexical::default();
        for (i, t) in texts.iter().enumerate() {
            l.add(i as u32, "title", t);
        }
        let text_of = |d: u32, _: &str| Some(texts[d as usize].to_string());
        let q = LexicalQuery::parse("\"red shoe\" running");
        assert_eq!(q.phrases, vec![vec!["red".to_string(), "shoe".to_string()]]);
        let s = l.search(&q, None, &text_of);
        assert_eq!(s.keys().copied().collect::<Vec<_>>(), vec![0]);
        let s = l.search(&LexicalQuery::parse("mug shoe"), None, &text_of);
        assert!(s[&2] > s[&1], "mug is rarer than shoe");
        l.remove(2);
        let s = l.search(&LexicalQuery::parse("mug"), None, &text_of);
        assert!(s.is_empty());
        assert_eq!(l.search(&LexicalQuery::parse("*"), None, &text_of).len(), 3);
    }
}
