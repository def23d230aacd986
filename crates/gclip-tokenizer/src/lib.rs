//! The OpenAI CLIP byte-level BPE tokenizer, reproducing the token ids of
//! open_clip's `SimpleTokenizer` / `open_clip.tokenize` exactly.
//!
//! Pipeline (same order as the reference):
//! 1. cleaning: ftfy-style text fixing ([`clean_text`]; see "Cleaning
//!    coverage" below), HTML unescaping twice, strip, collapse whitespace runs
//!    to one space, lowercase;
//! 2. pre-tokenisation with the reference pattern
//!    `<sot>|<eot>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    (case-insensitive), implemented as a hand-written scanner whose
//!    character classes come from the Python `regex` module's own tables;
//! 3. each piece is UTF-8 encoded, mapped byte-to-unicode and BPE-merged by
//!    merge rank, the last symbol carrying `</w>`; results are cached;
//! 4. [`Tokenizer::tokenize`] wraps the ids in SOT/EOT, truncates to the
//!    context length keeping EOT last, and zero-pads.
//!
//! # Cleaning coverage (ftfy 6.3 `fix_text` defaults)
//! Verified: identical cleaned text and ids on the 5,111-string fixture corpus
//! (`tests/fixtures/reference/generate_tokens.py`).
//! Implemented: HTML entity unescaping with ftfy's rules (skipped once a
//! segment contains `<`), mojibake repair (badness heuristic, the ten
//! single-byte codecs ftfy tries, `restore_byte_a0`, `replace_lossy_sequences`,
//! `utf-8-variants`/CESU-8, `decode_inconsistent_utf8`, Latin-1 vs
//! Windows-1252), C1 controls, Latin ligatures, full/half-width forms, curly
//! quotes, line breaks, ANSI terminal escapes, control characters, NFC, all
//! applied per line until a fixed point, like ftfy.
//! Not identical: NFC uses `unicode-normalization`'s data, newer than the
//! reference's Unicode 14 (CPython 3.11), so compositions involving characters
//! assigned after Unicode 14 could differ (lowercasing does follow Python's
//! Unicode 14 coverage). Lone UTF-16 surrogates cannot occur in a Rust `&str`,
//! so ftfy's `fix_surrogates` has no work. See README.md for the summary.

mod bpe;
mod clean;
mod ftfy;
mod html;
mod pretok;
#[rustfmt::skip]
mod tables;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use clean::clean_text;

use bpe::Bpe;

/// The OpenAI merges file shipped with the crate (MIT, see NOTICE).
static OPENAI_MERGES_GZ: &[u8] = include_bytes!("../data/bpe_simple_vocab_16e6.txt.gz");

/// Number of merges of the OpenAI list that CLIP uses (49152 - 256 - 2).
const OPENAI_NUM_MERGES: usize = 49152 - 256 - 2;

/// Context length of all OpenAI CLIP models.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;

/// Errors raised while loading a vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file did not parse or had the wrong shape.
    #[error("invalid JSON in {path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The directory holds neither `tokenizer.json` nor `vocab.json` + `merges.txt`.
    #[error("no tokenizer files in {0} (expected tokenizer.json, or vocab.json and merges.txt)")]
    NoTokenizerFiles(PathBuf),
    /// The vocabulary or merges are inconsistent.
    #[error("invalid vocabulary: {0}")]
    InvalidVocab(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A CLIP BPE tokenizer. `Send + Sync`; its word cache is shared safely
/// across threads, so wrap it in an `Arc` to share.
///
/// ```
/// let tok = gclip_tokenizer::Tokenizer::openai();
/// // Ids as printed by `open_clip.tokenize("a photo of a cat")`.
/// let row = tok.tokenize("a photo of a cat", 77);
/// assert_eq!(row[..7], [49406, 320, 1125, 539, 320, 2368, 49407]);
/// assert!(row[7..].iter().all(|&id| id == 0));
/// assert_eq!(tok.decode(&row[1..6]), "a photo of a cat ");
/// ```
///
/// Clones are cheap: the tables (and the word cache) are shared behind an `Arc`.
#[derive(Clone)]
pub struct Tokenizer {
    bpe: Arc<Bpe>,
    sot: u32,
    eot: u32,
    /// Special-token spellings matched in text (lowercase), with their ids.
    specials: Arc<[(String, u32)]>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("sot", &self.sot)
            .field("eot", &self.eot)
            .finish()
    }
}

