//! Zero-shot classification: label prompts scored against images, softmax at a logit scale.

use serde::Serialize;

use crate::clip::Clip;
use crate::embeddings::{cosine_matrix, softmax_rows, Embeddings};
use crate::error::{Error, Result};

const IMAGENET_TEMPLATES: &str = include_str!("../data/imagenet_templates.txt");

/// The 80 prompt templates OpenAI used for zero-shot ImageNet (`{}` = class name).
pub fn imagenet_templates() -> Vec<String> {
    IMAGENET_TEMPLATES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

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
    /// Embeds every `template` (containing `{}`) filled with every label; a label's embedding is
    /// the mean of its normalised prompt embeddings, renormalised (OpenAI's ensemble).
    /// `scale` overrides the model's logit scale for the softmax.
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
        let templates: Vec<String> = if templates.is_empty() {
            vec!["{}".to_owned()]
        } else {
            templates.to_vec()
        };
        if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(Error::Invalid(format!(
                "template {t:?} has no {{}} placeholder for the label"
            )));
        }
        let prompts: Vec<String> = labels
            .iter()
            .flat_map(|l| templates.iter().map(move |t| t.replace("{}", l)))
            .collect();
        let prompt_emb = clip.embed_texts(&prompts, true)?;
        let dim = prompt_emb.dim();
        let mut label_embeddings = Embeddings::empty(dim);
        for rows in prompt_emb.as_slice().chunks(dim * templates.len()) {
            let mut mean = vec![0f32; dim];
            for r in rows.chunks_exact(dim) {
                mean.iter_mut()
                    .zip(r)
                    .for_each(|(m, x)| *m += x / templates.len() as f32);
            }
            label_embeddings.push(&mean);
        }
        label_embeddings.normalize();
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
    pub fn classify(&self, images: &Embeddings, top: usize) -> Vec<Vec<Prediction>> {
        let cos = cosine_matrix(images, &self.label_embeddings);
        let probs = softmax_rows(&cos, self.scale);
        cos.iter()
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
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ships_the_80_imagenet_templates() {
        let t = imagenet_templates();
        assert_eq!(t.len(), 80);
        assert!(t.iter().all(|t| t.contains("{}")));
        assert!(t.contains(&"a photo of a {}.".to_owned()));
    }
}
