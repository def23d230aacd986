//! Raw tensors: a shape, an element type and little-endian bytes, with no tensor library.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CheckpointError, Result};

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
    /// IEEE binary64 (read only; converted to f32).
    F64,
    /// 64-bit signed integer (buffers such as `position_ids`; read only).
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// Lower-case name (`f32`, `bf16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I64 => "i64",
        }
    }

    /// True for the types a checkpoint can be saved in (f32, f16, bf16).
    pub fn is_storable(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = CheckpointError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f64" | "float64" => Ok(DType::F64),
            "i64" | "int64" => Ok(DType::I64),
            other => Err(CheckpointError::InvalidInput(format!(
                "unknown dtype `{other}` (expected f32, f16 or bf16)"
            ))),
        }
    }
}

/// A tensor as stored: row-major, contiguous, little-endian.
#[derive(Clone, PartialEq)]
pub struct RawTensor {
    shape: Vec<usize>,
    dtype: DType,
    data: Vec<u8>,
}

impl std::fmt::Debug for RawTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTensor")
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Canonical (open_clip) key -> tensor.
pub type TensorMap = BTreeMap<String, RawTensor>;

fn numel_of(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl RawTensor {
    /// Wraps little-endian `data`; its length must be `numel * dtype.size()`.
    pub fn new(shape: Vec<usize>, dtype: DType, data: Vec<u8>) -> Result<Self> {
        let want = numel_of(&shape).and_then(|n| n.checked_mul(dtype.size()));
        if want != Some(data.len()) {
            return Err(CheckpointError::InvalidInput(format!(
                "{} bytes for a {dtype} tensor of shape {shape:?}",
                data.len()
            )));
        }
        Ok(Self { shape, dtype, data })
    }

    /// An f32 tensor from row-major values; `values.len()` must match the shape.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        if numel_of(&shape) != Some(values.len()) {
            return Err(CheckpointError::InvalidInput(format!(
                "{} values for a tensor of shape {shape:?}",
                values.len()
            )));
        }
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(Self {
            shape,
            dtype: DType::F32,
            data,
        })
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Little-endian element bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Values converted to f32 (f64 and i64 are rounded to the nearest f32).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.numel());
        decode_f32(self.dtype, &self.data, &mut out);
        out
    }

    /// The same values in another float type (rounded to nearest even).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        let values = self.to_f32();
        let data = encode_f32(&values, dtype)?;
        Ok(Self {
            shape: self.shape.clone(),
            dtype,
            data,
        })
    }

    /// The same data under another shape with as many elements.
    pub fn reshape(mut self, shape: Vec<usize>) -> Result<Self> {
        if numel_of(&shape) != Some(self.numel()) {
            return Err(CheckpointError::InvalidInput(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        self.shape = shape;
        Ok(self)
    }

    /// The transpose of a 2-d tensor.
    pub fn transposed(&self) -> Result<Self> {
        let &[r, c] = self.shape.as_slice() else {
            return Err(CheckpointError::InvalidInput(format!(
                "cannot transpose a tensor of shape {:?} (needs 2 dimensions)",
                self.shape
            )));
        };
        let es = self.dtype.size();
        let mut data = vec![0u8; self.data.len()];
        for i in 0..r {
            for j in 0..c {
                let src = (i * c + j) * es;
                let dst = (j * r + i) * es;
                data[dst..dst + es].copy_from_slice(&self.data[src..src + es]);
            }
        }
        Ok(Self {
            shape: vec![c, r],
            dtype: self.dtype,
            data,
        })
    }

    /// Splits along dim 0 into `parts` equal tensors.
    pub fn split0(&self, parts: usize) -> Result<Vec<Self>> {
        let d0 = self.shape.first().copied().unwrap_or(0);
        if parts == 0 || d0 % parts != 0 {
            return Err(CheckpointError::InvalidInput(format!(
                "cannot split shape {:?} into {parts} equal parts along dim 0",
                self.shape
            )));
        }
        let mut shape = self.shape.clone();
        shape[0] = d0 / parts;
        let chunk = self.data.len() / parts;
        Ok((0..parts)
            .map(|i| Self {
                shape: shape.clone(),
                dtype: self.dtype,
                data: self.data[i * chunk..(i + 1) * chunk].to_vec(),
            })
            .collect())
    }

    /// Concatenation along dim 0 of tensors with equal trailing shapes (converted to f32 when
    /// their element types differ).
    pub fn cat0(parts: &[Self]) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(CheckpointError::InvalidInput(
                "concatenating no tensors".into(),
            ));
        };
        if first.shape.is_empty() || parts.iter().any(|p| p.shape[1..] != first.shape[1..]) {
            return Err(CheckpointError::InvalidInput(format!(
                "cannot concatenate shapes {:?} along dim 0",
                parts.iter().map(|p| p.shape.clone()).collect::<Vec<_>>()
            )));
        }
        let same = parts.iter().all(|p| p.dtype == first.dtype);
        let dtype = if same { first.dtype } else { DType::F32 };
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.numel() * dtype.size()).sum());
        for p in parts {
            if same {
                data.extend_from_slice(&p.data);
            } else {
                data.extend(p.to_f32().iter().flat_map(|v| v.to_le_bytes()));
            }
        }
        Ok(Self { shape, dtype, data })
    }
}

/// Appends the values of little-endian `bytes` of type `dtype` to `out` as f32.
pub(crate) fn decode_f32(dtype: DType, bytes: &[u8], out: &mut Vec<f32>) {
    match dtype {
        DType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        DType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        DType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        DType::F64 => out.extend(bytes.chunks_exact(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            f64::from_le_bytes(a) as f32
        })),
        DType::I64 => out.extend(bytes.chunks_exact(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_le_bytes(a) as f32
        })),
    }
}

/// f32 values as little-endian bytes of a float type.
pub(crate) fn encode_f32(values: &[f32], dtype: DType) -> Result<Vec<u8>> {
    Ok(match dtype {
        DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        DType::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        DType::F64 => values
            .iter()
            .flat_map(|&v| (v as f64).to_le_bytes())
            .collect(),
        DType::I64 => {
            return Err(CheckpointError::InvalidInput(
                "cannot convert float values to i64".into(),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_split_cat_round_trip() {
        let t = RawTensor::from_f32(vec![6, 2], &(0..12).map(|x| x as f32).collect::<Vec<_>>())
            .unwrap();
        let tt = t.transposed().unwrap();
        assert_eq!(tt.shape(), &[2, 6]);
        assert_eq!(tt.to_f32()[..3], [0.0, 2.0, 4.0]);
        assert_eq!(tt.transposed().unwrap(), t);
        let parts = t.split0(3).unwrap();
        assert_eq!(parts[1].to_f32(), vec![4.0, 5.0, 6.0, 7.0]);
        assert_eq!(RawTensor::cat0(&parts).unwrap(), t);
        assert!(t.split0(5).is_err());
        assert!(RawTensor::new(vec![2, 2], DType::F16, vec![0; 7]).is_err());
        assert!(RawTensor::from_f32(vec![usize::MAX, 2], &[]).is_err());
    }

    #[test]
    fn f16_conversion_rounds_to_nearest() {
        let v = [1.0f32, 1.0 + 1.0 / 4096.0, -2.71, 65504.0];
        let t = RawTensor::from_f32(vec![4], &v).unwrap();
        let h = t.to_dtype(DType::F16).unwrap();
        assert_eq!(h.data().len(), 8);
        let back = h.to_f32();
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() <= a.abs() * 2f32.powi(-11), "{a} -> {b}");
        }
    }
}
