//! JPEG decoding with libjpeg-turbo's decoder, configured as Pillow configures it.
//!
//! Pillow decodes JPEGs with libjpeg-turbo using the library defaults (accurate
//! integer IDCT `JDCT_ISLOW`, fancy chroma upsampling, block smoothing), so the only
//! way to get its pixels bit for bit is to run the same C code. `mozjpeg-sys` compiles
//! that decoder (mozjpeg's decoder *is* libjpeg-turbo's) from bundled sources with the
//! `cc` crate; this module is the safe wrapper around its decompression API.
//!
//! libjpeg reports fatal errors through a callback that must not return. Ours unwinds
//! (the C code is built with `-fexceptions` by mozjpeg-sys' `unwinding` feature and the
//! callbacks are `extern "C-unwind"`), the unwind is caught here and turned into an
//! [`ImageError`]; the decompressor is then destroyed, which libjpeg supports after
//! an aborted call. Nothing ever exits or aborts the process.

use std::any::Any;
use std::ffi::{c_char, c_int, c_long, c_ulong, CStr};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mozjpeg_sys::{
    jpeg_common_struct, jpeg_create_decompress, jpeg_decompress_struct, jpeg_destroy_decompress,
    jpeg_error_mgr, jpeg_mem_src, jpeg_read_header, jpeg_read_scanlines, jpeg_start_decompress,
    jpeg_std_error, JWRN_JPEG_EOF, J_COLOR_SPACE,
};

use crate::decode::{check_dims, DecodeOptions};
use crate::error::{ImageError, Result};
use crate::pil::{PilImage, PilMode};

/// `jpeg_read_header`'s "found an image" return code.
const JPEG_HEADER_OK: c_int = 1;
/// Size libjpeg's `format_message` may write (`JMSG_LENGTH_MAX` in jerror.h).
const JMSG_LENGTH_MAX: usize = 200;

fn jpeg_err(message: impl Into<String>) -> ImageError {
    ImageError::Decode {
        path: None,
        format: "JPEG".into(),
        message: message.into(),
    }
}

/// Unwind payload carrying libjpeg's message out of the C call stack.
struct JpegFailure(String);

/// libjpeg's text for the error or warning currently in `cinfo.err`.
///
/// # Safety
/// `cinfo.err` must point to an initialised error manager.
unsafe fn message(cinfo: &mut jpeg_common_struct) -> String {
    let Some(format) = (*cinfo.err).format_message else {
        return format!("libjpeg error {}", (*cinfo.err).msg_code);
    };
    // The binding declares the buffer as `&[u8; 80]`, but the C function writes up to
    // JMSG_LENGTH_MAX bytes through a `char *`: call it with that C signature.
    let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut c_char) =
        std::mem::transmute(format);
    let mut buf = [0 as c_char; JMSG_LENGTH_MAX];
    format(cinfo, buf.as_mut_ptr());
    buf[JMSG_LENGTH_MAX - 1] = 0;
    CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
}

/// libjpeg's fatal-error callback: unwind to [`decode_jpeg`] instead of exiting.
unsafe extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    let msg = message(cinfo);
    // `resume_unwind` skips the panic hook, so nothing is printed to stderr.
    resume_unwind(Box::new(JpegFailure(msg)));
}

/// libjpeg's warning/trace callback. Warnings about corrupt data are ignored, as
/// Pillow does, except running out of data: Pillow raises "image file is truncated"
/// there, while libjpeg would pad the image with grey and carry on.
unsafe extern "C-unwind" fn emit_message(cinfo: &mut jpeg_common_struct, msg_level: c_int) {
    if msg_level < 0 && (*cinfo.err).msg_code == JWRN_JPEG_EOF {
        resume_unwind(Box::new(JpegFailure(
            "image file is truncated (premature end of JPEG data)".into(),
        )));
    }
}