impl Tokenizer {
    /// The default OpenAI CLIP vocabulary shipped with the crate
    /// (49,408 tokens; SOT = 49406, EOT = 49407). The merges are decompressed and
    /// indexed once per process (tens of milliseconds); every call returns a cheap clone
    /// sharing those tables.
    pub fn openai() -> Tokenizer {
        static OPENAI: OnceLock<Tokenizer> = OnceLock::new();
        OPENAI
            .get_or_init(|| {
                // The embedded data is fixed at compile time and covered by tests, so
                // a failure here is a build defect rather than a user error.
                Self::from_merges_gz(OPENAI_MERGES_GZ).expect("embedded OpenAI vocabulary is valid")
            })
            .clone()
    }

    /// True when `self` and `other` share the same tables (clones of one tokenizer).
    pub fn shares_tables_with(&self, other: &Tokenizer) -> bool {
        Arc::ptr_eq(&self.bpe, &other.bpe)
    }

    fn from_merges_gz(gz: &[u8]) -> Result<Tokenizer> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .map_err(|e| Error::InvalidVocab(format!("embedded merges: {e}")))?;
        // Line 0 is a version header; CLIP uses the next 48,894 merges.
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(OPENAI_NUM_MERGES)
            .map(parse_merge_line)
            .collect::<Result<_>>()?;
        let byte_chars = || bpe::bytes_in_vocab_order().map(|b| bpe::BYTE_CHARS[b as usize]);
        let mut vocab: Vec<String> = byte_chars().map(|c| c.to_string()).collect();
        vocab.extend(byte_chars().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push("<start_of_text>".into());
        vocab.push("<end_of_text>".into());
        let vocab: HashMap<String, u32> = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        Self::build(vocab, &merges, "<start_of_text>", "<end_of_text>")
    }

    /// Loads a Hugging Face style `vocab.json` (token -> id) and `merges.txt`
    /// (optional `#version` header, then one `a b` pair per line).
    pub fn from_files(vocab_json: &Path, merges_txt: &Path) -> Result<Tokenizer> {
        let vocab_text = read(vocab_json)?;
        let vocab: HashMap<String, u32> =
            serde_json::from_str(&vocab_text).map_err(|e| Error::Json {
                path: vocab_json.to_path_buf(),
                message: e.to_string(),
            })?;
        let merges_text = read(merges_txt)?;
        let merges = merges_text
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(parse_merge_line)
            .collect::<Result<Vec<_>>>()?;
        Self::from_hf_parts(vocab, &merges)
    }

