//! `gclip preprocess`: images -> the model's float32 `[N, 3, H, W]` input tensor as NPY.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use gclip_image::{DecodeOptions, ImagePipeline, PreprocessConfig, Preprocessor};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory: preprocessing comes from its open_clip_config.json
    /// (`preprocess_cfg` + `model_cfg.vision_cfg.image_size`) or its HF
    /// preprocessor_config.json; without it, OpenAI CLIP defaults at 224.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output NPY file (float32, shape [N, 3, H, W], normalised).
    #[arg(long, short)]
    output: PathBuf,
    /// Rotate images by their EXIF orientation (the reference does not).
    #[arg(long)]
    exif_orientation: bool,
    /// Whose preprocessing to reproduce: `open_clip` (resize in the image's own colour
    /// mode, then RGB) or `transformers` (RGB on white first). Default: the model
    /// directory's kind (open_clip_config.json or preprocessor_config.json), else open_clip.
    #[arg(long)]
    pipeline: Option<ImagePipeline>,
    /// Refuse images with more pixels than this (decompression-bomb guard).
    #[arg(long, default_value_t = DecodeOptions::default().max_pixels)]
    max_pixels: u64,
    /// Image files (format detected from content).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = match &args.model {
        Some(dir) => {
            anyhow::ensure!(
                dir.is_dir(),
                "model path {} is not a directory",
                dir.display()
            );
            match PreprocessConfig::from_model_dir(dir)? {
                Some(cfg) => cfg,
                None => {
                    tracing::warn!(
                        "{} has no open_clip_config.json or preprocessor_config.json; using CLIP defaults",
                        dir.display()
                    );
                    PreprocessConfig::default()
                }
            }
        }
        None => PreprocessConfig::default(),
    };
    let cfg = match args.pipeline {
        Some(pipeline) => PreprocessConfig { pipeline, ..cfg },
        None => cfg,
    };
    let decode = DecodeOptions {
        max_pixels: args.max_pixels,
        apply_exif_orientation: args.exif_orientation,
        ..DecodeOptions::default()
    };
    let (h, w) = cfg.image_size;
    let pre = Preprocessor::new(cfg).with_decode_options(decode);
    if let Err(e) = write_all(&pre, &args.images, &args.output, (h, w)) {
        // Do not leave a truncated NPY behind.
        let _ = std::fs::remove_file(&args.output);
        return Err(e);
    }
    eprintln!(
        "wrote {} image(s) as float32 [{}, 3, {h}, {w}] to {}",
        args.images.len(),
        args.images.len(),
        display(&args.output)
    );
    Ok(())
}

fn write_all(
    pre: &Preprocessor,
    images: &[PathBuf],
    output: &Path,
    (h, w): (usize, usize),
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut out = BufWriter::new(file);
    let io_err = || format!("writing {}", output.display());
    write_npy_header(&mut out, &[images.len(), 3, h, w]).with_context(io_err)?;
    // One image at a time keeps memory flat for long lists; the resize itself is parallel.
    for path in images {
        let chw = pre.preprocess_path(path)?;
        let bytes: Vec<u8> = chw.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes).with_context(io_err)?;
    }
    out.flush().with_context(io_err)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// NPY format 1.0 header for a C-order little-endian float32 array: magic, version,
/// header length, then a Python dict literal padded with spaces so the data starts
/// on a 64-byte boundary.
pub(crate) fn write_npy_header(out: &mut impl Write, shape: &[usize]) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn npy_header_is_aligned() {
        let mut v = Vec::new();
        super::write_npy_header(&mut v, &[2, 3, 224, 224]).unwrap();
        assert_eq!(v.len() % 64, 0);
        assert!(std::str::from_utf8(&v[10..])
            .unwrap()
            .contains("'shape': (2, 3, 224, 224)"));
    }
}
