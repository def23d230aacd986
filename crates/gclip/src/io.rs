//! Files in and out: finding images, NPY and safetensors writers for embeddings and
//! preprocessed pixels.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use gclip_vectors::Embeddings;

use crate::error::{io_err, Error, Result};

/// File extensions treated as images when walking directories or guessing item kinds.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// Whether `p` has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Image files under `dir`, recursively (following directory links), sorted for a stable order.
pub fn walk_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_err(&d))? {
            let entry = entry.map_err(io_err(&d))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io_err(&path))?;
            if ft.is_dir() || (ft.is_symlink() && path.is_dir()) {
                stack.push(path);
            } else if has_image_extension(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// NPY format 1.0 header for a C-order little-endian float32 array: magic, version,
/// header length, then a Python dict literal padded with spaces so the data starts
/// on a 64-byte boundary.
pub fn write_npy_header(out: &mut impl Write, shape: &[usize]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}{}), }}",
        dims.join(", "),
        if shape.len() == 1 { "," } else { "" }
    );
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(dict.len() as u16).to_le_bytes())?;
    out.write_all(dict.as_bytes())
}

/// Appends `data` as little-endian float32 (the body of an NPY array).
pub fn write_f32_le(out: &mut impl Write, data: &[f32]) -> std::io::Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    out.write_all(&bytes)
}

/// Writes a little-endian float32 C-order NPY file; `data` must hold the product of `shape`.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(Error::Invalid(format!(
            "NPY shape {shape:?} holds {n} values, got {}",
            data.len()
        )));
    }
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::new(file);
    write_npy_header(&mut w, shape).map_err(io_err(path))?;
    write_f32_le(&mut w, data).map_err(io_err(path))?;
    w.flush().map_err(io_err(path))
}

/// Writes `emb` as a safetensors file with one F32 tensor `embeddings` of shape
/// `[rows, dim]` and `metadata` in its header.
pub fn write_safetensors_embeddings(
    path: &Path,
    emb: &Embeddings,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<u8> = emb
        .as_slice()
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![emb.len(), emb.dim()],
        &bytes,
    )?;
    safetensors::serialize_to_file([("embeddings", view)], Some(metadata), path).map_err(
        |e| match e {
            safetensors::SafeTensorError::IoError(source) => Error::Io {
                path: path.to_path_buf(),
                source,
            },
            other => Error::Safetensors(other),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned() {
        let mut v = Vec::new();
        write_npy_header(&mut v, &[2, 3, 224, 224]).unwrap();
        assert_eq!(v.len() % 64, 0);
        assert!(std::str::from_utf8(&v[10..])
            .unwrap()
            .contains("'shape': (2, 3, 224, 224)"));
        let mut one = Vec::new();
        write_npy_header(&mut one, &[5]).unwrap();
        assert!(std::str::from_utf8(&one[10..]).unwrap().contains("(5,)"));
    }

    #[test]
    fn npy_shape_must_match_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_npy_f32(&dir.path().join("x.npy"), &[2, 2], &[1.0; 3]).unwrap_err();
        assert!(
            matches!(e, Error::Invalid(ref m) if m.contains("holds 4")),
            "{e}"
        );
    }
}
