//! Zero-shot classification: label prompts scored against images, softmax at a logit scale.

use gclip_vectors::{cosine_matrix, softmax_rows, Embeddings};
use serde::Serialize;

use crate::clip::Clip;
use crate::error::{Error, Result};

pub use gclip_eval::zeroshot::{fill_template, imagenet_templates};

/// One label's score for one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    /// Softmax probability over all labels.
    pub probability: f32,
    /// Cosine similarity between the image and the label's (ensembled) text embedding.
    pub cosine: f32,
}

/// Labels embedded once (template ensemble), ready to score any number of images.
pub struct ZeroShotClassifier {
    labels: Vec<String>,
    label_embeddings: Embeddings,
    scale: f32,
}

impl ZeroShotClassifier {
    /// Embeds every `template` filled with every label (`{}` or `{c}` stands for the label;
    /// no template = the bare label); a label's embedding is the mean of its normalised
    /// prompt embeddings, renormalised: OpenAI's ensemble, the one `gclip eval zeroshot` uses
    /// ([`gclip_eval::zeroshot::build_classifier`]). `scale` overrides the model's logit
    /// scale for the softmax.
    pub fn new(
        clip: &Clip,
        labels: &[String],
        templates: &[String],
        scale: Option<f32>,
    ) -> Result<Self> {
        if labels.is_empty() {
            return Err(Error::Invalid("the label list is empty".into()));
        }
        if let Some(l) = labels.iter().find(|l| l.trim().is_empty()) {
            return Err(Error::Invalid(format!(
                "empty label {l:?} in the label list"
            )));
        }
        let mut encoder = clip;
        let label_embeddings =
            gclip_eval::zeroshot::build_classifier(&mut encoder, labels, templates)?;
        let scale = match scale {
            Some(s) => s,
            None => clip.logit_scale()?,
        };
        Ok(Self {
            labels: labels.to_vec(),
            label_embeddings,
            scale,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The softmax scale in use.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Per image, all labels sorted by probability (highest first), truncated to `top`.
    /// Errors when the images' dimension is not the model's.
    pub fn classify(&self, images: &Embeddings, top: usize) -> Result<Vec<Vec<Prediction>>> {
        let cos = cosine_matrix(images, &self.label_embeddings)?;
        let probs = softmax_rows(&cos, self.scale);
        Ok(cos
            .iter()
            .zip(probs)
            .map(|(c, p)| {
                let mut preds: Vec<Prediction> = self
                    .labels
                    .iter()
                    .zip(c.iter().zip(p))
                    .map(|(label, (&cosine, probability))| Prediction {
                        label: label.clone(),
                        probability,
                        cosine,
                    })
                    .collect();
                preds.sort_by(|a, b| b.probability.total_cmp(&a.probability));
                preds.truncate(top.max(1));
                preds
            })
            .collect())
    }
}
