//! The attribute-overlap oracle: the ceiling of the retrieval protocol on a shop.
//!
//! A shop's relevance mixes attribute overlap with popularity and per-pair noise, so no
//! ranking reaches nDCG 1. The oracle ranks every document by how many of the query's
//! attributes it has, popularity breaking ties: what a model that reads every attribute
//! perfectly (but learned nothing about popularity) would do. A model's figures read
//! against the oracle's on the same shop and the same query sample.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde::Deserialize;

use crate::SynthError;

#[derive(Deserialize)]
struct QueryEntry {
    query_id: String,
    query: String,
    attributes: HashMap<String, String>,
}

#[derive(Deserialize)]
struct DocEntry {
    popularity: f32,
    attributes: HashMap<String, Option<String>>,
}

/// Attribute-overlap scores of a generated shop, read from its `queries.json` and
/// `corpus.json` (so it works on any shop directory, whatever generated it).
#[derive(Debug, Clone)]
pub struct AttributeOracle {
    queries: HashMap<String, Vec<(String, String)>>,
    docs: HashMap<String, (HashMap<String, String>, f32)>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, SynthError> {
    let bytes = fs::read(path).map_err(|source| SynthError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| SynthError::Parse {
        path: path.to_owned(),
        source,
    })
}

impl AttributeOracle {
    /// Reads `DIR/queries.json` and `DIR/corpus.json`.
    pub fn load(dir: &Path) -> Result<Self, SynthError> {
        let queries: Vec<QueryEntry> = read_json(&dir.join("queries.json"))?;
        let docs: HashMap<String, DocEntry> = read_json(&dir.join("corpus.json"))?;
        // Keyed by id and by text: the protocol names a query by either.
        let queries = queries
            .into_iter()
            .flat_map(|q| {
                let mut attrs: Vec<(String, String)> = q.attributes.into_iter().collect();
                attrs.sort();
                [(q.query_id, attrs.clone()), (q.query, attrs)]
            })
            .collect();
        let docs = docs
            .into_iter()
            .map(|(id, d)| {
                let attrs = d
                    .attributes
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
                (id, (attrs, d.popularity))
            })
            .collect();
        Ok(AttributeOracle { queries, docs })
    }

    /// Number of documents known.
    pub fn num_documents(&self) -> usize {
        self.docs.len()
    }

    /// The query's attributes the document has (exact matches), plus its popularity in
    /// [0, 1) so that popularity only breaks ties between equal counts. `None` for an
    /// unknown query (id or text) or document id.
    pub fn score(&self, query_id: &str, product_id: &str) -> Option<f64> {
        let want = self.queries.get(query_id)?;
        let (has, popularity) = self.docs.get(product_id)?;
        let matched = want
            .iter()
            .filter(|(k, v)| has.get(k).is_some_and(|h| h == v))
            .count();
        // Popularity is u^2 with u in [0, 1); the clamp keeps a malformed file from
        // letting popularity outweigh one attribute.
        Some(matched as f64 + f64::from(popularity.clamp(0.0, 0.999)))
    }
}
