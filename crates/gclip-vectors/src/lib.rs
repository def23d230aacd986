//! Embedding batches and the vector arithmetic every gclip crate shares.
//!
//! [`Embeddings`] is the one type for "n vectors of one dimension": the model towers and the
//! CPU engine produce it, evaluation and the index consume it. Its constructors check their
//! input and return [`VectorError`] instead of panicking, because rows often come from callers
//! (custom vectors, files, Python arrays). [`FieldEncoder`] is the model boundary: what
//! evaluation and caches call to get embeddings without knowing the model.

use std::fmt;

mod encoder;
pub use encoder::{BoxError, FieldEncoder};

/// What is wrong with a batch of vectors a caller handed in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// A dimension of 0 was asked for.
    #[error("embedding dimension must be at least 1")]
    ZeroDim,
    /// A flat buffer is not a whole number of rows.
    #[error("a buffer of {len} values is not a whole number of rows of {dim}")]
    Ragged { len: usize, dim: usize },
    /// Two operands (or a row and a batch) have different dimensions.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimMismatch { expected: usize, got: usize },
    /// A row index past the end.
    #[error("row {index} is out of range for {len} rows")]
    OutOfRange { index: usize, len: usize },
    /// A value that is NaN or infinite.
    #[error("row {row} holds a non-finite value")]
    NonFinite { row: usize },
}

pub type Result<T, E = VectorError> = std::result::Result<T, E>;

/// `n` vectors of one dimension, stored contiguously row-major.
#[derive(Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl fmt::Debug for Embeddings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embeddings")
            .field("rows", &self.len())
            .field("dim", &self.dim)
            .finish()
    }
}

impl Embeddings {
    /// Wraps row-major `data` made of rows of length `dim`.
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self> {
        if dim == 0 {
            return Err(VectorError::ZeroDim);
        }
        if !data.len().is_multiple_of(dim) {
            return Err(VectorError::Ragged {
                len: data.len(),
                dim,
            });
        }
        Ok(Self { dim, data })
    }

    /// An empty batch of dimension `dim`.
    pub fn empty(dim: usize) -> Result<Self> {
        Self::new(dim, Vec::new())
    }

    /// Builds a batch from separate rows, all of length `dim`.
    pub fn from_rows<R: AsRef<[f32]>>(dim: usize, rows: &[R]) -> Result<Self> {
        let mut e = Self::empty(dim)?;
        e.data.reserve(dim * rows.len());
        for r in rows {
            e.push(r.as_ref())?;
        }
        Ok(e)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[f32]> {
        self.data.get(i * self.dim..(i + 1) * self.dim)
    }

    /// Row `i`; an index past the end is an error.
    pub fn row(&self, i: usize) -> Result<&[f32]> {
        self.get(i).ok_or(VectorError::OutOfRange {
            index: i,
            len: self.len(),
        })
    }

    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim)
    }

    pub fn rows_mut(&mut self) -> std::slice::ChunksExactMut<'_, f32> {
        self.data.chunks_exact_mut(self.dim)
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Appends the rows of `other`, which must have the same dimension.
    pub fn extend(&mut self, other: &Embeddings) -> Result<()> {
        self.check_dim(other.dim)?;
        self.data.extend_from_slice(&other.data);
        Ok(())
    }

    /// Appends one row of this batch's dimension.
    pub fn push(&mut self, row: &[f32]) -> Result<()> {
        self.check_dim(row.len())?;
        self.data.extend_from_slice(row);
        Ok(())
    }

    /// Errors naming the first row that holds NaN or an infinity.
    pub fn check_finite(&self) -> Result<()> {
        match self.rows().position(|r| r.iter().any(|x| !x.is_finite())) {
            Some(row) => Err(VectorError::NonFinite { row }),
            None => Ok(()),
        }
    }

    /// Scales every row to unit L2 norm (a zero row stays zero).
    pub fn normalize(&mut self) {
        self.rows_mut().for_each(normalize);
    }

    /// A copy with every row at unit L2 norm.
    pub fn normalized(&self) -> Self {
        let mut c = self.clone();
        c.normalize();
        c
    }

    fn check_dim(&self, got: usize) -> Result<()> {
        if got == self.dim {
            Ok(())
        } else {
            Err(VectorError::DimMismatch {
                expected: self.dim,
                got,
            })
        }
    }
}

/// The L2 norm of `v`, accumulated in f64 so that long rows keep their precision.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt() as f32
}

/// Scales `v` to unit L2 norm in place; a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if n > 0.0 {
        let inv = (1.0 / n) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// Dot product of two rows of the same length (an error otherwise).
pub fn dot(a: &[f32], b: &[f32]) -> Result<f32> {
    if a.len() != b.len() {
        return Err(VectorError::DimMismatch {
            expected: a.len(),
            got: b.len(),
        });
    }
    Ok(a.iter().zip(b).map(|(x, y)| x * y).sum())
}

/// Cosine similarity of two rows; 0 when either is the zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f32> {
    let d = dot(a, b)? as f64;
    let (na, nb) = (norm(a) as f64, norm(b) as f64);
    if na == 0.0 || nb == 0.0 {
        return Ok(0.0);
    }
    Ok((d / (na * nb)) as f32)
}

