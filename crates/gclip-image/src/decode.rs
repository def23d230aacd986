//! Decoding to 8-bit RGB exactly as `PIL.Image.open(f).convert("RGB")` does.
//!
//! The container format is sniffed from the bytes (never the file name). Image
//! dimensions are checked against [`DecodeOptions`] before any pixel buffer is
//! allocated, so decompression bombs fail fast with [`ImageError::TooLarge`].
//!
//! Colour-mode conversions follow Pillow's `Convert.c`:
//! * L / LA / P / RGBA: grey replicated, palette looked up, alpha dropped (no compositing);
//! * 16-bit RGB(A) and LA: Pillow keeps the most significant byte;
//! * 16-bit greyscale (`I;16`): Pillow *clips* to 255 (values are not scaled);
//! * JPEG: decoded by libjpeg-turbo's own code with Pillow's settings (see the `jpeg`
//!   module), CMYK converted with Pillow's formula.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{ImageError, Result};

/// Limits and options for decoding untrusted images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Largest accepted width * height. Default 89,478,485 (Pillow's
    /// `MAX_IMAGE_PIXELS`, about 0.25 GiB of RGB).
    pub max_pixels: u64,
    /// Largest accepted width or height. Default 65,535.
    pub max_dimension: u32,
    /// Memory the decoder may allocate, in bytes. Default 1 GiB.
    pub max_alloc_bytes: u64,
    /// Largest file [`load_rgb`] reads, in bytes. Default 256 MiB.
    pub max_file_bytes: u64,
    /// Rotate/flip by the EXIF orientation tag. Off by default because the
    /// reference (open_clip + PIL) ignores EXIF orientation.
    pub apply_exif_orientation: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_pixels: 89_478_485,
            max_dimension: 65_535,
            max_alloc_bytes: 1 << 30,
            max_file_bytes: 256 << 20,
            apply_exif_orientation: false,
        }
    }
}

fn format_name(f: ImageFormat) -> String {
    format!("{f:?}").to_uppercase()
}

fn decode_err(format: ImageFormat, e: impl std::fmt::Display) -> ImageError {
    ImageError::Decode {
        path: None,
        format: format_name(format),
        message: e.to_string(),
    }
}

pub(crate) fn check_dims(w: u32, h: u32, opts: &DecodeOptions) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(ImageError::ZeroSize {
            path: None,
            width: w,
            height: h,
        });
    }
    if w > opts.max_dimension || h > opts.max_dimension {
        return Err(ImageError::TooLarge {
            path: None,
            what: format!(
                "{w}x{h} exceeds the {} pixel side limit",
                opts.max_dimension
            ),
        });
    }
    let px = w as u64 * h as u64;
    if px > opts.max_pixels {
        return Err(ImageError::TooLarge {
            path: None,
            what: format!(
                "{w}x{h} = {px} pixels exceeds the limit of {} pixels",
                opts.max_pixels
            ),
        });
    }
    Ok(())
}

