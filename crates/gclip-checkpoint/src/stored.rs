//! Tensors as they lie in weight files: memory-mapped safetensors and PyTorch zip archives,
//! described without reading their data, then read (and their pages released) one at a time.

use std::borrow::Cow;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::SafeTensors;

use crate::error::{io_err, CheckpointError, Result};
use crate::pickle::{self, PickleError};
use crate::tensor::{decode_f32, DType, RawTensor};

/// A memory-mapped weight file.
pub(crate) struct MappedFile {
    pub path: PathBuf,
    pub mmap: Mmap,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("len", &self.mmap.len())
            .finish()
    }
}

/// Element type as stored: a supported one, or the name of one that is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredType {
    Known(DType),
    Other(String),
}

/// One stored tensor: a strided view into a byte range of a mapped file.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub file: usize,
    pub dtype: StoredType,
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub strides: Vec<usize>,
    /// Absolute byte offset of element 0.
    pub start: usize,
}

impl Loc {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn is_contiguous(&self) -> bool {
        let mut expect = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expect {
                return false;
            }
            expect *= d;
        }
        true
    }

    /// Bytes from element 0 to one past the furthest element (0 for an empty tensor).
    fn extent_bytes(&self, es: usize) -> Option<usize> {
        if self.shape.contains(&0) {
            return Some(0);
        }
        let mut last = 0usize;
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            last = last.checked_add((d - 1).checked_mul(s)?)?;
        }
        last.checked_add(1)?.checked_mul(es)
    }
}

fn elem_size(t: &StoredType) -> usize {
    match t {
        StoredType::Known(d) => d.size(),
        StoredType::Other(_) => 1,
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn map(path: &Path) -> Result<Mmap> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    // SAFETY: the map is read-only and private; like every mmap reader we rely on the file not
    // being truncated while it is mapped.
    unsafe { Mmap::map(&file) }.map_err(io_err(path))
}

fn corrupt(path: &Path, detail: impl Into<String>) -> CheckpointError {
    CheckpointError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Maps a safetensors file and lists its tensors (file key, location).
pub(crate) fn open_safetensors(
    path: &Path,
    index: usize,
) -> Result<(MappedFile, Vec<(String, Loc)>)> {
    let mmap = map(path)?;
    let (header_len, meta) =
        SafeTensors::read_metadata(&mmap).map_err(|source| CheckpointError::Safetensors {
            path: path.to_path_buf(),
            source,
        })?;
    let data_start = 8 + header_len;
    let mut out = Vec::new();
    for (name, info) in meta.tensors() {
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => StoredType::Known(DType::F32),
            safetensors::Dtype::F16 => StoredType::Known(DType::F16),
            safetensors::Dtype::BF16 => StoredType::Known(DType::BF16),
            safetensors::Dtype::F64 => StoredType::Known(DType::F64),
            safetensors::Dtype::I64 => StoredType::Known(DType::I64),
            other => StoredType::Other(format!("{other:?}")),
        };
        // read_metadata has checked that the offsets tile the data section and match the
        // shapes, so these ranges lie inside the file.
        out.push((
            name,
            Loc {
                file: index,
                dtype,
                strides: contiguous_strides(&info.shape),
                shape: info.shape.clone(),
                start: data_start + info.data_offsets.0,
            },
        ));
    }
    Ok((
        MappedFile {
            path: path.to_path_buf(),
            mmap,
        },
        out,
    ))
}

/// Maps a PyTorch zip checkpoint, interprets its pickle and lists the tensors of its state
/// dict (file key, location). Storages are read in place from the map, so nothing but the
/// pickle itself is read here.
pub(crate) fn open_torch_zip(
    path: &Path,
    index: usize,
) -> Result<(MappedFile, Vec<(String, Loc)>)> {
    let mmap = map(path)?;
    let zip_err = |source| CheckpointError::Zip {
        path: path.to_path_buf(),
        source,
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(&mmap[..])).map_err(zip_err)?;
    // Member name -> (absolute data offset, size).
    let mut members = std::collections::HashMap::new();
    let mut pkl: Option<String> = None;
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).map_err(zip_err)?;
        let name = f.name().map_err(zip_err)?.to_string();
        if f.compression() != zip::CompressionMethod::Stored {
            // torch.save never compresses; a re-packed archive would need decompression.
            if name.ends_with("data.pkl") || name.contains("/data/") {
                return Err(CheckpointError::Unsupported(format!(
                    "{}: zip member `{name}` is compressed ({:?}); torch.save stores members \
                     uncompressed, re-save the checkpoint with torch.save",
                    path.display(),
                    f.compression()
                )));
            }
            continue;
        }
        let start = f
            .data_start()
            .ok_or_else(|| corrupt(path, format!("zip member `{name}` has no data offset")))?;
        let (start, size) = (start as usize, f.size() as usize);
        if start.checked_add(size).is_none_or(|e| e > mmap.len()) {
            return Err(corrupt(
                path,
                format!("zip member `{name}` runs past the end of the file"),
            ));
        }
        if name.ends_with("/data.pkl") && name.matches('/').count() == 1 || name == "data.pkl" {
            pkl = Some(name.clone());
        }
        members.insert(name, (start, size));
    }
    drop(archive);
    let pkl = pkl.ok_or_else(|| {
        corrupt(
            path,
            "zip archive has no `data.pkl`; not a torch.save checkpoint",
        )
    })?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Some(&(s, n)) = members.get(&format!("{prefix}byteorder")) {
        let order = &mmap[s..s + n];
        if order.trim_ascii() != b"little" {
            return Err(CheckpointError::Unsupported(format!(
                "{}: big-endian PyTorch checkpoint",
                path.display()
            )));
        }
    }
    let (ps, pn) = members[&pkl];
    let pickle_err = |source: PickleError| CheckpointError::Pickle {
        path: path.to_path_buf(),
        source,
    };
    let root = pickle::parse(&mmap[ps..ps + pn]).map_err(pickle_err)?;
    let tensors = pickle::state_dict_tensors(&root).map_err(pickle_err)?;
    drop(root);
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let member = format!("{prefix}data/{}", t.storage.key);
        let &(s, n) = members.get(&member).ok_or_else(|| {
            corrupt(
                path,
                format!("tensor `{name}` points at storage `{member}`, which is missing"),
            )
        })?;
        let dtype = match &t.storage.dtype {
            Ok(d) => StoredType::Known(*d),
            Err(class) => StoredType::Other(class.clone()),
        };
        let es = elem_size(&dtype);
        if t.storage.numel.checked_mul(es) != Some(n) && matches!(dtype, StoredType::Known(_)) {
            return Err(corrupt(
                path,
                format!(
                    "storage `{member}` of tensor `{name}` holds {n} bytes, expected {} \
                     elements of {es} bytes",
                    t.storage.numel
                ),
            ));
        }
        let loc = Loc {
            file: index,
            dtype,
            start: t
                .offset
                .checked_mul(es)
                .and_then(|o| o.checked_add(s))
                .ok_or_else(|| corrupt(path, format!("tensor `{name}`: offset overflows")))?,
            shape: t.shape,
            strides: t.strides,
        };
        if matches!(loc.dtype, StoredType::Known(_)) {
            let end = loc.extent_bytes(es).and_then(|e| e.checked_add(loc.start));
            if end.is_none_or(|e| e > s + n) {
                return Err(corrupt(
                    path,
                    format!(
                        "tensor `{name}` (shape {:?}, stride {:?}, offset {}) reaches past the \
                         end of its storage `{member}`",
                        loc.shape, loc.strides, t.offset
                    ),
                ));
            }
        }
        out.push((name, loc));
    }
    Ok((
        MappedFile {
            path: path.to_path_buf(),
            mmap,
        },
        out,
    ))
}

