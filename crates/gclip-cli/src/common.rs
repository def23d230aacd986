//! Pieces shared by the subcommands: model selection, input classification, output helpers.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gclip::io::has_image_extension;
use gclip::{Clip, ImagePipeline, ModelSource};

/// `--model` / `--arch`, shared by every command that runs a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Checkpoint: HF CLIPModel dir, open_clip dir, or a bare .safetensors/.bin/.pt file
    /// (then with --arch). Defaults to $GCLIP_MODEL, else the embedded default model.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// open_clip architecture name for a bare weight file (e.g. ViT-B-32).
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// Precision of the CPU engine's linear layers (int8: dynamic quantisation, on AVX512-VNNI
    /// or AVX2; an error on CPUs with neither).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: PrecisionArg,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Run the towers on candle (the reference path) instead of gclip's CPU engine.
    #[arg(long)]
    pub reference: bool,
    /// Whose image pipeline preprocesses images: open_clip or transformers
    /// [default: the checkpoint's own ecosystem's].
    #[arg(long, value_name = "PIPELINE")]
    pub image_pipeline: Option<ImagePipeline>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    Fp32,
    Int8,
}

impl ModelArgs {
    pub fn source(&self) -> ModelSource {
        ModelSource::resolve_with_arch(self.model.as_deref(), self.arch.as_deref())
    }

    pub fn load(&self) -> anyhow::Result<Clip> {
        let source = self.source();
        tracing::info!(model = %source.describe(), "loading model");
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        let runtime = gclip::RuntimeOptions {
            backend: if self.reference {
                gclip::Backend::Candle
            } else {
                gclip::Backend::Engine
            },
            precision: match self.precision {
                PrecisionArg::Fp32 => gclip::Precision::Fp32,
                PrecisionArg::Int8 => gclip::Precision::Int8,
            },
            threads: self.threads,
            image_pipeline: self.image_pipeline,
        };
        // Image decoding shares the global pool; size it like the engine's.
        runtime.configure_global_threads()?;
        let clip = Clip::load_with(&source, &runtime)
            .with_context(|| format!("loading model {}", source.describe()))?;
        if self.precision == PrecisionArg::Int8 && clip.runtime().1 != gclip::Precision::Int8 {
            tracing::warn!("int8 runs on the CPU engine only: the --reference path runs fp32");
        }
        Ok(clip)
    }
}

/// Reads a UTF-8 text file, naming the file and the byte offset of invalid UTF-8.
pub fn read_utf8(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid UTF-8 (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Non-empty lines of a UTF-8 text file (a trailing `\r` is dropped).
pub fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(read_utf8(path)?
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// A text or an image path, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Text(String),
    Image(PathBuf),
}

impl Item {
    /// `text:...` and `image:...` are explicit; otherwise an existing file with an image
    /// extension is an image and anything else is text.
    pub fn parse(s: &str) -> anyhow::Result<Item> {
        if let Some(t) = s.strip_prefix("text:") {
            return Ok(Item::Text(t.to_owned()));
        }
        if let Some(p) = s.strip_prefix("image:") {
            let p = PathBuf::from(p);
            if !p.is_file() {
                bail!("image file {} does not exist", p.display());
            }
            return Ok(Item::Image(p));
        }
        let p = Path::new(s);
        if has_image_extension(p) {
            if p.is_file() {
                return Ok(Item::Image(p.to_path_buf()));
            }
            bail!("{s} looks like an image path but no such file exists (prefix it with text: to embed it as text)");
        }
        Ok(Item::Text(s.to_owned()))
    }

    pub fn label(&self) -> String {
        match self {
            Item::Text(t) => t.clone(),
            Item::Image(p) => p.display().to_string(),
        }
    }
}

/// Embeds mixed items in order (texts and images batched separately), failing on any image.
pub fn embed_items(
    clip: &Clip,
    items: &[Item],
    normalized: bool,
) -> anyhow::Result<gclip::Embeddings> {
    let texts: Vec<&str> = items
        .iter()
        .filter_map(|i| {
            if let Item::Text(t) = i {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect();
    let images: Vec<PathBuf> = items
        .iter()
        .filter_map(|i| {
            if let Item::Image(p) = i {
                Some(p.clone())
            } else {
                None
            }
        })
        .collect();
    let te = clip.embed_texts(&texts, normalized)?;
    let ie = clip.embed_image_files(&images, normalized)?;
    let (mut ti, mut ii) = (te.rows(), ie.rows());
    let mut out = gclip::Embeddings::empty(clip.dim())?;
    for item in items {
        let row = match item {
            Item::Text(_) => ti.next(),
            Item::Image(_) => ii.next(),
        };
        out.push(row.context("internal: embedding count mismatch")?)?;
    }
    Ok(out)
}

/// Where command output goes: a file (created, buffered) or stdout.
pub fn output_writer(path: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}
