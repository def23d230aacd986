//! Request and response shapes, named and serialised as Marqo's JSON so that an HTTP layer
//! can pass bodies straight through.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How a field named in `mappings` is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mapping {
    /// One vector from several subfields: the weighted mean of their (normalised) vectors.
    MultimodalCombination { weights: BTreeMap<String, f32> },
    /// The document gives the vector: `{"vector": [...], "content": "..."}`.
    CustomVector,
}

/// `add_documents` arguments (Marqo's body of `POST /indexes/{name}/documents`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddDocuments {
    pub documents: Vec<Value>,
    #[serde(default)]
    pub tensor_fields: Vec<String>,
    #[serde(default)]
    pub mappings: BTreeMap<String, Mapping>,
    /// Accepted for compatibility; gclip always reuses a field's stored vectors when its
    /// content is unchanged.
    #[serde(default)]
    pub use_existing_tensors: Option<bool>,
    /// Not supported (no image download headers): must be absent or null.
    #[serde(default)]
    pub image_download_headers: Option<Map<String, Value>>,
    #[serde(default)]
    pub text_chunk_prefix: Option<String>,
}

/// The outcome for one document of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemStatus {
    #[serde(rename = "_id")]
    pub id: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ItemStatus {
    pub(crate) fn ok(id: &str, status: u16, result: &str) -> Self {
        Self {
            id: id.to_string(),
            status,
            result: Some(result.to_string()),
            message: None,
            error: None,
            code: None,
        }
    }

    pub(crate) fn failed(id: &str, e: &crate::Error) -> Self {
        let msg = e.to_string();
        Self {
            id: id.to_string(),
            status: e.http_status(),
            result: None,
            message: Some(msg.clone()),
            error: Some(msg),
            code: Some(e.code().to_string()),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status < 300
    }
}

/// The reply to a batch write.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub errors: bool,
    pub items: Vec<ItemStatus>,
    pub processing_time_ms: f64,
}

/// What to search for.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A text, or an image reference when the index treats URLs and pointers as images.
    Content(String),
    /// `{content: weight}`; negative weights push away.
    Weighted(BTreeMap<String, f32>),
    /// `{"customVector": {"vector": [...]}}`.
    Vector(Vec<f32>),
}

impl Serialize for Query {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Query::Content(c) => c.serialize(s),
            Query::Weighted(w) => w.serialize(s),
            Query::Vector(v) => serde_json::json!({"customVector": {"vector": v}}).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Query {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        match v {
            Value::String(s) => Ok(Query::Content(s)),
            Value::Object(m) => {
                if let Some(cv) = m.get("customVector") {
                    let vec = cv
                        .get("vector")
                        .cloned()
                        .ok_or_else(|| D::Error::custom("customVector needs a `vector`"))?;
                    let vec: Vec<f32> = serde_json::from_value(vec).map_err(D::Error::custom)?;
                    return Ok(Query::Vector(vec));
                }
                let mut w = BTreeMap::new();
                for (k, v) in m {
                    let x = v.as_f64().ok_or_else(|| {
                        D::Error::custom(format!("weight of `{k}` is not a number"))
                    })?;
                    w.insert(k, x as f32);
                }
                Ok(Query::Weighted(w))
            }
            _ => Err(D::Error::custom(
                "q must be a string, a {content: weight} object or {\"customVector\": ...}",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SearchMethod {
    #[default]
    Tensor,
    Lexical,
    Hybrid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldWeight {
    pub field_name: String,
    pub weight: f64,
}

/// score' = (product of weight x field over `multiply_score_by`) x score + sum of weight x field
/// over `add_to_score`; documents lacking a field skip that term.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreModifiers {
    #[serde(default)]
    pub multiply_score_by: Vec<FieldWeight>,
    #[serde(default)]
    pub add_to_score: Vec<FieldWeight>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalMethod {
    #[default]
    Disjunction,
    Tensor,
    Lexical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RankingMethod {
    #[default]
    Rrf,
    Tensor,
    Lexical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HybridParameters {
    #[serde(default)]
    pub retrieval_method: RetrievalMethod,
    #[serde(default)]
    pub ranking_method: RankingMethod,
    #[serde(default = "half_alpha")]
    pub alpha: f32,
    #[serde(default = "rrf_k")]
    pub rrf_k: f32,
    #[serde(default)]
    pub searchable_attributes_lexical: Option<Vec<String>>,
    #[serde(default)]
    pub searchable_attributes_tensor: Option<Vec<String>>,
}

fn half_alpha() -> f32 {
    0.5
}
fn rrf_k() -> f32 {
    60.0
}

impl Default for HybridParameters {
    fn default() -> Self {
        Self {
            retrieval_method: RetrievalMethod::Disjunction,
            ranking_method: RankingMethod::Rrf,
            alpha: 0.5,
            rrf_k: 60.0,
            searchable_attributes_lexical: None,
            searchable_attributes_tensor: None,
        }
    }
}

/// Extra query vectors mixed into a tensor query (Marqo's `context.tensor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextVector {
    pub vector: Vec<f32>,
    pub weight: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchContext {
    #[serde(default)]
    pub tensor: Vec<ContextVector>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchRequest {
    #[serde(default)]
    pub q: Option<Query>,
    #[serde(default)]
    pub search_method: SearchMethod,
    #[serde(default = "ten")]
    pub limit: usize,
    #[serde(default)]
    pub offset: usize,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub searchable_attributes: Option<Vec<String>>,
    #[serde(default)]
    pub attributes_to_retrieve: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub show_highlights: bool,
    #[serde(default)]
    pub ef_search: Option<usize>,
    /// `false` forces the exact scan.
    #[serde(default)]
    pub approximate: Option<bool>,
    #[serde(default)]
    pub score_modifiers: Option<ScoreModifiers>,
    #[serde(default)]
    pub hybrid_parameters: Option<HybridParameters>,
    #[serde(default)]
    pub context: Option<SearchContext>,
}

fn ten() -> usize {
    10
}
fn yes() -> bool {
    true
}

impl Default for SearchRequest {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl SearchRequest {
    /// A tensor search for `q` with default parameters.
    pub fn text(q: &str) -> Self {
        Self {
            q: Some(Query::Content(q.to_string())),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResponse {
    /// Each hit: the retrieved fields plus `_id`, `_score`, `_highlights` (and for hybrid
    /// searches `_tensor_score` / `_lexical_score`).
    pub hits: Vec<Map<String, Value>>,
    pub query: Option<Query>,
    pub limit: usize,
    pub offset: usize,
    pub processing_time_ms: f64,
}

/// Index statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexStats {
    pub number_of_documents: usize,
    /// Live vectors: chunks over all tensor fields.
    pub number_of_vectors: usize,
    /// Graph nodes, deleted ones included (they route until a compaction takes them out).
    pub graph_nodes: usize,
    /// Graph nodes whose vector was deleted (replaced or its document removed).
    #[serde(default)]
    pub deleted_vectors: usize,
    /// Deleted vectors already taken out of the graph (and their rows out of the store) by a
    /// compaction; `deletedVectors - unlinkedVectors` still route searches.
    #[serde(default)]
    pub compacted_vectors: usize,
    pub bytes_on_disk: u64,
    /// Approximate resident bytes of vectors and graph.
    pub bytes_in_memory: u64,
}
