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
//! * CMYK JPEG: Adobe files are stored inverted (Pillow's `CMYK;I` raw mode), then
//!   `nk = 255 - k; c' = nk - c * nk / 255` with Pillow's rounded integer division.

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

fn check_dims(w: u32, h: u32, opts: &DecodeOptions) -> Result<()> {
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
        ImageFormat::Jpeg => return decode_jpeg(bytes, opts),
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

/// True when the JPEG has an Adobe APP14 segment (which means inverted CMYK).
fn has_adobe_marker(b: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return false;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return false; // start of scan / end: no more header segments
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if marker == 0xEE && b.get(i + 4..i + 9) == Some(b"Adobe") {
            return true;
        }
        i += 2 + len;
    }
    false
}

/// Decode a JPEG with zune-jpeg in strict mode (truncated data is an error, as in
/// Pillow). CMYK files get Pillow's conversion; EXIF orientation on request.
fn decode_jpeg(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage> {
    use zune_jpeg::errors::DecodeErrors;
    use zune_jpeg::zune_core::{colorspace::ColorSpace, options::DecoderOptions};
    let jerr = |e: DecodeErrors| match e {
        DecodeErrors::LargeDimensions(_) => ImageError::TooLarge {
            path: None,
            what: e.to_string(),
        },
        e => decode_err(ImageFormat::Jpeg, e),
    };
    let zopts = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(opts.max_dimension as usize)
        .set_max_height(opts.max_dimension as usize);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(Cursor::new(bytes), zopts);
    dec.decode_headers().map_err(jerr)?;
    let info = dec
        .info()
        .ok_or_else(|| decode_err(ImageFormat::Jpeg, "missing frame header"))?;
    let (w, h) = (info.width as u32, info.height as u32);
    check_dims(w, h, opts)?;
    let cmyk = dec.input_colorspace() == Some(ColorSpace::CMYK);
    // Grey and YCbCr come out as RGB directly (grey replicated, like Pillow's L -> RGB).
    dec.set_options(zopts.jpeg_set_out_colorspace(if cmyk {
        ColorSpace::CMYK
    } else {
        ColorSpace::RGB
    }));
    let raw = dec.decode().map_err(jerr)?;
    let channels = if cmyk { 4 } else { 3 };
    if raw.len() != w as usize * h as usize * channels {
        return Err(decode_err(
            ImageFormat::Jpeg,
            "decoded buffer has unexpected size",
        ));
    }
    let img = if cmyk {
        let invert = if has_adobe_marker(bytes) { 255u8 } else { 0 };
        let muldiv255 = |a: u32, b: u32| {
            let t = a * b + 128;
            ((t >> 8) + t) >> 8
        };
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for p in raw.chunks_exact(4) {
            let nk = 255 - (p[3] ^ invert) as u32;
            for &c in &p[..3] {
                out.push(nk.saturating_sub(muldiv255((c ^ invert) as u32, nk)) as u8);
            }
        }
        RgbImage::from_raw(w, h, out)
    } else {
        RgbImage::from_raw(w, h, raw)
    }
    .ok_or_else(|| decode_err(ImageFormat::Jpeg, "decoded buffer has unexpected size"))?;
    if opts.apply_exif_orientation {
        if let Some(o) = dec
            .exif()
            .and_then(|e| image::metadata::Orientation::from_exif_chunk(e))
        {
            let mut d = DynamicImage::ImageRgb8(img);
            d.apply_orientation(o);
            return Ok(d.into_rgb8());
        }
    }
    Ok(img)
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
    fn pillow_cmyk_formula_endpoints() {
        let muldiv255 = |a: u32, b: u32| {
            let t = a * b + 128;
            ((t >> 8) + t) >> 8
        };
        // No ink = white, full key = black, full cyan = no red.
        assert_eq!(255 - muldiv255(0, 255), 255);
        assert_eq!(255u32.saturating_sub(muldiv255(255, 255)), 0);
    }

    #[test]
    fn unknown_bytes_are_rejected() {
        let e = decode_rgb(b"hello world, not an image", &DecodeOptions::default()).unwrap_err();
        assert!(matches!(e, ImageError::UnknownFormat { .. }), "{e}");
    }
}