/// Owns a libjpeg decompressor and its error manager; destroys it on drop, including
/// after an unwind out of libjpeg.
struct Decompressor {
    cinfo: Box<jpeg_decompress_struct>,
    // Referenced by `cinfo.common.err`, so it lives in its own stable allocation and
    // is dropped after `cinfo` has been destroyed.
    _err: Box<jpeg_error_mgr>,
}

impl Decompressor {
    /// Create the decompressor. May unwind with [`JpegFailure`] (out of memory).
    fn new() -> Self {
        // SAFETY: both structs are plain C data for which all-zero bytes are valid
        // (null pointers, `None` callbacks, zero integers, first enum variants);
        // libjpeg initialises them below.
        let mut err: Box<jpeg_error_mgr> = Box::new(unsafe { std::mem::zeroed() });
        let mut cinfo: Box<jpeg_decompress_struct> = Box::new(unsafe { std::mem::zeroed() });
        unsafe {
            jpeg_std_error(&mut err);
        }
        err.error_exit = Some(error_exit);
        err.emit_message = Some(emit_message);
        cinfo.common.err = &mut *err;
        let mut d = Decompressor { cinfo, _err: err };
        // SAFETY: `cinfo.err` is set; on failure the unwind drops `d`, and destroying
        // a half-created decompressor is allowed (libjpeg checks for a null `mem`).
        unsafe { jpeg_create_decompress(&mut *d.cinfo) };
        d
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: created by `jpeg_create_decompress` (or still zeroed, which libjpeg
        // treats as nothing to free); the error manager is still alive.
        unsafe { jpeg_destroy_decompress(&mut self.cinfo) };
    }
}

/// Decode JPEG bytes in the mode Pillow opens them with: `L` (greyscale), `RGB`
/// (YCbCr / RGB converted by libjpeg) or `CMYK` (CMYK and YCCK decoded to CMYK by libjpeg,
/// stored inverted as Pillow's `CMYK;I` raw mode does).
/// Dimensions are checked against `opts` from the header, before any pixel is decoded.
pub(crate) fn decode_jpeg(bytes: &[u8], opts: &DecodeOptions) -> Result<PilImage> {
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<PilImage> {
        let mut d = Decompressor::new();
        decode_with(&mut d.cinfo, bytes, opts)
    }));
    let mut img = match outcome {
        Ok(result) => result?,
        Err(payload) => return Err(jpeg_err(failure_message(payload))),
    };
    if opts.apply_exif_orientation {
        if let Some(o) = find_exif(bytes).and_then(image::metadata::Orientation::from_exif_chunk) {
            img.apply_orientation(o);
        }
    }
    Ok(img)
}

/// Text of a caught unwind: libjpeg's message, or a Rust panic from our own code
/// (which should not happen, but must not take the process down either).
fn failure_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<JpegFailure>() {
        Ok(f) => f.0,
        Err(other) => match other.downcast::<String>() {
            Ok(s) => format!("internal decoder error: {s}"),
            Err(other) => match other.downcast::<&'static str>() {
                Ok(s) => format!("internal decoder error: {s}"),
                Err(_) => "internal decoder error".into(),
            },
        },
    }
}