/// Cosine similarity of every row of `a` with every row of `b`: `[a.len()][b.len()]`.
pub fn cosine_matrix(a: &Embeddings, b: &Embeddings) -> Result<Vec<Vec<f32>>> {
    a.check_dim(b.dim)?;
    let (a, b) = (a.normalized(), b.normalized());
    Ok(a.rows()
        .map(|ra| {
            b.rows()
                .map(|rb| ra.iter().zip(rb).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect())
}

/// Row-wise softmax of `scale * m`, computed in f64 for stable probabilities.
pub fn softmax_rows(m: &[Vec<f32>], scale: f32) -> Vec<Vec<f32>> {
    m.iter().map(|row| softmax(row, scale)).collect()
}

/// Softmax of `scale * row`, computed in f64.
pub fn softmax(row: &[f32], scale: f32) -> Vec<f32> {
    let s = scale as f64;
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |acc, &x| acc.max(s * x as f64));
    let exps: Vec<f64> = row.iter().map(|&x| (s * x as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Weighted sum of rows followed by L2 normalisation, with the weights of present rows
/// renormalised to sum to 1: GCL's and Marqo's rule for fusing several fields of one document
/// into one vector. `None` rows (missing fields) get weight 0. Errors when the rows' lengths
/// differ from `dim`; returns `None` when no row is present or the present weights sum to 0.
pub fn fuse(dim: usize, parts: &[(Option<&[f32]>, f32)]) -> Result<Option<Vec<f32>>> {
    let total: f64 = parts
        .iter()
        .filter(|(r, _)| r.is_some())
        .map(|(_, w)| *w as f64)
        .sum();
    if total == 0.0 {
        return Ok(None);
    }
    let mut out = vec![0f64; dim];
    for (row, w) in parts {
        let Some(row) = row else { continue };
        if row.len() != dim {
            return Err(VectorError::DimMismatch {
                expected: dim,
                got: row.len(),
            });
        }
        let a = *w as f64 / total;
        out.iter_mut()
            .zip(row.iter())
            .for_each(|(o, &x)| *o += a * x as f64);
    }
    let mut out: Vec<f32> = out.into_iter().map(|x| x as f32).collect();
    normalize(&mut out);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_reject_bad_shapes() {
        assert_eq!(Embeddings::empty(0), Err(VectorError::ZeroDim));
        assert_eq!(
            Embeddings::new(3, vec![0.0; 4]),
            Err(VectorError::Ragged { len: 4, dim: 3 })
        );
        let mut e = Embeddings::empty(2).unwrap();
        assert_eq!(
            e.push(&[1.0]),
            Err(VectorError::DimMismatch {
                expected: 2,
                got: 1
            })
        );
        assert!(e.is_empty());
        e.push(&[1.0, 2.0]).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e.row(1), Err(VectorError::OutOfRange { index: 1, len: 1 }));
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_rows() {
        let a = Embeddings::new(2, vec![3.0, 0.0, 0.0, 2.0]).unwrap();
        let b = Embeddings::new(2, vec![1.0, 0.0, 1.0, 1.0]).unwrap();
        let m = cosine_matrix(&a, &b).unwrap();
        assert!((m[0][0] - 1.0).abs() < 1e-7);
        assert!(m[1][0].abs() < 1e-7);
        assert!((m[1][1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-7);
        assert!((cosine(&[3.0, 0.0], &[1.0, 1.0]).unwrap() - m[0][1]).abs() < 1e-7);
    }

    #[test]
    fn mismatched_dimensions_are_errors_not_panics() {
        let a = Embeddings::new(2, vec![1.0, 0.0]).unwrap();
        let b = Embeddings::new(3, vec![1.0, 0.0, 0.0]).unwrap();
        assert_eq!(
            cosine_matrix(&a, &b),
            Err(VectorError::DimMismatch {
                expected: 2,
                got: 3
            })
        );
        assert!(dot(&[1.0], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn softmax_rows_sum_to_one_and_follow_scale() {
        let p = softmax_rows(&[vec![0.2, 0.1, -0.3]], 100.0);
        let s: f32 = p[0].iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        let ratio = (p[0][0] / p[0][1]) as f64;
        assert!((ratio - 10f64.exp()).abs() / 10f64.exp() < 1e-5);
    }

    #[test]
    fn fuse_renormalises_weights_of_present_fields() {
        let image = [1.0f32, 0.0];
        let title = [0.0f32, 1.0];
        let both = fuse(2, &[(Some(&image), 0.9), (Some(&title), 0.1)])
            .unwrap()
            .unwrap();
        let n = (0.81f64 + 0.01).sqrt();
        assert!((both[0] as f64 - 0.9 / n).abs() < 1e-7);
        assert!((both[1] as f64 - 0.1 / n).abs() < 1e-7);
        // A missing title leaves the image alone (weight renormalised to 1).
        let only = fuse(2, &[(Some(&image), 0.9), (None, 0.1)])
            .unwrap()
            .unwrap();
        assert_eq!(only, vec![1.0, 0.0]);
        assert_eq!(fuse(2, &[(None, 1.0)]).unwrap(), None);
        assert!(fuse(3, &[(Some(&image), 1.0)]).is_err());
    }

    #[test]
    fn non_finite_rows_are_named() {
        let e = Embeddings::new(1, vec![0.0, f32::NAN]).unwrap();
        assert_eq!(e.check_finite(), Err(VectorError::NonFinite { row: 1 }));
    }
}
