//! Zero-shot classification (open_clip's protocol): one text classifier per class from
//! prompt templates, images assigned to the most similar class.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use gclip_vectors::{Embeddings, FieldEncoder};

use crate::data::looks_like_image_path;
use crate::encoder::check_batch;
use crate::error::{io_err, EvalError, Result};
use crate::search::dot;

const IMAGENET_TEMPLATES: &str = include_str!("../data/imagenet_templates.txt");

/// The 80 prompt templates OpenAI used for zero-shot ImageNet (`{}` = class name).
pub fn imagenet_templates() -> Vec<String> {
    IMAGENET_TEMPLATES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Fills a template: `{}` (OpenAI's and open_clip's spelling) or `{c}` (clip_benchmark's)
/// is replaced by the class name; a template with neither is an error.
pub fn fill_template(template: &str, class: &str) -> Result<String> {
    if template.contains("{}") {
        Ok(template.replace("{}", class))
    } else if template.contains("{c}") {
        Ok(template.replace("{c}", class))
    } else {
        Err(EvalError::Config(format!(
            "template {template:?} has no {{}} placeholder for the class name"
        )))
    }
}

/// Class embeddings, the template ensemble of OpenAI and open_clip
/// (`build_zero_shot_classifier`): for each class every filled template is embedded and
/// normalised, the mean is taken and normalised again. One row per class, unit norm.
///
/// An empty `templates` means the bare class name (`{}`). Errors on an empty class list,
/// an empty class name or a template without a placeholder (see [`fill_template`]).
pub fn build_classifier(
    enc: &mut dyn FieldEncoder,
    class_names: &[String],
    templates: &[String],
) -> Result<Embeddings> {
    if class_names.is_empty() {
        return Err(EvalError::Config("the class list is empty".into()));
    }
    if let Some(c) = class_names.iter().find(|c| c.trim().is_empty()) {
        return Err(EvalError::Config(format!(
            "empty class name {c:?} in the class list"
        )));
    }
    let bare = ["{}".to_owned()];
    let templates = if templates.is_empty() {
        &bare[..]
    } else {
        templates
    };
    // Check every template before embedding anything.
    for t in templates {
        fill_template(t, "x")?;
    }
    let mut classifier: Option<Embeddings> = None;
    for c in class_names {
        let texts = templates
            .iter()
            .map(|t| fill_template(t, c))
            .collect::<Result<Vec<_>>>()?;
        let mut embs = enc.encode_texts(&texts).map_err(EvalError::Encoder)?;
        check_batch(texts.len(), &embs)?;
        embs.normalize();
        let mut mean = vec![0.0f32; embs.dim()];
        for e in embs.rows() {
            mean.iter_mut().zip(e).for_each(|(m, x)| *m += x);
        }
        mean.iter_mut().for_each(|m| *m /= texts.len() as f32);
        gclip_vectors::normalize(&mut mean);
        match &mut classifier {
            Some(k) => k.push(&mean)?,
            None => classifier = Some(Embeddings::new(mean.len(), mean)?),
        }
    }
    classifier.ok_or_else(|| EvalError::Config("the class list is empty".into()))
}

/// Embeds images `batch` at a time and stacks the normalised vectors.
pub(crate) fn embed_images(
    enc: &mut dyn FieldEncoder,
    paths: &[PathBuf],
    batch: usize,
) -> Result<Embeddings> {
    let mut out: Option<Embeddings> = None;
    let pb = gclip_progress::bar(paths.len() as u64, "embedding images");
    for chunk in paths.chunks(batch.max(1)) {
        let e = enc.encode_images(chunk).map_err(EvalError::Encoder)?;
        check_batch(chunk.len(), &e)?;
        match &mut out {
            Some(o) => o.extend(&e)?,
            None => out = Some(e),
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let mut m = match out {
        Some(o) => o,
        None => Embeddings::empty(1)?,
    };
    m.normalize();
    Ok(m)
}

/// Per-class outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ClassResult {
    /// Class name.
    pub class: String,
    /// Test images of the class.
    pub count: usize,
    /// Fraction of them classified correctly at top-1.
    pub recall: f64,
}

/// Zero-shot accuracy figures.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroShotReport {
    /// Model id of the encoder.
    pub model: String,
    /// Images evaluated.
    pub num_images: usize,
    /// Classes.
    pub num_classes: usize,
    /// Templates per class.
    pub num_templates: usize,
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy (top-`num_classes` when there are fewer than 5 classes).
    pub top5: f64,
    /// Mean over classes with images of the per-class top-1 recall.
    pub mean_per_class_recall: f64,
    /// Per-class recall.
    pub per_class: Vec<ClassResult>,
}

/// Rank (0 = best) of class `label` for one image; ties favour the lower class index,
/// like a stable descending sort.
fn rank_of(scores: &[f32], label: usize) -> usize {
    let s = scores[label];
    scores
        .iter()
        .enumerate()
        .filter(|&(j, &x)| x > s || (x == s && j < label))
        .count()
}

/// Classifies every `(image, label)` against `class_names` with the filled templates.
pub fn evaluate_zero_shot(
    enc: &mut dyn FieldEncoder,
    class_names: &[String],
    templates: &[String],
    images: &[(PathBuf, usize)],
    batch: usize,
) -> Result<ZeroShotReport> {
    if class_names.is_empty() || images.is_empty() {
        return Err(EvalError::Config(
            "zero-shot needs at least one class and one image".into(),
        ));
    }
    if let Some((p, l)) = images.iter().find(|(_, l)| *l >= class_names.len()) {
        return Err(EvalError::Config(format!(
            "image {} has label {l} but there are {} classes",
            p.display(),
            class_names.len()
        )));
    }
    let classifier = build_classifier(enc, class_names, templates)?;
    let paths: Vec<PathBuf> = images.iter().map(|(p, _)| p.clone()).collect();
    let img = embed_images(enc, &paths, batch)?;
    if img.dim() != classifier.dim() {
        return Err(EvalError::EncoderOutput(format!(
            "image embeddings have {} dimensions, text {}",
            img.dim(),
            classifier.dim()
        )));
    }
    let img_rows: Vec<&[f32]> = img.rows().collect();
    let ranks: Vec<usize> = img_rows
        .par_iter()
        .zip(images)
        .map(|(row, (_, label))| {
            let scores: Vec<f32> = classifier.rows().map(|c| dot(row, c)).collect();
            rank_of(&scores, *label)
        })
        .collect();
    let n = images.len() as f64;
    let top1 = ranks.iter().filter(|&&r| r < 1).count() as f64 / n;
    let top5 = ranks.iter().filter(|&&r| r < 5).count() as f64 / n;
    let mut count = vec![0usize; class_names.len()];
    let mut correct = vec![0usize; class_names.len()];
    for ((_, l), r) in images.iter().zip(&ranks) {
        count[*l] += 1;
        correct[*l] += usize::from(*r == 0);
    }
    let per_class: Vec<ClassResult> = class_names
        .iter()
        .enumerate()
        .map(|(c, name)| ClassResult {
            class: name.clone(),
            count: count[c],
            recall: if count[c] > 0 {
                correct[c] as f64 / count[c] as f64
            } else {
                0.0
            },
        })
        .collect();
    let with_images: Vec<&ClassResult> = per_class.iter().filter(|c| c.count > 0).collect();
    let mean_per_class_recall =
        with_images.iter().map(|c| c.recall).sum::<f64>() / with_images.len() as f64;
    Ok(ZeroShotReport {
        model: enc.model_id(),
        num_images: images.len(),
        num_classes: class_names.len(),
        num_templates: templates.len().max(1),
        top1,
        top5,
        mean_per_class_recall,
        per_class,
    })
}

/// A folder-per-class image set.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolder {
    /// Class folder names, sorted.
    pub classes: Vec<String>,
    /// (image path, index into `classes`).
    pub images: Vec<(PathBuf, usize)>,
}

/// Reads a folder-per-class dataset: every sub-folder of `dir` (sorted by name) is a
/// class, every image file inside it (recursively, sorted) an example.
pub fn image_folder(dir: &Path) -> Result<ImageFolder> {
    let mut classes: Vec<(String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let p = e.path();
        if p.is_dir() {
            classes.push((e.file_name().to_string_lossy().into_owned(), p));
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(EvalError::Data {
            path: dir.to_owned(),
            msg: "no class sub-folders".into(),
        });
    }
    let mut images = Vec::new();
    for (i, (_, p)) in classes.iter().enumerate() {
        let mut files = Vec::new();
        collect_images(p, &mut files)?;
        files.sort();
        images.extend(files.into_iter().map(|f| (f, i)));
    }
    Ok(ImageFolder {
        classes: classes.into_iter().map(|(n, _)| n).collect(),
        images,
    })
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let p = e.map_err(io_err(dir))?.path();
        if p.is_dir() {
            collect_images(&p, out)?;
        } else if p.to_str().is_some_and(looks_like_image_path) {
            out.push(p);
        }
    }
    Ok(())
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

    #[test]
    fn both_placeholder_spellings_fill_and_none_is_an_error() {
        assert_eq!(fill_template("a {} photo", "cat").unwrap(), "a cat photo");
        assert_eq!(fill_template("a {c} photo", "cat").unwrap(), "a cat photo");
        let e = fill_template("a photo", "cat").unwrap_err();
        assert!(
            matches!(e, EvalError::Config(ref m) if m.contains("placeholder")),
            "{e}"
        );
    }
}