fn decode_with(
    cinfo: &mut jpeg_decompress_struct,
    bytes: &[u8],
    opts: &DecodeOptions,
) -> Result<PilImage> {
    let len = c_ulong::try_from(bytes.len()).map_err(|_| jpeg_err("file too large"))?;
    // SAFETY (whole block): `cinfo` was created by `Decompressor::new`; `bytes` outlives
    // every libjpeg call made on it here (the source is only read during this function);
    // fatal errors unwind to `decode_jpeg`'s `catch_unwind`.
    unsafe {
        jpeg_mem_src(cinfo, bytes.as_ptr(), len);
        // Bound libjpeg's own allocations too (e.g. progressive coefficient buffers).
        (*cinfo.common.mem).max_memory_to_use =
            c_long::try_from(opts.max_alloc_bytes).unwrap_or(c_long::MAX);
        if jpeg_read_header(cinfo, 1) != JPEG_HEADER_OK {
            return Err(jpeg_err("no image in the JPEG data"));
        }
    }
    let (w, h) = (cinfo.image_width, cinfo.image_height);
    check_dims(w, h, opts)?;
    // Pillow accepts 1 (L), 3 (RGB) and 4 (CMYK) components only.
    let (mode, space) = match cinfo.num_components {
        1 => (PilMode::L, J_COLOR_SPACE::JCS_GRAYSCALE),
        3 => (PilMode::Rgb, J_COLOR_SPACE::JCS_RGB),
        4 => (PilMode::Cmyk, J_COLOR_SPACE::JCS_CMYK),
        n => return Err(jpeg_err(format!("cannot handle {n}-component images"))),
    };
    // Everything else stays at libjpeg's defaults, as in Pillow: JDCT_ISLOW, fancy
    // upsampling, block smoothing, no scaling. YCCK -> CMYK is libjpeg's conversion,
    // requested by Pillow for 4-component files.
    cinfo.out_color_space = space;
    unsafe {
        jpeg_start_decompress(cinfo);
    }
    let channels = mode.channels();
    if cinfo.output_width != w
        || cinfo.output_height != h
        || cinfo.output_components != channels as c_int
    {
        return Err(jpeg_err("decoder output does not match the header"));
    }
    let stride = w as usize * channels;
    let mut raw = vec![0u8; stride * h as usize];
    let mut rows: Vec<*mut u8> = raw
        .chunks_exact_mut(stride)
        .map(<[u8]>::as_mut_ptr)
        .collect();
    while cinfo.output_scanline < h {
        let done = cinfo.output_scanline as usize;
        // SAFETY: each pointer addresses `stride` writable bytes of `raw`, which is not
        // otherwise accessed until decoding ends; at most `h - done` rows are written.
        let n = unsafe { jpeg_read_scanlines(cinfo, rows[done..].as_mut_ptr(), h - done as u32) };
        if n == 0 {
            // Only a suspending data source returns no rows; the memory source never
            // suspends, so treat it as corrupt data rather than looping.
            return Err(jpeg_err("decoder made no progress"));
        }
    }
    // Deliberately no `jpeg_finish_decompress`: like Pillow, stop once every row is
    // decoded, so a missing EOI marker after complete image data is not an error.
    drop(rows);
    if mode == PilMode::Cmyk {
        // Pillow always unpacks 4-component JPEGs with raw mode `CMYK;I` (inverted, the
        // Adobe convention, whether or not an Adobe marker is present).
        for v in &mut raw {
            *v = 255 - *v;
        }
    }
    Ok(PilImage::new8(mode, w, h, raw))
}

/// The TIFF payload of the first `APP1` "Exif" segment before the first scan.
fn find_exif(b: &[u8]) -> Option<&[u8]> {
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // start of scan / end of image: no more header segments
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        let seg = b.get(i + 4..(i + 2 + len).min(b.len()))?;
        if marker == 0xE1 && seg.starts_with(b"Exif\0\0") {
            return Some(&seg[6..]);
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pillow_cmyk_formula_endpoints() {
        // Pillow's CMYK: 0 = no ink. No ink is white, full key black, full cyan no red.
        let rgb = |p: [u8; 4]| {
            PilImage::new8(PilMode::Cmyk, 1, 1, p.to_vec())
                .to_rgb()
                .into_raw()
        };
        assert_eq!(rgb([0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!(rgb([0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(rgb([255, 0, 0, 0]), [0, 255, 255]);
    }

    #[test]
    fn garbage_after_soi_is_an_error_not_an_abort() {
        let e = decode_jpeg(b"\xFF\xD8\xFF\x00garbage", &DecodeOptions::default()).unwrap_err();
        assert!(matches!(e, ImageError::Decode { .. }), "{e}");
    }

    #[test]
    fn empty_input_is_an_error() {
        let e = decode_jpeg(b"", &DecodeOptions::default()).unwrap_err();
        assert!(matches!(e, ImageError::Decode { .. }), "{e}");
    }
}
