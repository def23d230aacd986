//! Byte-level BPE: byte-to-unicode mapping, merging by rank, a shared cache.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::RwLock;

use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::{Error, Result};

/// GPT-2/CLIP byte-to-unicode table: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order, so every byte
/// has a visible, non-space character.
pub(crate) static BYTE_CHARS: [char; 256] = build_byte_chars();

const fn is_printable_byte(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
}

const fn build_byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0u32;
    while b < 256 {
        let cp = if is_printable_byte(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        out[b as usize] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    out
}

/// Bytes in vocabulary order: the printable ones first, then the rest
/// (the order in which the reference builds its first 256 tokens).
pub(crate) fn bytes_in_vocab_order() -> impl Iterator<Item = u8> {
    (0..=255u8)
        .filter(|&b| is_printable_byte(b as u32))
        .chain((0..=255u8).filter(|&b| !is_printable_byte(b as u32)))
}

/// Maps a byte-to-unicode character back to its byte.
fn char_to_byte(c: char) -> Option<u8> {
    BYTE_CHARS.iter().position(|&x| x == c).map(|p| p as u8)
}

const CACHE_SHARDS: usize = 16;
/// Entries per shard before the cache stops growing (bounds memory on
/// adversarial input; typical vocabularies of real text fit easily).
const CACHE_SHARD_CAP: usize = 1 << 15;

type Shard = RwLock<FxHashMap<Box<str>, Box<[u32]>>>;

pub(crate) struct Bpe {
    /// Id of each byte as a word-internal symbol and as a word-final (`</w>`) symbol.
    byte_id: [u32; 256],
    byte_eow_id: [u32; 256],
    /// (left id, right id) -> (rank, merged id).
    merges: FxHashMap<u64, (u32, u32)>,
    /// Id -> bytes of the token text (with `</w>` spelled out), for decoding.
    decoder: Vec<Option<Box<[u8]>>>,
    cache: [Shard; CACHE_SHARDS],
}

/// Reusable buffers so a cache miss allocates nothing per word.
#[derive(Default)]
pub(crate) struct Scratch {
    syms: Vec<u32>,
}

impl Bpe {
    pub(crate) fn new(vocab: &HashMap<String, u32>, merges: &[(String, String)]) -> Result<Bpe> {
        let lookup = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| Error::InvalidVocab(format!("missing token {t:?}")))
        };
        let mut byte_id = [0u32; 256];
        let mut byte_eow_id = [0u32; 256];
        let mut buf = String::new();
        for (b, &c) in BYTE_CHARS.iter().enumerate() {
            buf.clear();
            buf.push(c);
            byte_id[b] = lookup(&buf)?;
            buf.push_str("</w>");
            byte_eow_id[b] = lookup(&buf)?;
        }
        let mut merge_map = FxHashMap::default();
        merge_map.reserve(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let (ia, ib) = (lookup(a)?, lookup(b)?);
            buf.clear();
            buf.push_str(a);
            buf.push_str(b);
            let merged = lookup(&buf)?;
            // A repeated pair takes its last rank, as in the reference's dict.
            merge_map.insert(key(ia, ib), (rank as u32, merged));
        }
        let size = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        let mut decoder: Vec<Option<Box<[u8]>>> = vec![None; size];
        for (tok, &id) in vocab {
            let bytes: Vec<u8> = match tok.strip_suffix("</w>") {
                Some(stem) => token_bytes(stem).chain(*b"</w>").collect(),
                None => token_bytes(tok).collect(),
            };
            decoder[id as usize] = Some(bytes.into_boxed_slice());
        }
        Ok(Bpe {
            byte_id,
            byte_eow_id,
            merges: merge_map,
            decoder,
            cache: std::array::from_fn(|_| RwLock::new(FxHashMap::default())),
        })
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.decoder.len()
    }

    /// Appends the ids of one pre-tokenised word to `out`.
    pub(crate) fn encode_word(&self, word: &str, out: &mut Vec<u32>, scratch: &mut Scratch) {
        // Shard on middle bits: the map itself uses the low and the top ones.
        let shard = &self.cache[(FxBuildHasher.hash_one(word) >> 32) as usize % CACHE_SHARDS];
        // A poisoned lock only means another thread panicked mid-insert; the
        // map itself is still consistent, so keep using it.
        {
            let map = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(ids) = map.get(word) {
                out.extend_from_slice(ids);
                return;
            }
        }
        self.merge(word.as_bytes(), &mut scratch.syms);
        out.extend_from_slice(&scratch.syms);
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        if map.len() < CACHE_SHARD_CAP {
            map.insert(word.into(), scratch.syms.as_slice().into());
        }
    }

    /// Merges the bytes of one word by rank into `syms`: repeatedly the
    /// lowest-ranked adjacent pair is merged at every (left-to-right,
    /// non-overlapping) occurrence, until no known pair remains.
    fn merge(&self, bytes: &[u8], syms: &mut Vec<u32>) {
        syms.clear();
        let Some((&last, init)) = bytes.split_last() else {
            return;
        };
        syms.extend(init.iter().map(|&b| self.byte_id[b as usize]));
        syms.push(self.byte_eow_id[last as usize]);
        while syms.len() > 1 {
            let mut best: Option<(u32, u32, u32)> = None; // (rank, left, right)
            for w in syms.windows(2) {
                if let Some(&(rank, _)) = self.merges.get(&key(w[0], w[1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, w[0], w[1]));
                    }
                }
            }
            let Some((rank, a, b)) = best else { break };
            let merged = self.merges[&key(a, b)].1;
            debug_assert_eq!(self.merges[&key(a, b)].0, rank);
            let (mut r, mut w) = (0, 0);
            while r < syms.len() {
                if r + 1 < syms.len() && syms[r] == a && syms[r + 1] == b {
                    syms[w] = merged;
                    r += 2;
                } else {
                    syms[w] = syms[r];
                    r += 1;
                }
                w += 1;
            }
            syms.truncate(w);
        }
    }

    pub(crate) fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if let Some(Some(b)) = self.decoder.get(id as usize) {
                bytes.extend_from_slice(b);
            }
        }
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }
}

fn key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Bytes of a vocabulary token: byte-to-unicode characters map back to their
/// byte; anything else (e.g. special tokens' ASCII) is kept as UTF-8.
fn token_bytes(tok: &str) -> impl Iterator<Item = u8> + '_ {
    tok.chars().flat_map(|c| {
        let mut buf = [0u8; 4];
        let v: Vec<u8> = match char_to_byte(c) {
            Some(b) => vec![b],
            None => c.encode_utf8(&mut buf).as_bytes().to_vec(),
        };
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_onto_visible_chars() {
        let mut seen = std::collections::HashSet::new();
        for &c in &BYTE_CHARS {
            assert!(!c.is_whitespace() && !c.is_control(), "{c:?}");
            assert!(seen.insert(c));
        }
        assert_eq!(BYTE_CHARS[b'a' as usize], 'a');
        assert_eq!(BYTE_CHARS[0], '\u{100}');
        assert_eq!(BYTE_CHARS[b' ' as usize], '\u{120}');
    }
}
