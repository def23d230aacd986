//! Index settings, with Marqo's camelCase names. Unknown or snake_case keys are rejected, as
//! Marqo does, so that a typo never silently falls back to a default.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexSettings {
    /// Only `unstructured` is implemented: any field may appear, tensor fields are named per add.
    #[serde(default, rename = "type")]
    pub index_type: IndexType,
    /// The model name or checkpoint path the index was created for (informational; the pin
    /// itself is the embedder's `model_id`, stored beside the settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_properties: Option<serde_json::Value>,
    #[serde(default = "yes")]
    pub normalize_embeddings: bool,
    #[serde(default)]
    pub text_preprocessing: TextPreprocessing,
    #[serde(default)]
    pub image_preprocessing: ImagePreprocessing,
    #[serde(default)]
    pub vector_numeric_type: VectorNumericType,
    #[serde(default)]
    pub ann_parameters: AnnParameters,
    #[serde(default)]
    pub treat_urls_and_pointers_as_images: bool,
    /// Strings longer than this are stored and returned but not matched by equality filters.
    #[serde(default = "filter_len")]
    pub filter_string_max_length: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_query_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_chunk_prefix: Option<String>,
    /// Largest accepted document, in bytes of its JSON (Marqo's default is 100,000).
    #[serde(default = "doc_limit")]
    pub max_document_bytes: usize,
}

fn yes() -> bool {
    true
}
fn filter_len() -> usize {
    50
}
fn doc_limit() -> usize {
    100_000
}

impl Default for IndexSettings {
    fn default() -> Self {
        serde_json::from_str("{}").expect("empty settings use defaults")
    }
}

impl IndexSettings {
    /// Parses settings JSON, rejecting unknown keys and invalid values.
    pub fn from_json(v: &serde_json::Value) -> crate::Result<Self> {
        let s: IndexSettings =
            serde_json::from_value(v.clone()).map_err(crate::Error::InvalidSettings)?;
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::InvalidArgument(m));
        let tp = &self.text_preprocessing;
        if tp.split_length == 0 {
            return bad("textPreprocessing.splitLength must be at least 1".into());
        }
        if tp.split_overlap >= tp.split_length {
            return bad(format!(
                "textPreprocessing.splitOverlap ({}) must be smaller than splitLength ({})",
                tp.split_overlap, tp.split_length
            ));
        }
        let p = &self.ann_parameters.parameters;
        if !(2..=128).contains(&p.m) {
            return bad(format!(
                "annParameters.parameters.m must be in 2..=128, got {}",
                p.m
            ));
        }
        if p.ef_construction == 0 {
            return bad("annParameters.parameters.efConstruction must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexType {
    #[default]
    Unstructured,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TextPreprocessing {
    #[serde(default = "two")]
    pub split_length: usize,
    #[serde(default)]
    pub split_overlap: usize,
    #[serde(default)]
    pub split_method: SplitMethod,
}

fn two() -> usize {
    2
}

impl Default for TextPreprocessing {
    fn default() -> Self {
        Self {
            split_length: 2,
            split_overlap: 0,
            split_method: SplitMethod::Sentence,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitMethod {
    #[default]
    Sentence,
    Word,
    Character,
    Passage,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImagePreprocessing {
    /// Marqo's image patching is not implemented: only `null` is accepted.
    #[serde(default)]
    pub patch_method: Option<NoPatch>,
}

/// Uninhabited: no patch method is supported, so any value fails to parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoPatch {}

/// How stored vectors are kept in memory for graph traversal. Exact float32 vectors are always
/// kept too and rescore the candidates, so compression trades speed and recall, not accuracy
/// of the reported scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorNumericType {
    #[default]
    #[serde(alias = "float")]
    Float32,
    Float16,
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpaceType {
    /// Vectors are unit length already (or normalised by the index): score = dot = cosine.
    #[default]
    PrenormalizedAngular,
    /// Cosine similarity; vectors are normalised when stored.
    Angular,
    /// Raw inner product.
    Dotproduct,
    /// Score = 1 / (1 + squared euclidean distance).
    Euclidean,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnnParameters {
    #[serde(default)]
    pub space_type: SpaceType,
    #[serde(default)]
    pub parameters: HnswParameters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HnswParameters {
    /// Marqo's default is 512; gclip uses 128, which reaches the same recall at ef >= 64 on
    /// CLIP vectors and builds about four times faster.
    #[serde(default = "efc")]
    pub ef_construction: usize,
    #[serde(default = "m16")]
    pub m: usize,
}

fn efc() -> usize {
    128
}
fn m16() -> usize {
    16
}

impl Default for HnswParameters {
    fn default() -> Self {
        Self {
            ef_construction: 128,
            m: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marqo_names_parse_and_unknown_keys_fail() {
        let s = IndexSettings::from_json(&json!({
            "normalizeEmbeddings": false,
            "textPreprocessing": {"splitLength": 3, "splitOverlap": 1, "splitMethod": "word"},
            "annParameters": {"spaceType": "euclidean", "parameters": {"m": 8, "efConstruction": 64}},
            "vectorNumericType": "int8",
            "treatUrlsAndPointersAsImages": true
        }))
        .unwrap();
        assert!(!s.normalize_embeddings);
        assert_eq!(s.text_preprocessing.split_method, SplitMethod::Word);
        assert_eq!(s.ann_parameters.parameters.m, 8);
        assert_eq!(s.ann_parameters.space_type, SpaceType::Euclidean);
        assert_eq!(s.vector_numeric_type, VectorNumericType::Int8);
        assert!(IndexSettings::from_json(&json!({"normalize_embeddings": true})).is_err());
        assert!(IndexSettings::from_json(
            &json!({"textPreprocessing": {"splitLength": 2, "splitOverlap": 2}})
        )
        .is_err());
        assert!(IndexSettings::from_json(
            &json!({"imagePreprocessing": {"patchMethod": "simple"}})
        )
        .is_err());
        let d = IndexSettings::default();
        assert!(d.normalize_embeddings);
        assert_eq!(d.text_preprocessing.split_length, 2);
        let back: IndexSettings =
            serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
