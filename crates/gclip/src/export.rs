//! Exporting a trained model the way the embedded default model is stored.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{io_err, Result};

/// Re-encodes a safetensors file with its F32 tensors as F16 (others unchanged, the
/// `__metadata__` kept): the loader widens them back to F32, and the file halves.
// TODO(merge): use gclip-checkpoint's f16 SaveOptions
pub fn to_f16_safetensors(bytes: &[u8]) -> Result<Vec<u8>> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in st.tensors() {
        let (dtype, data) = if t.dtype() == Dtype::F32 {
            let out: Vec<u8> = t
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    half::f16::from_f32(x).to_le_bytes()
                })
                .collect();
            (Dtype::F16, out)
        } else {
            (t.dtype(), t.data().to_vec())
        };
        owned.push((name, dtype, t.shape().to_vec(), data));
    }
    owned.sort_by(|x, y| x.0.cmp(&y.0));
    let views = owned
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<(String, TensorView<'_>)>>>()?;
    Ok(safetensors::serialize(
        views,
        Some(safetensors_metadata(bytes)),
    )?)
}

/// Converts the safetensors file `src` to F16 into `dst` (see [`to_f16_safetensors`]).
pub fn export_f16(src: &Path, dst: &Path) -> Result<()> {
    let bytes = std::fs::read(src).map_err(io_err(src))?;
    let f16 = to_f16_safetensors(&bytes)?;
    std::fs::write(dst, f16).map_err(io_err(dst))
}

/// The `__metadata__` of a safetensors file (e.g. `format: pt`), kept on conversion.
fn safetensors_metadata(bytes: &[u8]) -> HashMap<String, String> {
    safetensors::SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_export_keeps_names_shapes_and_values() {
        let a: Vec<f32> = vec![0.1, -2.5, 1e-3, 65504.0, 0.0, 3.0];
        let ids: Vec<u8> = vec![1, 0, 0, 0, 2, 0, 0, 0];
        let a_bytes: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = vec![
            (
                "w".to_owned(),
                TensorView::new(Dtype::F32, vec![2, 3], &a_bytes).unwrap(),
            ),
            (
                "ids".to_owned(),
                TensorView::new(Dtype::I32, vec![2], &ids).unwrap(),
            ),
        ];
        let meta: HashMap<String, String> = [("format".to_owned(), "pt".to_owned())].into();
        let src = safetensors::serialize(views, Some(meta)).unwrap();
        let out = to_f16_safetensors(&src).unwrap();
        let st = safetensors::SafeTensors::deserialize(&out).unwrap();
        let w = st.tensor("w").unwrap();
        assert_eq!(w.dtype(), Dtype::F16);
        assert_eq!(w.shape(), &[2, 3]);
        let back: Vec<f32> = w
            .data()
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        for (x, y) in a.iter().zip(&back) {
            assert!((x - y).abs() <= x.abs() * 1e-3 + 1e-6, "{x} -> {y}");
        }
        let i = st.tensor("ids").unwrap();
        assert_eq!((i.dtype(), i.data()), (Dtype::I32, ids.as_slice()));
        assert_eq!(
            safetensors_metadata(&out).get("format").map(String::as_str),
            Some("pt")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(to_f16_safetensors(b"not a safetensors file").is_err());
    }
}
