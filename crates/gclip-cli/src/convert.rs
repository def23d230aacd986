//! `gclip convert`: rewrite a checkpoint in the open_clip or Hugging Face layout.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gclip::model::{load_weights, Layout, LoadOptions};

/// Target layout of `gclip convert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `open_clip_config.json` + `open_clip_model.safetensors`.
    OpenClip,
    /// Hugging Face `CLIPModel`: `config.json` + `model.safetensors`.
    Hf,
}

/// Arguments of `gclip convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint: HF CLIPModel dir, open_clip dir, or a bare .safetensors/.bin/.pt file
    /// (then with --arch).
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// open_clip architecture name for a bare weight file (e.g. ViT-B-32).
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// Layout to write.
    #[arg(long, value_enum)]
    pub to: Target,
    /// Output directory (created; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// Element type of the written tensors (f16 / bf16 halve the file; loaders widen them).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Write into a non-empty output directory, replacing files of the same name.
    #[arg(long)]
    pub force: bool,
}

/// Element type written by `gclip convert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

/// Tokenizer files carried over from a model directory so the output stays self-contained.
const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
];

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.force && args.output.exists() && !is_empty_dir(&args.output)? {
        bail!(
            "output directory {} is not empty (use --force to write into it)",
            args.output.display()
        );
    }
    let opts = LoadOptions {
        arch: args.arch.clone(),
        config: None,
    };
    let lw = load_weights(&args.model, &opts)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let layout = match args.to {
        Target::OpenClip => Layout::OpenClip,
        Target::Hf => Layout::Hf,
    };
    let dtype = match args.dtype {
        Dtype::F32 => gclip::model::DType::F32,
        Dtype::F16 => gclip::model::DType::F16,
        Dtype::Bf16 => gclip::model::DType::BF16,
    };
    gclip::model::save_with(
        &lw.weights,
        &lw.config,
        &args.output,
        &gclip::model::SaveOptions::new(layout).with_dtype(dtype),
        lw.preprocess.as_ref(),
    )
    .with_context(|| format!("writing {}", args.output.display()))?;
    let mut copied = Vec::new();
    if let Some(dir) = &lw.dir {
        for f in TOKENIZER_FILES {
            let src = dir.join(f);
            if src.is_file() {
                let dst = args.output.join(f);
                std::fs::copy(&src, &dst)
                    .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
                copied.push(f);
            }
        }
    }
    println!(
        "converted {} ({:?} layout, {} tensors, {} parameters) -> {} ({:?} layout){}",
        args.model.display(),
        lw.layout,
        lw.weights.len(),
        lw.weights.num_params(),
        args.output.display(),
        layout,
        if copied.is_empty() {
            String::new()
        } else {
            format!("; copied {}", copied.join(", "))
        }
    );
    Ok(())
}

fn is_empty_dir(p: &Path) -> anyhow::Result<bool> {
    if !p.is_dir() {
        bail!("output {} exists and is not a directory", p.display());
    }
    Ok(std::fs::read_dir(p)
        .with_context(|| format!("reading {}", p.display()))?
        .next()
        .is_none())
}
