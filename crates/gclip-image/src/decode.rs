//! Decoding in Pillow's colour modes, and to 8-bit RGB exactly as
//! `PIL.Image.open(f).convert("RGB")` does.
//!
//! The container format is sniffed from the bytes (never the file name). Image
//! dimensions are checked against [`DecodeOptions`] before any pixel buffer is
//! allocated, so decompression bombs fail fast with [`ImageError::TooLarge`].
//!
//! Modes follow Pillow's plugins: PNG grey 1-bit is `1`, 2/4/8-bit `L`, 16-bit `I;16`;
//! palettes stay `P` (tRNS as palette alpha); 16-bit colour keeps its high byte; a GIF's
//! first frame is `P` (or `L` with an identity grey palette) with its transparent index;
//! JPEG is `L`, `RGB` or `CMYK`, decoded by libjpeg-turbo's own code with Pillow's
//! settings (see the `jpeg` module). Conversions follow Pillow's `Convert.c` (see
//! [`PilImage::to_rgb`]).

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{ImageError, Result};
use crate::pil::{default_palette, PilImage, PilMode, Transparency};

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

/// Read and decode an image file (format sniffed from content) to RGB, like
/// `Image.open(path).convert("RGB")`.
pub fn load_rgb(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<RgbImage> {
    Ok(load_image(path, opts)?.to_rgb())
}

/// Read and decode an image file (format sniffed from content) in its Pillow mode.
pub fn load_image(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<PilImage> {
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
    decode_image(&bytes, opts).map_err(|e| e.with_path(path))
}

/// Decode encoded image bytes to RGB like Pillow's `Image.open(..).convert("RGB")`.
/// GIF and other animations yield their first frame.
pub fn decode_rgb(bytes: &[u8], opts: &DecodeOptions) -> Result<RgbImage> {
    Ok(decode_image(bytes, opts)?.to_rgb())
}

/// Decode encoded image bytes keeping the mode Pillow's `Image.open` reports
/// (`1`, `L`, `LA`, `P` with its palette and transparency, `RGB`, `RGBA`, `I;16`, `CMYK`).
/// GIF and other animations yield their first frame.
///
/// PNG, JPEG and GIF keep their mode exactly as Pillow does. WebP, BMP and TIFF go
/// through the `image` crate, which expands palettes: a palette BMP / TIFF comes back as
/// RGB where Pillow would say `P`.
pub fn decode_image(bytes: &[u8], opts: &DecodeOptions) -> Result<PilImage> {
    let format =
        image::guess_format(bytes).map_err(|_| ImageError::UnknownFormat { path: None })?;
    match format {
        ImageFormat::Jpeg => return crate::jpeg::decode_jpeg(bytes, opts),
        ImageFormat::Gif => return decode_gif(bytes, opts),
        ImageFormat::Png => return decode_png(bytes, opts),
        ImageFormat::WebP | ImageFormat::Bmp | ImageFormat::Tiff => {}
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
    let img = DynamicImage::from_decoder(decoder).map_err(|e| map_image_err(format, e))?;
    let mut img = to_pil(img);
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img)
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

/// The Pillow mode of an `image`-crate decode. 16-bit colour keeps the most significant
/// byte (Pillow's `RGB;16B` style unpackers); 16-bit grey stays `I;16`.
fn to_pil(img: DynamicImage) -> PilImage {
    let (w, h) = (img.width(), img.height());
    let hi = |v: &[u16]| v.iter().map(|&x| (x >> 8) as u8).collect::<Vec<u8>>();
    match img {
        DynamicImage::ImageLuma8(i) => PilImage::new8(PilMode::L, w, h, i.into_raw()),
        DynamicImage::ImageLumaA8(i) => PilImage::new8(PilMode::La, w, h, i.into_raw()),
        DynamicImage::ImageRgb8(i) => PilImage::new8(PilMode::Rgb, w, h, i.into_raw()),
        DynamicImage::ImageRgba8(i) => PilImage::new8(PilMode::Rgba, w, h, i.into_raw()),
        DynamicImage::ImageLuma16(i) => PilImage::new16(w, h, i.into_raw()),
        DynamicImage::ImageLumaA16(i) => PilImage::new8(PilMode::La, w, h, hi(i.as_raw())),
        DynamicImage::ImageRgb16(i) => PilImage::new8(PilMode::Rgb, w, h, hi(i.as_raw())),
        DynamicImage::ImageRgba16(i) => PilImage::new8(PilMode::Rgba, w, h, hi(i.as_raw())),
        other => PilImage::from_rgb(other.to_rgb8()),
    }
}

/// PNG in Pillow's modes: grey 1-bit is `1`, 2/4/8-bit `L` (scaled by bit replication),
/// 16-bit `I;16`; palettes stay `P` with tRNS as palette alpha; 16-bit colour keeps the
/// high byte; a tRNS colour key on grey / RGB is kept as `info["transparency"]`.
fn decode_png(bytes: &[u8], opts: &DecodeOptions) -> Result<PilImage> {
    let perr = |e: png::DecodingError| match e {
        png::DecodingError::LimitsExceeded => ImageError::TooLarge {
            path: None,
            what: "PNG decoder memory limit exceeded".into(),
        },
        other => decode_err(ImageFormat::Png, other),
    };
    let limits = png::Limits {
        bytes: usize::try_from(opts.max_alloc_bytes).unwrap_or(usize::MAX),
    };
    let mut dec = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info().map_err(perr)?;
    let info = reader.info();
    let (w, h) = (info.width, info.height);
    check_dims(w, h, opts)?;
    let (ct, depth) = (info.color_type, info.bit_depth as u8);
    let palette = info.palette.as_ref().map(|p| p.to_vec());
    let trns = info.trns.as_ref().map(|t| t.to_vec());
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| decode_err(ImageFormat::Png, "image too large for this platform"))?;
    if size as u64 > opts.max_alloc_bytes {
        return Err(ImageError::TooLarge {
            path: None,
            what: format!(
                "{w}x{h} PNG needs {size} bytes, limit is {}",
                opts.max_alloc_bytes
            ),
        });
    }
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(perr)?;
    let line = frame.line_size;
    let (wu, hu) = (w as usize, h as usize);
    use png::ColorType as C;
    let samples = |channels: usize| -> Vec<u16> {
        // Unpack rows of `depth`-bit samples (MSB first) to one value each.
        let mut v = Vec::with_capacity(wu * hu * channels);
        for row in buf.chunks(line).take(hu) {
            let n = wu * channels;
            match depth {
                16 => v.extend(
                    row.chunks_exact(2)
                        .take(n)
                        .map(|b| u16::from_be_bytes([b[0], b[1]])),
                ),
                8 => v.extend(row.iter().take(n).map(|&b| b as u16)),
                d => {
                    let per = 8 / d as usize;
                    let mask = (1u16 << d) - 1;
                    v.extend((0..n).map(|i| {
                        let b = row.get(i / per).copied().unwrap_or(0) as u16;
                        (b >> (8 - d as usize * (i % per + 1))) & mask
                    }));
                }
            }
        }
        v.resize(wu * hu * channels, 0);
        v
    };
    let key = |n: usize| -> Option<Transparency> {
        let t = trns.as_ref()?;
        // The png crate keeps 16-bit keys as is and only the low byte of narrower ones.
        let k: Vec<u16> = if depth == 16 {
            t.chunks_exact(2)
                .take(n)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect()
        } else {
            t.iter().take(n).map(|&b| b as u16).collect()
        };
        (k.len() == n).then(|| {
            Transparency::Key(if n == 1 {
                [k[0]; 3]
            } else {
                [k[0], k[1], k[2]]
            })
        })
    };
    let to8 = |v: Vec<u16>| -> Vec<u8> {
        match depth {
            16 => v.into_iter().map(|x| (x >> 8) as u8).collect(),
            // Pillow's L;2 / L;4 unpackers scale by bit replication.
            4 => v.into_iter().map(|x| (x * 17) as u8).collect(),
            2 => v.into_iter().map(|x| (x * 85) as u8).collect(),
            _ => v.into_iter().map(|x| x as u8).collect(),
        }
    };
    let mut img = match ct {
        C::Grayscale if depth == 1 => {
            let v = samples(1).into_iter().map(|x| if x != 0 { 255 } else { 0 });
            PilImage::new8(PilMode::Bilevel, w, h, v.collect())
        }
        C::Grayscale if depth == 16 => PilImage::new16(w, h, samples(1)),
        C::Grayscale => PilImage::new8(PilMode::L, w, h, to8(samples(1))),
        C::GrayscaleAlpha => PilImage::new8(PilMode::La, w, h, to8(samples(2))),
        C::Rgb => PilImage::new8(PilMode::Rgb, w, h, to8(samples(3))),
        C::Rgba => PilImage::new8(PilMode::Rgba, w, h, to8(samples(4))),
        C::Indexed => {
            let idx = samples(1).into_iter().map(|x| x as u8).collect();
            let mut p = PilImage::new8(PilMode::P, w, h, idx);
            let mut pal = default_palette();
            for (e, c) in pal
                .iter_mut()
                .zip(palette.as_deref().unwrap_or(&[]).chunks_exact(3))
            {
                e[..3].copy_from_slice(c);
            }
            if let Some(t) = &trns {
                for (e, &a) in pal.iter_mut().zip(t) {
                    e[3] = a;
                }
                p.transparency = Some(Transparency::Palette);
            }
            p.palette = Some(pal);
            p
        }
    };
    if matches!(ct, C::Grayscale) {
        img.transparency = key(1);
    } else if matches!(ct, C::Rgb) {
        img.transparency = key(3);
    }
    if opts.apply_exif_orientation {
        if let Some(o) = reader
            .info()
            .exif_metadata
            .as_deref()
            .and_then(image::metadata::Orientation::from_exif_chunk)
        {
            img.apply_orientation(o);
        }
    }
    Ok(img)
}

/// First GIF frame on the logical screen, as Pillow opens it: mode `P` with the frame's
/// (or global) palette and the transparent index as palette alpha, or `L` when the
/// palette is the identity grey ramp (or absent). Outside the frame Pillow shows the
/// transparent index (or index 0); a frame reaching past the screen enlarges the image.
fn decode_gif(bytes: &[u8], opts: &DecodeOptions) -> Result<PilImage> {
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
    let (fl, ft, fw, fh) = (
        frame.left as u32,
        frame.top as u32,
        frame.width as u32,
        frame.height as u32,
    );
    let (w, h) = (sw.max(fl + fw), sh.max(ft + fh));
    check_dims(w, h, opts)?;
    // Pillow drops a palette that is the identity grey ramp (`_is_palette_needed`).
    let needed = |p: &[u8]| {
        p.chunks_exact(3)
            .enumerate()
            .any(|(i, c)| !(c[0] as usize == i && c[1] as usize == i && c[2] as usize == i))
    };
    let palette = frame
        .palette
        .as_deref()
        .filter(|p| needed(p))
        .or(global.as_deref().filter(|p| needed(p)));
    let bg = frame.transparent.unwrap_or(0);
    let mut data = vec![bg; w as usize * h as usize];
    for y in 0..fh {
        let row = (ft + y) as usize * w as usize + fl as usize;
        for x in 0..fw as usize {
            data[row + x] = frame
                .buffer
                .get(y as usize * fw as usize + x)
                .copied()
                .unwrap_or(0);
        }
    }
    let img = match palette {
        Some(p) => {
            let mut img = PilImage::new8(PilMode::P, w, h, data);
            let mut pal = default_palette();
            for (e, c) in pal.iter_mut().zip(p.chunks_exact(3)) {
                e[..3].copy_from_slice(c);
            }
            if let Some(t) = frame.transparent {
                pal[t as usize][3] = 0;
                img.transparency = Some(Transparency::Palette);
            }
            img.palette = Some(pal);
            img
        }
        None => {
            let mut img = PilImage::new8(PilMode::L, w, h, data);
            img.transparency = frame.transparent.map(|t| Transparency::Key([t as u16; 3]));
            img
        }
    };
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
