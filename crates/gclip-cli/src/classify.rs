//! `gclip classify`: zero-shot classification of images against text labels.

use std::path::PathBuf;

use anyhow::{bail, Context};
use gclip::{imagenet_templates, ImageOutcome, ZeroShotClassifier};

use crate::common::{self, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Comma-separated labels, e.g. "a dog,a cat".
    #[arg(long, conflicts_with = "labels_file")]
    labels: Option<String>,
    /// A UTF-8 file of labels, one per line.
    #[arg(long, value_name = "FILE")]
    labels_file: Option<PathBuf>,
    /// Prompt template with `{}` (or `{c}`) for the label (repeatable: the embeddings are
    /// ensembled).
    #[arg(long = "template", value_name = "T")]
    templates: Vec<String>,
    /// A named template set: `imagenet` (OpenAI's 80 templates).
    #[arg(long = "templates", value_name = "SET")]
    template_set: Option<String>,
    /// How many labels to report per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Softmax scale instead of the model's logit scale (Marqo's demo uses 10).
    #[arg(long)]
    scale: Option<f32>,
    /// What to do with an image that cannot be read.
    #[arg(long, value_enum, default_value = "fail")]
    on_error: crate::embed::OnError,
    /// Images to classify.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let labels: Vec<String> = match (&args.labels, &args.labels_file) {
        (Some(l), _) => l
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        (None, Some(f)) => common::read_lines(f)?,
        (None, None) => bail!("give --labels \"a,b,c\" or --labels-file FILE"),
    };
    if labels.is_empty() {
        bail!("the label list is empty");
    }
    let mut templates = args.templates.clone();
    match args.template_set.as_deref() {
        None => {}
        Some("imagenet") => templates.extend(imagenet_templates()),
        Some(other) => bail!("unknown template set {other:?}; known: imagenet"),
    }
    if args.scale.is_some_and(|s| !s.is_finite() || s <= 0.0) {
        bail!("--scale must be a positive number");
    }
    for p in &args.images {
        if !p.is_file() {
            bail!("image file {} does not exist", p.display());
        }
    }
    let clip = args.model.load()?;
    let classifier = ZeroShotClassifier::new(&clip, &labels, &templates, args.scale)
        .context("embedding the labels")?;
    let mut results = Vec::with_capacity(args.images.len());
    let mut fatal = None;
    let mut rows = vec![None; args.images.len()];
    clip.embed_image_files_with(&args.images, true, |i, outcome| match outcome {
        ImageOutcome::Embedded(v) => rows[i] = Some(v),
        ImageOutcome::Failed(e) => match args.on_error {
            crate::embed::OnError::Skip => eprintln!("skipped: {e}"),
            crate::embed::OnError::Fail => {
                fatal.get_or_insert(e);
            }
        },
    })?;
    if let Some(e) = fatal {
        return Err(e.into());
    }
    for (path, row) in args.images.iter().zip(rows) {
        let Some(row) = row else { continue };
        let emb = gclip::Embeddings::new(row.len(), row)?;
        let preds = classifier
            .classify(&emb, args.top)?
            .pop()
            .unwrap_or_default();
        results
            .push(serde_json::json!({ "image": path.display().to_string(), "predictions": preds }));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "scale": classifier.scale(),
            "results": results,
        }))?
    );
    Ok(())
}