/// The element type, or an error naming the tensor when it is not a supported one.
pub(crate) fn known_dtype(loc: &Loc, key: &str, path: &Path) -> Result<DType> {
    match &loc.dtype {
        StoredType::Known(d) => Ok(*d),
        StoredType::Other(name) => Err(CheckpointError::Unsupported(format!(
            "{}: tensor `{key}` has element type {name}; only float (f32, f16, bf16, f64) \
             weights are supported",
            path.display()
        ))),
    }
}

/// The bytes of a stored tensor in row-major order (borrowed when contiguous).
fn gather<'a>(bytes: &'a [u8], loc: &Loc, es: usize) -> Cow<'a, [u8]> {
    let n = loc.numel();
    if loc.is_contiguous() {
        return Cow::Borrowed(&bytes[loc.start..loc.start + n * es]);
    }
    let mut out = Vec::with_capacity(n * es);
    let rank = loc.shape.len();
    let mut idx = vec![0usize; rank];
    for _ in 0..n {
        let off: usize = idx.iter().zip(&loc.strides).map(|(i, s)| i * s).sum();
        let at = loc.start + off * es;
        out.extend_from_slice(&bytes[at..at + es]);
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < loc.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Cow::Owned(out)
}

/// Reads a stored tensor as contiguous bytes of its stored type, then drops its pages from
/// this process's resident set.
pub(crate) fn read_raw(files: &[MappedFile], loc: &Loc, key: &str) -> Result<RawTensor> {
    let f = &files[loc.file];
    let dtype = known_dtype(loc, key, &f.path)?;
    let data = gather(&f.mmap, loc, dtype.size()).into_owned();
    release(f, loc, dtype.size());
    RawTensor::new(loc.shape.clone(), dtype, data)
}

/// Appends a stored tensor's values as f32 to `out` (row-major), then releases its pages.
pub(crate) fn read_f32(
    files: &[MappedFile],
    loc: &Loc,
    key: &str,
    out: &mut Vec<f32>,
) -> Result<()> {
    let f = &files[loc.file];
    let dtype = known_dtype(loc, key, &f.path)?;
    decode_f32(dtype, &gather(&f.mmap, loc, dtype.size()), out);
    release(f, loc, dtype.size());
    Ok(())
}

/// Drops the mapped pages of a tensor from the resident set. Without this a streamed load would
/// end with the whole file resident (file-backed pages count towards RSS).
fn release(f: &MappedFile, loc: &Loc, es: usize) {
    let len = loc.extent_bytes(es).unwrap_or(0);
    if len == 0 {
        return;
    }
    release_range(&f.mmap, loc.start, len);
}

#[cfg(unix)]
fn release_range(mmap: &Mmap, offset: usize, len: usize) {
    // SAFETY: the mapping is private, read-only and never written, so MADV_DONTNEED only
    // discards clean pages; a later access re-reads them from the file. No slice into the range
    // is alive across this call. Failure is harmless (the pages just stay resident).
    let _ = unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
}

#[cfg(not(unix))]
fn release_range(_mmap: &Mmap, _offset: usize, _len: usize) {}
