//! Images as Python hands them over: file paths, encoded bytes, or RGB pixel arrays. Paths go
//! through the facade's own pipelined file embedding (what `gclip embed` runs); mixed inputs
//! are decoded and preprocessed in parallel, one batch ahead of the model.

use std::path::PathBuf;
use std::sync::mpsc;

use gclip::image::{DecodeOptions, PilImage, RgbImage};
use gclip::Clip;
use numpy::{PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use rayon::prelude::*;

use crate::errors::{Failure, Kind, Result};

/// One image to embed.
pub enum ImageItem {
    /// A file; decoded in its own colour mode, as `gclip embed` does.
    Path(PathBuf),
    /// Encoded image bytes (PNG, JPEG, ...); `label` names it in errors.
    Bytes { data: Vec<u8>, label: String },
    /// Decoded RGB pixels (a `uint8` HxWx3 array or an RGB `PIL.Image`).
    Rgb(RgbImage),
}

impl ImageItem {
    /// Converts one Python object: `str` is a path, `bytes` encoded data, a `uint8` array of
    /// shape (H, W, 3) pixels. `label` (from the Python layer, e.g. "image 3 (PIL.Image,
    /// mode P)") names non-path inputs in error messages.
    pub fn extract(obj: &Bound<'_, PyAny>, index: usize, label: Option<String>) -> PyResult<Self> {
        if obj.is_instance_of::<PyString>() {
            return Ok(ImageItem::Path(PathBuf::from(obj.extract::<String>()?)));
        }
        if let Ok(b) = obj.cast::<PyBytes>() {
            let data = b.as_bytes().to_vec();
            let label = label.unwrap_or_else(|| format!("image {index} ({} bytes)", data.len()));
            return Ok(ImageItem::Bytes { data, label });
        }
        if let Ok(a) = obj.extract::<PyReadonlyArray3<'_, u8>>() {
            let shape = a.shape().to_vec();
            let label = label.unwrap_or_else(|| format!("image {index} (array)"));
            if shape[2] != 3 || shape[0] == 0 || shape[1] == 0 {
                return Err(Failure::invalid(format!(
                    "{label}: a pixel array must have shape (height, width, 3), got {shape:?}"
                ))
                .into());
            }
            let (h, w) = (u32::try_from(shape[0]), u32::try_from(shape[1]));
            let (Ok(h), Ok(w)) = (h, w) else {
                return Err(Failure::invalid(format!("{label}: image too large")).into());
            };
            let data: Vec<u8> = match a.as_slice() {
                Ok(s) => s.to_vec(),
                Err(_) => a.as_array().iter().copied().collect(),
            };
            let image = RgbImage::from_raw(w, h, data)
                .ok_or_else(|| Failure::invalid(format!("{label}: pixel buffer size mismatch")))?;
            return Ok(ImageItem::Rgb(image));
        }
        Err(PyTypeError::new_err(format!(
            "image {index}: expected a path (str), encoded bytes, a PIL.Image or a uint8 array \
             of shape (height, width, 3), got {}",
            obj.get_type().name()?
        )))
    }

    /// Decoded and preprocessed: `3 x S x S` floats in the checkpoint's pipeline.
    fn pixels(&self, clip: &Clip, decode: &DecodeOptions) -> Result<Vec<f32>> {
        let pre = clip.preprocessor();
        match self {
            ImageItem::Path(p) => {
                let img = gclip::image::load_image(p, decode).map_err(|source| {
                    Failure::from(gclip::Error::Image {
                        path: p.clone(),
                        source,
                    })
                })?;
                Ok(pre.preprocess_image(&img))
            }
            ImageItem::Bytes { data, label } => {
                let img = gclip::image::decode_image(data, decode).map_err(|e| {
                    Failure::new(
                        Kind::Image,
                        format!("{label}: {}", crate::errors::chain(&e)),
                    )
                })?;
                Ok(pre.preprocess_image(&img))
            }
            ImageItem::Rgb(image) => Ok(pre.preprocess_image(&PilImage::from_rgb(image.clone()))),
        }
    }
}

/// Preprocessed pixels of every item, `[n, 3, S, S]` flat.
pub fn preprocess(clip: &Clip, items: &[ImageItem]) -> Result<Vec<f32>> {
    preprocess_chunk(clip, items, &DecodeOptions::default())
}

/// Embeddings of every item in input order, `[n, dim]` flat; the first unreadable image fails
/// the call (its path or label in the message).
pub fn embed(clip: &Clip, items: &[ImageItem], normalize: bool, batch: usize) -> Result<Vec<f32>> {
    if items.iter().all(|i| matches!(i, ImageItem::Path(_))) {
        let paths: Vec<PathBuf> = items
            .iter()
            .filter_map(|i| match i {
                ImageItem::Path(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        return Ok(clip.embed_image_files(&paths, normalize)?.into_vec());
    }
    let decode = DecodeOptions::default();
    let batch = batch.max(1);
    std::thread::scope(|scope| -> Result<Vec<f32>> {
        // One batch decoded while the model computes the previous one.
        let (tx, rx) = mpsc::sync_channel::<Result<Vec<f32>>>(1);
        let decode = &decode;
        scope.spawn(move || {
            for chunk in items.chunks(batch) {
                let pixels = preprocess_chunk(clip, chunk, decode);
                let failed = pixels.is_err();
                if tx.send(pixels).is_err() || failed {
                    return;
                }
            }
        });
        let mut out = Vec::with_capacity(items.len() * clip.dim());
        for pixels in rx {
            out.extend(clip.embed_pixels(&pixels?, normalize)?.into_vec());
        }
        Ok(out)
    })
}

fn preprocess_chunk(clip: &Clip, chunk: &[ImageItem], decode: &DecodeOptions) -> Result<Vec<f32>> {
    let per: Vec<Result<Vec<f32>>> =
        clip.on_pool(|| chunk.par_iter().map(|i| i.pixels(clip, decode)).collect());
    let mut out = Vec::with_capacity(per.len() * clip.preprocessor().output_len());
    for p in per {
        out.extend_from_slice(&p?);
    }
    Ok(out)
}
