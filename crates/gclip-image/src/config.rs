//! Preprocessing configuration: open_clip `preprocess_cfg` and Hugging Face
//! `preprocessor_config.json`.

use std::path::Path;

use serde_json::Value;

use crate::error::{ImageError, Result};
use crate::resize::Filter;

/// OpenAI CLIP normalisation mean (open_clip `OPENAI_DATASET_MEAN`).
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP normalisation std (open_clip `OPENAI_DATASET_STD`).
// Digits as written in open_clip, so the constant is easy to check against the reference.
#[allow(clippy::excessive_precision)]
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How the image is fitted to the target size (open_clip `resize_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// Scale so the shorter side fits, then centre crop (open_clip default).
    #[default]
    Shortest,
    /// Scale so the longer side fits, then centre pad with `fill_color`.
    Longest,
    /// Scale each axis independently to the target size (aspect ratio not kept).
    Squash,
}

impl std::str::FromStr for ResizeMode {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "shortest" => Ok(Self::Shortest),
            "longest" => Ok(Self::Longest),
            "squash" => Ok(Self::Squash),
            other => Err(ImageError::Config(format!(
                "unknown resize_mode {other:?} (expected shortest, longest or squash)"
            ))),
        }
    }
}

/// Resampling filter used for resizing (open_clip `interpolation`).
pub type Interpolation = Filter;

/// Which reference ecosystem's preprocessing order and arithmetic to reproduce. They agree
/// on opaque RGB images up to rounding, and differ on palette, transparent, 1-bit and
/// 16-bit images, so a checkpoint should be fed the way its own ecosystem feeds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ImagePipeline {
    /// open_clip's eval transform on `Image.open(path)`: resize (Pillow, in the image's own
    /// mode: `P` and `1` nearest-neighbour, `RGBA` / `LA` premultiplied, `I;16` in 16 bits),
    /// centre crop with `round`, then `convert("RGB")` (alpha dropped, not composited),
    /// `ToTensor`, `Normalize`.
    #[default]
    OpenClip,
    /// transformers' `CLIPImageProcessor` (the torchvision backend that
    /// `AutoImageProcessor` / `CLIPProcessor` load by default in transformers 5): convert to
    /// RGB compositing transparency onto white, resize the shortest edge with torch's uint8
    /// antialiased kernel, centre crop with truncating offsets, fused rescale + normalise.
    Transformers,
}

impl std::str::FromStr for ImagePipeline {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "open_clip" | "open-clip" | "openclip" => Ok(Self::OpenClip),
            "transformers" | "hf" => Ok(Self::Transformers),
            other => Err(ImageError::Config(format!(
                "unknown image pipeline {other:?} (expected open_clip or transformers)"
            ))),
        }
    }
}

impl std::fmt::Display for ImagePipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OpenClip => "open_clip",
            Self::Transformers => "transformers",
        })
    }
}

/// Everything needed to turn an RGB image into a model input.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Output size as (height, width).
    pub image_size: (usize, usize),
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel std divided by after subtracting the mean.
    pub std: [f32; 3],
    /// How the image is fitted to `image_size`.
    pub resize_mode: ResizeMode,
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// Padding value (0..=255, all channels) for [`ResizeMode::Longest`].
    pub fill_color: u8,
    /// Whose order of operations and rounding to reproduce.
    pub pipeline: ImagePipeline,
    /// [`ImagePipeline::Transformers`] with [`ResizeMode::Shortest`]: the shortest edge the
    /// image is resized to before the crop (HF `size.shortest_edge`); `None` = the larger
    /// side of `image_size`. Ignored by open_clip, which resizes to the crop size.
    pub resize_shortest_edge: Option<usize>,
}

impl Default for PreprocessConfig {
    /// OpenAI CLIP at 224x224: shortest-side bicubic resize and centre crop.
    fn default() -> Self {
        Self {
            image_size: (224, 224),
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
            resize_mode: ResizeMode::Shortest,
            interpolation: Filter::Bicubic,
            fill_color: 0,
            pipeline: ImagePipeline::OpenClip,
            resize_shortest_edge: None,
        }
    }
}

/// Parse an int or `[h, w]` image size.
fn parse_size(v: &Value, what: &str) -> Result<(usize, usize)> {
    let bad = || {
        ImageError::Config(format!(
            "{what} must be a positive integer or [h, w], got {v}"
        ))
    };
    let one = |x: &Value| x.as_u64().filter(|&n| n > 0).map(|n| n as usize);
    match v {
        Value::Number(_) => one(v).map(|n| (n, n)).ok_or_else(bad),
        Value::Array(a) if a.len() == 1 => one(&a[0]).map(|n| (n, n)).ok_or_else(bad),
        Value::Array(a) if a.len() == 2 => {
            Ok((one(&a[0]).ok_or_else(bad)?, one(&a[1]).ok_or_else(bad)?))
        }
        _ => Err(bad()),
    }
}

/// Parse a scalar (broadcast to 3 channels) or a 3-vector of floats.
fn parse_triple(v: &Value, what: &str) -> Result<[f32; 3]> {
    let bad = || ImageError::Config(format!("{what} must be a number or 3 numbers, got {v}"));
    match v {
        Value::Number(n) => n.as_f64().map(|x| [x as f32; 3]).ok_or_else(bad),
        Value::Array(a) if a.len() == 3 => {
            let mut out = [0f32; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = x.as_f64().ok_or_else(bad)? as f32;
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

fn check_std(std: [f32; 3]) -> Result<[f32; 3]> {
    if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
        return Err(ImageError::Config(format!(
            "std must be finite and non-zero, got {std:?}"
        )));
    }
    Ok(std)
}

impl PreprocessConfig {
    /// From an open_clip `preprocess_cfg` object (keys `size`, `mean`, `std`,
    /// `interpolation`, `resize_mode`, `fill_color`; all optional); selects
    /// [`ImagePipeline::OpenClip`].
    ///
    /// `image_size` (the model's `vision_cfg.image_size`) wins over `size` in the object,
    /// as open_clip sets the preprocess size from the vision tower.
    pub fn from_open_clip(cfg: &Value, image_size: Option<(usize, usize)>) -> Result<Self> {
        let mut out = Self::default();
        if let Some(s) = image_size {
            if s.0 == 0 || s.1 == 0 {
                return Err(ImageError::Config(format!(
                    "image_size must be positive, got {s:?}"
                )));
            }
            out.image_size = s;
        } else if let Some(v) = cfg.get("size") {
            out.image_size = parse_size(v, "size")?;
        }
        if let Some(v) = cfg.get("mean").filter(|v| !v.is_null()) {
            out.mean = parse_triple(v, "mean")?;
        }
        if let Some(v) = cfg.get("std").filter(|v| !v.is_null()) {
            out.std = check_std(parse_triple(v, "std")?)?;
        }
        if let Some(v) = cfg.get("interpolation").and_then(Value::as_str) {
            out.interpolation = match v {
                "bicubic" | "random" => Filter::Bicubic, // open_clip: "random" means bicubic at eval
                "bilinear" => Filter::Bilinear,
                other => {
                    return Err(ImageError::Config(format!(
                        "unsupported interpolation {other:?} (expected bicubic or bilinear)"
                    )))
                }
            };
        }
        if let Some(v) = cfg.get("resize_mode").and_then(Value::as_str) {
            out.resize_mode = v.parse()?;
        }
        if let Some(v) = cfg.get("fill_color") {
            let n = v.as_u64().filter(|&n| n <= 255).ok_or_else(|| {
                ImageError::Config(format!("fill_color must be 0..=255, got {v}"))
            })?;
            out.fill_color = n as u8;
        }
        Ok(out)
    }

    /// From a Hugging Face `preprocessor_config.json` (`CLIPImageProcessor`); selects
    /// [`ImagePipeline::Transformers`].
    ///
    /// The output size is `crop_size`, the resize target `size.shortest_edge`; `resample`
    /// 2 selects bilinear, 3 bicubic. With `do_center_crop: false` the image is squashed
    /// to `size`.
    pub fn from_hf(cfg: &Value) -> Result<Self> {
        let mut out = Self {
            pipeline: ImagePipeline::Transformers,
            ..Self::default()
        };
        let size_of = |v: &Value, what: &str| -> Result<(usize, usize)> {
            match v {
                Value::Object(m) => {
                    if let (Some(h), Some(w)) = (m.get("height"), m.get("width")) {
                        Ok((parse_size(h, what)?.0, parse_size(w, what)?.0))
                    } else if let Some(s) = m.get("shortest_edge") {
                        parse_size(s, what)
                    } else {
                        Err(ImageError::Config(format!(
                            "{what} has neither height/width nor shortest_edge: {v}"
                        )))
                    }
                }
                other => parse_size(other, what),
            }
        };
        let crop = cfg
            .get("do_center_crop")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if crop {
            if let Some(v) = cfg.pointer("/size/shortest_edge") {
                out.resize_shortest_edge = Some(parse_size(v, "size.shortest_edge")?.0);
            }
            if let Some(v) = cfg.get("crop_size") {
                out.image_size = size_of(v, "crop_size")?;
            } else if let Some(v) = cfg.get("size") {
                out.image_size = size_of(v, "size")?;
            }
        } else {
            out.resize_mode = ResizeMode::Squash;
            if let Some(v) = cfg.get("size") {
                out.image_size = size_of(v, "size")?;
            }
        }
        if let Some(v) = cfg.get("image_mean") {
            out.mean = parse_triple(v, "image_mean")?;
        }
        if let Some(v) = cfg.get("image_std") {
            out.std = check_std(parse_triple(v, "image_std")?)?;
        }
        if let Some(r) = cfg.get("resample") {
            out.interpolation = match r.as_u64() {
                Some(2) => Filter::Bilinear,
                Some(3) => Filter::Bicubic,
                _ => {
                    return Err(ImageError::Config(format!(
                        "unsupported resample {r} (2 = bilinear, 3 = bicubic)"
                    )))
                }
            };
        }
        Ok(out)
    }

    /// Read the config from a model directory: `open_clip_config.json`
    /// (`preprocess_cfg` + `model_cfg.vision_cfg.image_size`) first, else
    /// `preprocessor_config.json`. `Ok(None)` when neither file exists.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>> {
        let read = |name: &str| -> Result<Option<(std::path::PathBuf, Value)>> {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(ImageError::Io { path, source }),
            };
            let v = serde_json::from_str(&text).map_err(|e| ImageError::ConfigFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            Ok(Some((path, v)))
        };
        let wrap = |path: &Path, e: ImageError| ImageError::ConfigFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if let Some((path, v)) = read("open_clip_config.json")? {
            let size = match v.pointer("/model_cfg/vision_cfg/image_size") {
                Some(s) => Some(
                    parse_size(s, "model_cfg.vision_cfg.image_size").map_err(|e| wrap(&path, e))?,
                ),
                None => None,
            };
            let empty = Value::Object(Default::default());
            let pp = v.get("preprocess_cfg").unwrap_or(&empty);
            return Self::from_open_clip(pp, size)
                .map(Some)
                .map_err(|e| wrap(&path, e));
        }
        if let Some((path, v)) = read("preprocessor_config.json")? {
            return Self::from_hf(&v).map(Some).map_err(|e| wrap(&path, e));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn open_clip_cfg() {
        let c = PreprocessConfig::from_open_clip(
            &json!({"mean": [0.5, 0.5, 0.5], "std": 0.5, "interpolation": "bilinear",
                    "resize_mode": "squash", "fill_color": 7}),
            Some((256, 256)),
        )
        .unwrap();
        assert_eq!(c.image_size, (256, 256));
        assert_eq!(c.mean, [0.5; 3]);
        assert_eq!(c.std, [0.5; 3]);
        assert_eq!(c.interpolation, Filter::Bilinear);
        assert_eq!(c.resize_mode, ResizeMode::Squash);
        assert_eq!(c.fill_color, 7);
        assert_eq!(c.pipeline, ImagePipeline::OpenClip);
        assert!(PreprocessConfig::from_open_clip(&json!({"resize_mode": "zoom"}), None).is_err());
        assert!(PreprocessConfig::from_open_clip(&json!({"std": [1, 0, 1]}), None).is_err());
    }

    #[test]
    fn hf_cfg() {
        let c = PreprocessConfig::from_hf(&json!({
            "crop_size": {"height": 336, "width": 336}, "do_center_crop": true,
            "image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "resample": 3,
            "size": {"shortest_edge": 336}}))
        .unwrap();
        assert_eq!(c.image_size, (336, 336));
        assert_eq!(c.mean, [0.1, 0.2, 0.3]);
        assert_eq!(c.resize_mode, ResizeMode::Shortest);
        assert_eq!(c.pipeline, ImagePipeline::Transformers);
        assert_eq!(c.resize_shortest_edge, Some(336));
        let c = PreprocessConfig::from_hf(&json!({"crop_size": 224, "resample": 2})).unwrap();
        assert_eq!(
            (c.image_size, c.interpolation),
            ((224, 224), Filter::Bilinear)
        );
    }

    #[test]
    fn pipeline_names() {
        for p in [ImagePipeline::OpenClip, ImagePipeline::Transformers] {
            assert_eq!(p.to_string().parse::<ImagePipeline>().unwrap(), p);
        }
        assert!("pillow".parse::<ImagePipeline>().is_err());
    }

    #[test]
    fn model_dir() {
        let d = std::env::temp_dir().join(format!("gclip-image-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(PreprocessConfig::from_model_dir(&d).unwrap(), None);
        std::fs::write(
            d.join("open_clip_config.json"),
            r#"{"model_cfg": {"vision_cfg": {"image_size": 384}}, "preprocess_cfg": {"resize_mode": "longest"}}"#,
        )
        .unwrap();
        let c = PreprocessConfig::from_model_dir(&d).unwrap().unwrap();
        assert_eq!(
            (c.image_size, c.resize_mode),
            ((384, 384), ResizeMode::Longest)
        );
        std::fs::write(d.join("open_clip_config.json"), "{not json").unwrap();
        let e = PreprocessConfig::from_model_dir(&d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("open_clip_config.json"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
