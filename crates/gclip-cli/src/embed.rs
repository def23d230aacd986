//! `gclip embed`: embeddings of texts and images as JSONL, NPY or safetensors.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gclip::{Embeddings, ImageOutcome};

use crate::common::{self, ModelArgs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Npy,
    Safetensors,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Report the unreadable image on stderr and go on.
    Skip,
    /// Stop with an error.
    Fail,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// A text to embed (repeatable).
    #[arg(long = "text", value_name = "T")]
    texts: Vec<String>,
    /// An image file to embed (repeatable).
    #[arg(long = "image", value_name = "FILE")]
    images: Vec<PathBuf>,
    /// A UTF-8 file of texts, one per line.
    #[arg(long = "texts", value_name = "FILE")]
    texts_file: Option<PathBuf>,
    /// A directory (walked recursively) or a file listing image paths, one per line.
    #[arg(long = "images", value_name = "DIR_OR_LIST")]
    images_from: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Output file (stdout for JSONL when omitted).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Items per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Keep the raw projections instead of unit-length embeddings.
    #[arg(long)]
    no_normalize: bool,
    /// What to do with an image that cannot be read.
    #[arg(long, value_enum, default_value = "skip")]
    on_error: OnError,
}

/// One input, in output order.
#[derive(Debug, Clone)]
enum Input {
    Text(String),
    Image(PathBuf),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let inputs = collect_inputs(&args)?;
    if inputs.is_empty() {
        bail!("nothing to embed: give --text, --image, --texts, --images or JSONL on stdin");
    }
    if args.format != Format::Jsonl && args.output.is_none() {
        bail!(
            "--format {:?} writes binary data: give --output FILE",
            args.format
        );
    }
    let mut clip = args.model.load()?;
    clip.set_batch_size(args.batch);
    let normalized = !args.no_normalize;

