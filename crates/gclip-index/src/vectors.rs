//! In-memory vector rows: exact float32 for every row, plus optional float16 or int8 codes that
//! graph traversal reads instead (they are smaller and faster to stream; results are then
//! rescored with the float32 rows).

use crate::settings::VectorNumericType;
use crate::simd;
use half::f16;

/// How two vectors are compared; smaller distance is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// distance = -dot (cosine for unit vectors).
    Dot,
    /// distance = squared euclidean.
    L2,
}

impl Metric {
    /// The user-facing score for a distance: the dot product, or 1 / (1 + d²) for L2.
    pub fn score(self, dist: f32) -> f32 {
        match self {
            Metric::Dot => -dist,
            Metric::L2 => 1.0 / (1.0 + dist.max(0.0)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VectorData {
    dim: usize,
    metric: Metric,
    precision: VectorNumericType,
    rows: Vec<f32>,
    half: Vec<f16>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    norms2: Vec<f32>,
}

impl VectorData {
    pub fn new(dim: usize, metric: Metric, precision: VectorNumericType) -> Self {
        Self {
            dim,
            metric,
            precision,
            rows: Vec::new(),
            half: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            norms2: Vec::new(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn metric(&self) -> Metric {
        self.metric
    }
    pub fn precision(&self) -> VectorNumericType {
        self.precision
    }
    pub fn len(&self) -> usize {
        self.rows.len() / self.dim
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn reserve(&mut self, extra: usize) {
        self.rows.reserve(extra * self.dim);
        match self.precision {
            VectorNumericType::Float32 => {}
            VectorNumericType::Float16 => self.half.reserve(extra * self.dim),
            VectorNumericType::Int8 => {
                self.codes.reserve(extra * self.dim);
                self.scales.reserve(extra);
            }
        }
    }

    /// Appends a row (of length `dim`, checked by the caller) and returns its slot.
    pub fn push(&mut self, row: &[f32]) -> u32 {
        let slot = self.len() as u32;
        self.rows.extend_from_slice(row);
        let n2 = simd::dot_f32(row, row);
        self.norms2.push(n2);
        match self.precision {
            VectorNumericType::Float32 => {}
            VectorNumericType::Float16 => self.half.extend(row.iter().map(|&x| f16::from_f32(x))),
            VectorNumericType::Int8 => {
                let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                self.scales.push(scale);
                self.codes.extend(
                    row.iter()
                        .map(|&x| (x / scale).round().clamp(-127.0, 127.0) as i8),
                );
            }
        }
        slot
    }

    /// Appends a zero row (a placeholder for a slot whose vector was lost or deleted).
    pub fn push_zero(&mut self) -> u32 {
        let z = vec![0f32; self.dim];
        self.push(&z)
    }

    pub fn row(&self, i: u32) -> &[f32] {
        let i = i as usize * self.dim;
        &self.rows[i..i + self.dim]
    }

    /// Asks the CPU to start loading the first cache lines of row `i` (its codes when the
    /// graph walks on codes).
    #[inline]
    pub fn prefetch(&self, i: u32) {
        self.prefetch_bytes(i, 256);
    }

    /// Like [`VectorData::prefetch`], the whole row (for rows about to be scored).
    #[inline]
    pub fn prefetch_row(&self, i: u32) {
        self.prefetch_bytes(i, usize::MAX);
    }

    #[inline]
    fn prefetch_bytes(&self, i: u32, max: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let at = i as usize * self.dim;
            let (ptr, bytes) = match self.precision {
                VectorNumericType::Float32 => (
                    self.rows.as_ptr().wrapping_add(at) as *const i8,
                    self.dim * 4,
                ),
                VectorNumericType::Float16 => (
                    self.half.as_ptr().wrapping_add(at) as *const i8,
                    self.dim * 2,
                ),
                VectorNumericType::Int8 => (self.codes.as_ptr().wrapping_add(at), self.dim),
            };
            // Prefetching is only a hint: it never faults, even on a bad address.
            for off in (0..bytes.min(max)).step_by(64) {
                unsafe { _mm_prefetch(ptr.wrapping_add(off), _MM_HINT_T0) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (i, max);
    }

    /// Exact float32 distance of a query to row `i`.
    #[inline]
    pub fn exact(&self, q: &[f32], i: u32) -> f32 {
        match self.metric {
            Metric::Dot => -simd::dot_f32(q, self.row(i)),
            Metric::L2 => simd::l2_f32(q, self.row(i)),
        }
    }

    /// Exact float32 distances of a query to four rows (one pass over the query).
    #[inline]
    pub fn exact4(&self, q: &[f32], ids: [u32; 4]) -> [f32; 4] {
        match self.metric {
            Metric::Dot => simd::dot4_f32(q, ids.map(|i| self.row(i))).map(|d| -d),
            Metric::L2 => ids.map(|i| self.exact(q, i)),
        }
    }

    /// Distance read from the compressed codes (exact when the precision is float32).
    #[inline]
    pub fn approx(&self, q: &[f32], qn2: f32, i: u32) -> f32 {
        let d = self.dim;
        let at = i as usize * d;
        let dot = match self.precision {
            VectorNumericType::Float32 => return self.exact(q, i),
            VectorNumericType::Float16 => simd::dot_f16(q, &self.half[at..at + d]),
            VectorNumericType::Int8 => {
                simd::dot_i8(q, &self.codes[at..at + d]) * self.scales[i as usize]
            }
        };
        match self.metric {
            Metric::Dot => -dot,
            Metric::L2 => qn2 - 2.0 * dot + self.norms2[i as usize],
        }
    }

    /// Bytes of memory held per row (float32 rows, codes, scale and norm).
    pub fn bytes_per_row(&self) -> usize {
        let codes = match self.precision {
            VectorNumericType::Float32 => 0,
            VectorNumericType::Float16 => 2 * self.dim,
            VectorNumericType::Int8 => self.dim + 4,
        };
        4 * self.dim + codes + 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_approximate_exact_distances() {
        let rows: Vec<Vec<f32>> = (0..20)
            .map(|r| {
                (0..64)
                    .map(|c| ((r * 7 + c * 13) % 17) as f32 / 17.0 - 0.5)
                    .collect()
            })
            .collect();
        let q: Vec<f32> = (0..64).map(|c| (c % 5) as f32 / 5.0 - 0.4).collect();
        let qn2 = simd::dot_f32(&q, &q);
        for metric in [Metric::Dot, Metric::L2] {
            for (p, tol) in [
                (VectorNumericType::Float32, 1e-5),
                (VectorNumericType::Float16, 2e-2),
                (VectorNumericType::Int8, 8e-2),
            ] {
                let mut v = VectorData::new(64, metric, p);
                rows.iter().for_each(|r| {
                    v.push(r);
                });
                for i in 0..20u32 {
                    let e = v.exact(&q, i);
                    let a = v.approx(&q, qn2, i);
                    assert!(
                        (e - a).abs() <= tol * (1.0 + e.abs()),
                        "{metric:?} {p:?} {e} {a}"
                    );
                }
            }
        }
    }
}
