//! An in-memory memo over an encoder, so that the corpus embedded for several splits,
//! document forms and zero-shot sets is encoded once per model.

use std::collections::HashMap;
use std::path::PathBuf;

use gclip_vectors::{BoxError, Embeddings, FieldEncoder};

/// Memoises an encoder's outputs in memory.
pub(super) struct Memo<E> {
    inner: E,
    texts: HashMap<String, Vec<f32>>,
    images: HashMap<PathBuf, Vec<f32>>,
}

impl<E: FieldEncoder> Memo<E> {
    pub(super) fn new(inner: E) -> Self {
        Memo {
            inner,
            texts: HashMap::new(),
            images: HashMap::new(),
        }
    }
}

/// Looks every key up in `memo`, encodes the missing ones in one call, and returns the
/// vectors in input order.
fn memoised<K: Clone + Eq + std::hash::Hash>(
    memo: &mut HashMap<K, Vec<f32>>,
    keys: &[K],
    encode: impl FnOnce(&[K]) -> Result<Embeddings, BoxError>,
) -> Result<Embeddings, BoxError> {
    let mut missing: Vec<K> = Vec::new();
    for k in keys {
        if !memo.contains_key(k) && !missing.contains(k) {
            missing.push(k.clone());
        }
    }
    if !missing.is_empty() {
        let vecs = encode(&missing)?;
        if vecs.len() != missing.len() {
            return Err(format!("{} vectors for {} inputs", vecs.len(), missing.len()).into());
        }
        memo.extend(missing.into_iter().zip(vecs.rows().map(<[f32]>::to_vec)));
    }
    let rows = keys
        .iter()
        .map(|k| {
            memo.get(k)
                .cloned()
                .ok_or_else(|| BoxError::from("memoised embedding vanished"))
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    let dim = rows.first().map_or(1, Vec::len);
    Ok(Embeddings::from_rows(dim, &rows)?)
}

impl<E: FieldEncoder> FieldEncoder for Memo<E> {
    fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError> {
        let inner = &mut self.inner;
        memoised(&mut self.texts, texts, |m| inner.encode_texts(m))
    }
    fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError> {
        let inner = &mut self.inner;
        memoised(&mut self.images, paths, |m| inner.encode_images(m))
    }
    fn model_id(&self) -> String {
        self.inner.model_id()
    }
    fn weight_files(&self) -> Vec<PathBuf> {
        self.inner.weight_files()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_encodes_each_input_once() {
        struct Counting(usize);
        impl FieldEncoder for Counting {
            fn encode_texts(&mut self, texts: &[String]) -> Result<Embeddings, BoxError> {
                self.0 += texts.len();
                let rows: Vec<Vec<f32>> = texts.iter().map(|t| vec![t.len() as f32]).collect();
                Ok(Embeddings::from_rows(1, &rows)?)
            }
            fn encode_images(&mut self, paths: &[PathBuf]) -> Result<Embeddings, BoxError> {
                self.0 += paths.len();
                Ok(Embeddings::new(1, vec![1.0; paths.len()])?)
            }
            fn model_id(&self) -> String {
                "counting".into()
            }
        }
        let mut m = Memo::new(Counting(0));
        let t = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let a = m.encode_texts(&t(&["ab", "abc", "ab"])).unwrap();
        assert_eq!(a.as_slice(), &[2.0, 3.0, 2.0]);
        let b = m.encode_texts(&t(&["abc", "abcd"])).unwrap();
        assert_eq!(b.as_slice(), &[3.0, 4.0]);
        assert_eq!(m.inner.0, 3);
    }
}