    let texts: Vec<&str> = inputs
        .iter()
        .filter_map(|i| {
            if let Input::Text(t) = i {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect();
    let images: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|i| {
            if let Input::Image(p) = i {
                Some(p.clone())
            } else {
                None
            }
        })
        .collect();

    let pb = gclip::progress::bar(inputs.len() as u64, "embedding");
    let text_emb = clip.embed_texts(&texts, normalized)?;
    pb.inc(texts.len() as u64);
    let mut image_rows: Vec<Option<Vec<f32>>> = vec![None; images.len()];
    let mut failures = 0usize;
    let mut fatal = None;
    clip.embed_image_files_with(&images, normalized, |i, outcome| {
        pb.inc(1);
        match outcome {
            ImageOutcome::Embedded(v) => image_rows[i] = Some(v),
            ImageOutcome::Failed(e) => {
                failures += 1;
                match args.on_error {
                    OnError::Skip => pb.suspend(|| eprintln!("skipped: {e}")),
                    OnError::Fail => {
                        fatal.get_or_insert(e);
                    }
                }
            }
        }
    })?;
    pb.finish_and_clear();
    if let Some(e) = fatal {
        return Err(
            anyhow::Error::new(e).context("an image could not be embedded (--on-error fail)")
        );
    }

    // Assemble rows in input order, leaving out skipped images.
    let mut kept: Vec<(&Input, &[f32])> = Vec::with_capacity(inputs.len());
    let (mut ti, mut ii) = (text_emb.rows(), image_rows.iter());
    for input in &inputs {
        match input {
            Input::Text(_) => {
                kept.push((input, ti.next().context("internal: text count mismatch")?))
            }
            Input::Image(_) => {
                if let Some(Some(v)) = ii.next() {
                    kept.push((input, v.as_slice()));
                }
            }
        }
    }
    // Skipping is for the odd bad file in a batch; a run that embedded nothing failed.
    if kept.is_empty() && !inputs.is_empty() {
        anyhow::bail!(
            "none of the {} inputs could be embedded (each was skipped, see above)",
            inputs.len()
        );
    }
    write_output(&args, &kept, clip.dim())?;
    if failures > 0 {
        eprintln!(
            "{} of {} images could not be read and were skipped",
            failures,
            images.len()
        );
    }
    tracing::info!(
        texts = texts.len(),
        images = images.len() - failures,
        skipped = failures,
        "embedded"
    );
    Ok(())
}

fn collect_inputs(args: &Args) -> anyhow::Result<Vec<Input>> {
    let mut inputs: Vec<Input> = args.texts.iter().cloned().map(Input::Text).collect();
    if let Some(f) = &args.texts_file {
        inputs.extend(common::read_lines(f)?.into_iter().map(Input::Text));
    }
    for p in &args.images {
        inputs.push(Input::Image(p.clone()));
    }
    if let Some(src) = &args.images_from {
        let paths = if src.is_dir() {
            let found = gclip::io::walk_images(src)?;
            if found.is_empty() {
                bail!(
                    "no image files ({}) under {}",
                    gclip::io::IMAGE_EXTENSIONS.join(", "),
                    src.display()
                );
            }
            found
        } else if src.is_file() {
            let base = src.parent().unwrap_or(Path::new("."));
            common::read_lines(src)?
                .into_iter()
                .map(|l| base.join(l.trim()))
                .collect()
        } else {
            bail!("{} is neither a directory nor a list file", src.display());
        };
        inputs.extend(paths.into_iter().map(Input::Image));
    }
    let explicit = args.texts_file.is_some() || args.images_from.is_some() || !inputs.is_empty();
    if !explicit && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        inputs.extend(read_stdin_jsonl()?);
    }
    Ok(inputs)
}

/// Stdin JSONL: each line an object with `text` or `image`.
fn read_stdin_jsonl() -> anyhow::Result<Vec<Input>> {
    let mut out = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.with_context(|| format!("reading stdin line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {}: malformed JSON", n + 1))?;
        match (
            v.get("text").and_then(|t| t.as_str()),
            v.get("image").and_then(|t| t.as_str()),
        ) {
            (Some(t), None) => out.push(Input::Text(t.to_owned())),
            (None, Some(p)) => out.push(Input::Image(PathBuf::from(p))),
            _ => bail!(
                "stdin line {}: expected an object with a string \"text\" or \"image\"",
                n + 1
            ),
        }
    }
    Ok(out)
}

fn write_output(args: &Args, rows: &[(&Input, &[f32])], dim: usize) -> anyhow::Result<()> {
    match args.format {
        Format::Jsonl => {
            let mut w = common::output_writer(args.output.as_deref())?;
            for (input, emb) in rows {
                let (kind, input) = match input {
                    Input::Text(t) => ("text", serde_json::Value::from(t.as_str())),
                    Input::Image(p) => ("image", serde_json::Value::from(p.display().to_string())),
                };
                let row = serde_json::json!({ "kind": kind, "input": input, "embedding": emb });
                serde_json::to_writer(&mut w, &row)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        Format::Npy => {
            let path = args.output.as_deref().context("--output is required")?;
            let data: Vec<f32> = rows.iter().flat_map(|(_, e)| e.iter().copied()).collect();
            gclip::io::write_npy_f32(path, &[rows.len(), dim], &data)?;
        }
        Format::Safetensors => {
            let path = args.output.as_deref().context("--output is required")?;
            let data: Vec<f32> = rows.iter().flat_map(|(_, e)| e.iter().copied()).collect();
            let emb = Embeddings::new(dim, data)?;
            let inputs: Vec<serde_json::Value> = rows
                .iter()
                .map(|(i, _)| match i {
                    Input::Text(t) => serde_json::json!({"kind": "text", "input": t}),
                    Input::Image(p) => {
                        serde_json::json!({"kind": "image", "input": p.display().to_string()})
                    }
                })
                .collect();
            let meta = std::collections::HashMap::from([(
                "inputs".to_owned(),
                serde_json::to_string(&inputs)?,
            )]);
            gclip::io::write_safetensors_embeddings(path, &emb, meta)?;
        }
    }
    Ok(())
}
