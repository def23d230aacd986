//! A batch of embedding vectors and the similarity arithmetic on it.

/// `n` embedding vectors of one dimension, stored row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Wraps row-major `data` of rows of length `dim`. Panics if `dim` does not divide it
    /// (internal invariant; callers build it from model outputs).
    pub fn new(dim: usize, data: Vec<f32>) -> Self {
        assert!(
            dim > 0 && data.len().is_multiple_of(dim),
            "embedding buffer of {} is not rows of {dim}",
            data.len()
        );
        Self { dim, data }
    }

    /// An empty batch of dimension `dim`.
    pub fn empty(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
        }
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

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Appends the rows of `other` (same dimension).
    pub fn extend(&mut self, other: &Embeddings) {
        assert_eq!(
            self.dim, other.dim,
            "appending embeddings of another dimension"
        );
        self.data.extend_from_slice(&other.data);
    }

    /// Appends one row.
    pub fn push(&mut self, row: &[f32]) {
        assert_eq!(self.dim, row.len(), "appending a row of another dimension");
        self.data.extend_from_slice(row);
    }

    /// Scales every row to unit L2 norm (a zero row stays zero).
    pub fn normalize(&mut self) {
        for row in self.data.chunks_exact_mut(self.dim) {
            normalize(row);
        }
    }

    /// A normalised copy.
    pub fn normalized(&self) -> Self {
        let mut c = self.clone();
        c.normalize();
        c
    }
}

pub(crate) fn normalize(row: &mut [f32]) {
    let norm = row
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        let inv = (1.0 / norm) as f32;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// Cosine similarity of every row of `a` with every row of `b`: `[a.len()][b.len()]`.
pub fn cosine_matrix(a: &Embeddings, b: &Embeddings) -> Vec<Vec<f32>> {
    assert_eq!(
        a.dim(),
        b.dim(),
        "comparing embeddings of different dimensions"
    );
    let (a, b) = (a.normalized(), b.normalized());
    a.rows()
        .map(|ra| {
            b.rows()
                .map(|rb| ra.iter().zip(rb).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect()
}

/// Row-wise softmax of `scale * m` (computed in f64 for stable probabilities).
pub fn softmax_rows(m: &[Vec<f32>], scale: f32) -> Vec<Vec<f32>> {
    m.iter()
        .map(|row| {
            let max = row.iter().fold(f64::NEG_INFINITY, |acc, &x| {
                acc.max(scale as f64 * x as f64)
            });
            let exps: Vec<f64> = row
                .iter()
                .map(|&x| (scale as f64 * x as f64 - max).exp())
                .collect();
            let sum: f64 = exps.iter().sum();
            exps.iter().map(|e| (e / sum) as f32).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_parallel_and_orthogonal_rows() {
        let a = Embeddings::new(2, vec![3.0, 0.0, 0.0, 2.0]);
        let b = Embeddings::new(2, vec![1.0, 0.0, 1.0, 1.0]);
        let m = cosine_matrix(&a, &b);
        assert!((m[0][0] - 1.0).abs() < 1e-6);
        assert!((m[1][0]).abs() < 1e-6);
        assert!((m[1][1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_follow_scale() {
        let p = softmax_rows(&[vec![0.2, 0.1, -0.3]], 100.0);
        let s: f32 = p[0].iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        // exp(100 * 0.1) ratio between the first two entries
        assert!(((p[0][0] / p[0][1]) as f64 - (10.0f64).exp()).abs() / (10.0f64).exp() < 1e-4);
    }
}