/// Read and decode an image file (format sniffed from content) to RGB.
pub fn load_rgb(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<RgbImage> {
    let path = path.as_ref();
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > opts.max_file_bytes {
        return Err(ImageError::TooLarge {
            path: Some(path.to_path_buf()),
            what: format!("file is {len} bytes, limit is {}", opts.max_file_bytes),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    decode_rgb(&bytes, opts).map_err(|e| e.with_path(path))
}

/// Decode encoded image bytes to RGB like Pillow's `Image.open(..).convert("RGB")`.
/// GIF and other animations yield their first frame.
pub fn decode_rgb(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage> {
    let format =
        image::guess_format(bytes).map_err(|_| ImageError::UnknownFormat { path: None })?;
    match format {
        ImageFormat::Jpeg => return crate::jpeg::decode_jpeg(bytes, opts),
        ImageFormat::Gif => return decode_gif(bytes, opts),
        ImageFormat::Png | ImageFormat::WebP | ImageFormat::Bmp | ImageFormat::Tiff => {}
        _ => return Err(ImageError::UnknownFormat { path: None }),
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(opts.max_dimension);
    limits.max_image_height = Some(opts.max_dimension);
    limits.max_alloc = Some(opts.max_alloc_bytes);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_image_err(format, e))?;
    let (w, h) = decoder.dimensions();
    check_dims(w, h, opts)?;
    let orientation = if opts.apply_exif_orientation {
        decoder.orientation().ok()
    } else {
        None
    };
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| map_image_err(format, e))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(to_rgb_pil(img))
}

fn map_image_err(format: ImageFormat, e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Limits(l) => ImageError::TooLarge {
            path: None,
            what: l.to_string(),
        },
        other => decode_err(format, other),
    }
}

/// Convert any decoded colour type to RGB the way Pillow would have.
fn to_rgb_pil(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageRgb8(i) => i,
        // Pillow's `I;16` -> RGB clips instead of scaling.
        DynamicImage::ImageLuma16(i) => {
            let buf = i
                .into_raw()
                .iter()
                .flat_map(|&v| [v.min(255) as u8; 3])
                .collect();
            RgbImage::from_raw(w, h, buf).expect("sized buffer")
        }
        // 16-bit RGB/RGBA/LA: Pillow unpacks the high byte (e.g. `RGB;16B`).
        DynamicImage::ImageLumaA16(i) => {
            let buf = i
                .into_raw()
                .chunks_exact(2)
                .flat_map(|p| [(p[0] >> 8) as u8; 3])
                .collect();
            RgbImage::from_raw(w, h, buf).expect("sized buffer")
        }
        DynamicImage::ImageRgb16(i) => {
            let buf = i.into_raw().iter().map(|&v| (v >> 8) as u8).collect();
            RgbImage::from_raw(w, h, buf).expect("sized buffer")
        }
        DynamicImage::ImageRgba16(i) => {
            let buf = i
                .into_raw()
                .chunks_exact(4)
                .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
                .collect();
            RgbImage::from_raw(w, h, buf).expect("sized buffer")
        }
        // L, LA, RGBA: replicate grey / drop alpha, exactly `to_rgb8` for 8-bit input.
        other => other.to_rgb8(),
    }
}

/// First GIF frame on the logical screen, palette-expanded like Pillow's `P` -> `RGB`
/// (transparent pixels keep their palette colour; alpha is not composited).
fn decode_gif(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage> {
    let gerr = |e: gif::DecodingError| decode_err(ImageFormat::Gif, e);
    let mut o = gif::DecodeOptions::new();
    o.set_color_output(gif::ColorOutput::Indexed);
    if let Some(n) = std::num::NonZeroU64::new(opts.max_alloc_bytes) {
        o.set_memory_limit(gif::MemoryLimit::Bytes(n));
    }
    let mut dec = o.read_info(Cursor::new(bytes)).map_err(gerr)?;
    let (sw, sh) = (dec.width() as u32, dec.height() as u32);
    check_dims(sw, sh, opts)?;
    let global = dec.global_palette().map(<[u8]>::to_vec);
    let frame = dec
        .read_next_frame()
        .map_err(gerr)?
        .ok_or_else(|| decode_err(ImageFormat::Gif, "no image frame"))?;
    let palette = frame
        .palette
        .as_deref()
        .or(global.as_deref())
        .unwrap_or(&[]);
    let colour = |i: u8| -> [u8; 3] {
        let o = i as usize * 3;
        palette
            .get(o..o + 3)
            .map_or([0, 0, 0], |c| [c[0], c[1], c[2]])
    };
    // Outside the first frame Pillow shows the transparent index (or index 0).
    let bg = colour(frame.transparent.unwrap_or(0));
    let mut img = RgbImage::from_pixel(sw, sh, image::Rgb(bg));
    let (fl, ft, fw, fh) = (
        frame.left as u32,
        frame.top as u32,
        frame.width as u32,
        frame.height as u32,
    );
    for y in 0..fh.min(sh.saturating_sub(ft)) {
        for x in 0..fw.min(sw.saturating_sub(fl)) {
            let idx = frame
                .buffer
                .get((y * fw + x) as usize)
                .copied()
                .unwrap_or(0);
            img.put_pixel(fl + x, ft + y, image::Rgb(colour(idx)));
        }
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bytes_are_rejected() {
        let e = decode_rgb(b"hello world, not an image", &DecodeOptions::default()).unwrap_err();
        assert!(matches!(e, ImageError::UnknownFormat { .. }), "{e}");
    }
}
