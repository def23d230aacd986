//! Vector rows: exact float32 for every row, plus optional float16 or int8 codes that graph
//! traversal reads instead (they are smaller and faster to stream; results are then rescored
//! with the float32 rows). With codes, the float32 rows can live in a memory-mapped scratch
//! file ([`VectorData::spilled`]) so that only the codes take resident memory: the kernel keeps
//! the rows in its page cache while memory allows and drops them (they are written back to the
//! file) when it does not.

use std::fs::File;
use std::path::{Path, PathBuf};

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

/// Float32 rows in a memory-mapped file that grows by doubling. It is scratch, not a store:
/// the owner writes every row again after an open, and the file is removed on drop.
#[derive(Debug)]
struct RowFile {
    path: PathBuf,
    file: File,
    map: memmap2::MmapMut,
    dim: usize,
    len: usize,
    cap: usize,
}

impl RowFile {
    fn create(path: &Path, dim: usize) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let cap = 1024;
        file.set_len((cap * dim * 4) as u64)?;
        // Safety: the file is this process's own scratch file (truncated above, removed on
        // drop); nothing else resizes or writes it while it is mapped.
        let map = unsafe { memmap2::MmapMut::map_mut(&file)? };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            map,
            dim,
            len: 0,
            cap,
        })
    }

    fn grow_to(&mut self, rows: usize) -> std::io::Result<()> {
        if rows <= self.cap {
            return Ok(());
        }
        let cap = rows.max(self.cap * 2);
        self.file.set_len((cap * self.dim * 4) as u64)?;
        // Safety: as in `create`; the old map is dropped when replaced (`&mut self`: no
        // reader holds a row).
        self.map = unsafe { memmap2::MmapMut::map_mut(&self.file)? };
        self.cap = cap;
        Ok(())
    }

    fn push(&mut self, row: &[f32]) -> std::io::Result<()> {
        self.grow_to(self.len + 1)?;
        let at = self.len * self.dim * 4;
        for (c, x) in self.map[at..at + self.dim * 4].chunks_exact_mut(4).zip(row) {
            c.copy_from_slice(&x.to_ne_bytes());
        }
        self.len += 1;
        Ok(())
    }

    #[inline]
    fn rows(&self) -> &[f32] {
        // Safety: the map starts page-aligned (so f32-aligned) and holds `cap * dim` f32s, of
        // which the first `len * dim` were written by `push`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr() as *const f32, self.len * self.dim) }
    }
}

impl Drop for RowFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug)]
pub struct VectorData {
    dim: usize,
    metric: Metric,
    precision: VectorNumericType,
    /// Resident float32 rows (empty when `spill` holds them).
    rows: Vec<f32>,
    spill: Option<RowFile>,
    len: usize,
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
            spill: None,
            len: 0,
            half: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            norms2: Vec::new(),
        }
    }

    /// Like [`VectorData::new`], but with float16 / int8 codes the float32 rows go to a
    /// memory-mapped scratch file at `path` (created or truncated; removed on drop) instead
    /// of resident memory. With float32 the rows stay resident and no file is made.
    pub fn spilled(
        dim: usize,
        metric: Metric,
        precision: VectorNumericType,
        path: &Path,
    ) -> std::io::Result<Self> {
        let mut v = Self::new(dim, metric, precision);
        if precision != VectorNumericType::Float32 {
            v.spill = Some(RowFile::create(path, dim)?);
        } else if path.exists() {
            std::fs::remove_file(path)?;
        }
        Ok(v)
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
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `extra` more rows.
    pub fn reserve(&mut self, extra: usize) -> std::io::Result<()> {
        match &mut self.spill {
            Some(f) => f.grow_to(self.len + extra)?,
            None => self.rows.reserve(extra * self.dim),
        }
        match self.precision {
            VectorNumericType::Float32 => {}
            VectorNumericType::Float16 => self.half.reserve(extra * self.dim),
            VectorNumericType::Int8 => {
                self.codes.reserve(extra * self.dim);
                self.scales.reserve(extra);
            }
        }
        Ok(())
    }

    /// Appends a row (of length `dim`, checked by the caller) and returns its slot. Fails only
    /// when the scratch file of a spilled store cannot grow.
    pub fn push(&mut self, row: &[f32]) -> std::io::Result<u32> {
        let slot = self.len as u32;
        match &mut self.spill {
            Some(f) => f.push(row)?,
            None => self.rows.extend_from_slice(row),
        }
        self.len += 1;
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
        Ok(slot)
    }

    #[inline]
    pub fn row(&self, i: u32) -> &[f32] {
        let i = i as usize * self.dim;
        let rows = match &self.spill {
            Some(f) => f.rows(),
            None => &self.rows,
        };
        &rows[i..i + self.dim]
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

    /// Resident bytes per row: float32 rows unless spilled, codes, scale and norm.
    pub fn bytes_per_row(&self) -> usize {
        let codes = match self.precision {
            VectorNumericType::Float32 => 0,
            VectorNumericType::Float16 => 2 * self.dim,
            VectorNumericType::Int8 => self.dim + 4,
        };
        let rows = if self.spill.is_some() {
            0
        } else {
            4 * self.dim
        };
        rows + codes + 4
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
                    v.push(r).unwrap();
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

    #[test]
    fn spilled_rows_read_back_like_resident_ones_across_growth() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.f32");
        let dim = 16;
        // Past the file's first capacity (1024 rows), so it grows and is mapped again.
        let rows: Vec<Vec<f32>> = (0..2500)
            .map(|r| {
                (0..dim)
                    .map(|c| ((r * 31 + c * 7) % 101) as f32 / 50.0 - 1.0)
                    .collect()
            })
            .collect();
        for p in [VectorNumericType::Float16, VectorNumericType::Int8] {
            let mut a = VectorData::new(dim, Metric::Dot, p);
            let mut b = VectorData::spilled(dim, Metric::Dot, p, &path).unwrap();
            for r in &rows {
                assert_eq!(a.push(r).unwrap(), b.push(r).unwrap());
            }
            assert!(path.exists());
            let q = &rows[17];
            for i in 0..rows.len() as u32 {
                assert_eq!(b.row(i), rows[i as usize].as_slice());
                assert_eq!(a.exact(q, i), b.exact(q, i));
                assert_eq!(a.approx(q, 1.0, i), b.approx(q, 1.0, i));
            }
            assert_eq!(b.bytes_per_row() + 4 * dim, a.bytes_per_row());
            drop(b);
            assert!(!path.exists(), "the scratch file is removed with its store");
        }
        let f = VectorData::spilled(dim, Metric::Dot, VectorNumericType::Float32, &path).unwrap();
        assert_eq!(f.bytes_per_row(), 4 * dim + 4);
        assert!(!path.exists(), "float32 keeps its rows resident");
    }
}