    /// Loads a Hugging Face `tokenizer.json` (a BPE model with `vocab` and
    /// `merges`, merges given as `"a b"` strings or `["a", "b"]` pairs).
    pub fn from_tokenizer_json(path: &Path) -> Result<Tokenizer> {
        let text = read(path)?;
        let json_err = |message: String| Error::Json {
            path: path.to_path_buf(),
            message,
        };
        let root: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| json_err(e.to_string()))?;
        let model = root
            .get("model")
            .ok_or_else(|| json_err("missing \"model\"".into()))?;
        let vocab: HashMap<String, u32> = serde_json::from_value(
            model
                .get("vocab")
                .cloned()
                .ok_or_else(|| json_err("missing \"model.vocab\"".into()))?,
        )
        .map_err(|e| json_err(format!("model.vocab: {e}")))?;
        let merges_json = model
            .get("merges")
            .and_then(|m| m.as_array())
            .ok_or_else(|| json_err("missing \"model.merges\" array".into()))?;
        let mut merges = Vec::with_capacity(merges_json.len());
        for m in merges_json {
            let pair = match m {
                serde_json::Value::String(s) => parse_merge_line(s)?,
                serde_json::Value::Array(a) => match (a.first(), a.get(1), a.len()) {
                    (Some(serde_json::Value::String(x)), Some(serde_json::Value::String(y)), 2) => {
                        (x.clone(), y.clone())
                    }
                    _ => return Err(json_err(format!("bad merge entry {m}"))),
                },
                _ => return Err(json_err(format!("bad merge entry {m}"))),
            };
            merges.push(pair);
        }
        let mut vocab = vocab;
        // Special tokens may live only in `added_tokens`.
        if let Some(added) = root.get("added_tokens").and_then(|a| a.as_array()) {
            for t in added {
                if let (Some(content), Some(id)) = (
                    t.get("content").and_then(|c| c.as_str()),
                    t.get("id").and_then(|i| i.as_u64()),
                ) {
                    let id = u32::try_from(id)
                        .map_err(|_| json_err(format!("token id {id} out of range")))?;
                    vocab.entry(content.to_string()).or_insert(id);
                }
            }
        }
        Self::from_hf_parts(vocab, &merges)
    }

    /// Loads the tokenizer files of a model directory: `tokenizer.json`, else
    /// `vocab.json` + `merges.txt`. Errors if neither is present.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let tj = dir.join("tokenizer.json");
        if tj.is_file() {
            return Self::from_tokenizer_json(&tj);
        }
        let (v, m) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if v.is_file() && m.is_file() {
            return Self::from_files(&v, &m);
        }
        Err(Error::NoTokenizerFiles(dir.to_path_buf()))
    }

    fn from_hf_parts(
        vocab: HashMap<String, u32>,
        merges: &[(String, String)],
    ) -> Result<Tokenizer> {
        // Hugging Face spells the specials `<|startoftext|>`; accept open_clip's too.
        let pick = |names: &[&'static str]| {
            names
                .iter()
                .copied()
                .find(|n| vocab.contains_key(*n))
                .ok_or_else(|| Error::InvalidVocab(format!("vocabulary lacks {}", names[0])))
        };
        let sot = pick(&["<|startoftext|>", "<start_of_text>"])?;
        let eot = pick(&["<|endoftext|>", "<end_of_text>"])?;
        Self::build(vocab, merges, sot, eot)
    }

    fn build(
        vocab: HashMap<String, u32>,
        merges: &[(String, String)],
        sot_name: &str,
        eot_name: &str,
    ) -> Result<Tokenizer> {
        let id = |n: &str| {
            vocab
                .get(n)
                .copied()
                .ok_or_else(|| Error::InvalidVocab(format!("missing token {n:?}")))
        };
        let (sot, eot) = (id(sot_name)?, id(eot_name)?);
        let specials = vec![
            (sot_name.to_lowercase(), sot),
            (eot_name.to_lowercase(), eot),
        ];
        let bpe = Arc::new(Bpe::new(&vocab, merges)?);
        let specials: Arc<[(String, u32)]> = specials.into();
        Ok(Tokenizer {
            bpe,
            sot,
            eot,
            specials,
        })
    }

    /// Cleans `text` and returns its BPE ids, without SOT/EOT
    /// (open_clip's `SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, &mut out);
        out
    }

    fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let cleaned = clean_text(text);
        let mut scratch = bpe::Scratch::default();
        for piece in pretok::Pieces::new(&cleaned, &self.specials) {
            match piece {
                pretok::Piece::Special(id) => out.push(id),
                pretok::Piece::Word(w) => self.bpe.encode_word(w, out, &mut scratch),
            }
        }
    }

    /// `[SOT] + encode(text) + [EOT]`, cut to `context_length` with EOT kept
    /// last, then zero-padded to `context_length` (one row of
    /// `open_clip.tokenize`). A `context_length` of 0 yields an empty vector.
    pub fn tokenize(&self, text: &str, context_length: usize) -> Vec<u32> {
        let mut ids = self.tokenize_unpadded(text, context_length);
        ids.resize(context_length, 0);
        ids
    }

    /// Like [`Tokenizer::tokenize`] without the zero padding.
    pub fn tokenize_unpadded(&self, text: &str, context_length: usize) -> Vec<u32> {
        let mut ids = Vec::with_capacity(context_length.max(2));
        ids.push(self.sot);
        self.encode_into(text, &mut ids);
        ids.push(self.eot);
        if ids.len() > context_length {
            ids.truncate(context_length);
            if let Some(last) = ids.last_mut() {
                *last = self.eot;
            }
        }
        ids
    }

    /// [`Tokenizer::tokenize`] for each text.
    pub fn tokenize_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        context_length: usize,
    ) -> Vec<Vec<u32>> {
        texts
            .iter()
            .map(|t| self.tokenize(t.as_ref(), context_length))
            .collect()
    }

    /// Turns ids back into text: `</w>` becomes a space, invalid UTF-8 becomes
    /// U+FFFD, ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.bpe.decode(ids)
    }

    /// Id of the start-of-text token.
    pub fn sot_id(&self) -> u32 {
        self.sot
    }

    /// Id of the end-of-text token.
    pub fn eot_id(&self) -> u32 {
        self.eot
    }

    /// Number of ids (largest id + 1).
    pub fn vocab_size(&self) -> usize {
        self.bpe.vocab_size()
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_merge_line(line: &str) -> Result<(String, String)> {
    let mut it = line.split_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
        _ => Err(Error::InvalidVocab(format!("bad merge line {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ids_and_size_match_reference_layout() {
        let t = Tokenizer::openai();
        assert_eq!(t.vocab_size(), 49408);
        assert_eq!(t.sot_id(), 49406);
        assert_eq!(t.eot_id(), 49407);
    }

    #[test]
    fn openai_tables_are_built_once_and_shared() {
        let a = Tokenizer::openai();
        let b = Tokenizer::openai();
        assert!(a.shares_tables_with(&b));
        assert!(a.clone().shares_tables_with(&a));
        assert_eq!(a.tokenize("a red shoe", 8), b.tokenize("a red shoe", 8));
    }

    #[test]
    fn zero_context_is_empty() {
        assert!(Tokenizer::openai().tokenize("a cat", 0).is_empty());
    }
}
