//! `gclip preprocess`: images -> the model's float32 `[N, 3, H, W]` input tensor as NPY.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use gclip::image::{DecodeOptions, PreprocessConfig, Preprocessor};
use gclip::io::{write_f32_le, write_npy_header};
use gclip::ImagePipeline;

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
    /// Whose image pipeline runs: open_clip or transformers [default: the model's ecosystem's].
    #[arg(long, value_name = "PIPELINE", alias = "pipeline")]
    image_pipeline: Option<ImagePipeline>,
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
            match gclip::resolve::preprocess_for_dir(dir, args.image_pipeline)? {
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
        None => gclip::resolve::preprocess(
            gclip::Ecosystem::OpenClip,
            None,
            PreprocessConfig::default().image_size.0,
            args.image_pipeline,
        )?,
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
        write_f32_le(&mut out, &chw).with_context(io_err)?;
    }
    out.flush().with_context(io_err)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
