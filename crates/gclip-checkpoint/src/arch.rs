//! Built-in open_clip architecture configs (pure ViT image tower + transformer text tower).
//!
//! The JSON files in `archs/` are copied unchanged from the open_clip package's
//! `model_configs` directory (open_clip_torch 3.3.0, MIT licence, see `archs/LICENSE-open_clip`).

use crate::config::ClipConfig;
use crate::error::{CheckpointError, Result};

/// (name, open_clip model config JSON).
const ARCHS: &[(&str, &str)] = &[
    (
        "ViT-B-16-plus-240",
        include_str!("../archs/ViT-B-16-plus-240.json"),
    ),
    ("ViT-B-16-plus", include_str!("../archs/ViT-B-16-plus.json")),
    (
        "ViT-B-16-quickgelu",
        include_str!("../archs/ViT-B-16-quickgelu.json"),
    ),
    ("ViT-B-16", include_str!("../archs/ViT-B-16.json")),
    ("ViT-B-32-256", include_str!("../archs/ViT-B-32-256.json")),
    (
        "ViT-B-32-plus-256",
        include_str!("../archs/ViT-B-32-plus-256.json"),
    ),
    (
        "ViT-B-32-quickgelu",
        include_str!("../archs/ViT-B-32-quickgelu.json"),
    ),
    ("ViT-B-32", include_str!("../archs/ViT-B-32.json")),
    (
        "ViT-H-14-378-quickgelu",
        include_str!("../archs/ViT-H-14-378-quickgelu.json"),
    ),
    ("ViT-H-14-378", include_str!("../archs/ViT-H-14-378.json")),
    (
        "ViT-H-14-quickgelu",
        include_str!("../archs/ViT-H-14-quickgelu.json"),
    ),
    ("ViT-H-14", include_str!("../archs/ViT-H-14.json")),
    ("ViT-H-16", include_str!("../archs/ViT-H-16.json")),
    ("ViT-L-14-280", include_str!("../archs/ViT-L-14-280.json")),
    (
        "ViT-L-14-336-quickgelu",
        include_str!("../archs/ViT-L-14-336-quickgelu.json"),
    ),
    ("ViT-L-14-336", include_str!("../archs/ViT-L-14-336.json")),
    (
        "ViT-L-14-quickgelu",
        include_str!("../archs/ViT-L-14-quickgelu.json"),
    ),
    ("ViT-L-14", include_str!("../archs/ViT-L-14.json")),
    ("ViT-L-16-320", include_str!("../archs/ViT-L-16-320.json")),
    ("ViT-L-16", include_str!("../archs/ViT-L-16.json")),
    ("ViT-M-16-alt", include_str!("../archs/ViT-M-16-alt.json")),
    ("ViT-M-16", include_str!("../archs/ViT-M-16.json")),
    ("ViT-M-32-alt", include_str!("../archs/ViT-M-32-alt.json")),
    ("ViT-M-32", include_str!("../archs/ViT-M-32.json")),
    ("ViT-S-16-alt", include_str!("../archs/ViT-S-16-alt.json")),
    ("ViT-S-16", include_str!("../archs/ViT-S-16.json")),
    ("ViT-S-32-alt", include_str!("../archs/ViT-S-32-alt.json")),
    ("ViT-S-32", include_str!("../archs/ViT-S-32.json")),
    (
        "ViT-bigG-14-quickgelu",
        include_str!("../archs/ViT-bigG-14-quickgelu.json"),
    ),
    ("ViT-bigG-14", include_str!("../archs/ViT-bigG-14.json")),
    ("ViT-e-14", include_str!("../archs/ViT-e-14.json")),
    ("ViT-g-14", include_str!("../archs/ViT-g-14.json")),
];

/// Names of all built-in architectures, sorted.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&str> = ARCHS.iter().map(|(n, _)| *n).collect();
    v.sort_unstable();
    v
}

/// The raw open_clip model config of a built-in architecture, if known.
pub fn json_by_name(name: &str) -> Option<serde_json::Value> {
    ARCHS
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, j)| serde_json::from_str(j).ok())
}

/// Config of a built-in architecture (e.g. `ViT-B-32`, `ViT-L-14-quickgelu`).
/// An unknown name yields [`CheckpointError::UnknownArch`] listing the known ones.
/// OpenAI-style spellings such as `ViT-B/32` are accepted too.
pub fn by_name(name: &str) -> Result<ClipConfig> {
    let normalised = name.trim().replace('/', "-");
    match json_by_name(&normalised) {
        Some(v) => ClipConfig::from_open_clip_json(&v),
        None => Err(CheckpointError::UnknownArch {
            name: name.to_string(),
            known: names().into_iter().map(String::from).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Activation;

    #[test]
    fn every_shipped_arch_parses() {
        for n in names() {
            let cfg = by_name(n).unwrap_or_else(|e| panic!("{n}: {e}"));
            let quick = n.contains("quickgelu");
            assert_eq!(cfg.vision.activation == Activation::QuickGelu, quick, "{n}");
        }
    }

    #[test]
    fn vit_b_32_sizes() {
        let c = by_name("ViT-B-32").unwrap();
        assert_eq!(
            (
                c.embed_dim,
                c.vision.width,
                c.vision.heads,
                c.vision.patch_size
            ),
            (512, 768, 12, 32)
        );
        assert_eq!(
            (
                c.text.width,
                c.text.heads,
                c.text.context_length,
                c.text.vocab_size
            ),
            (512, 8, 77, 49408)
        );
        assert_eq!(c.vision.mlp_width(), 3072);
        let g = by_name("ViT-bigG-14").unwrap();
        assert_eq!(g.vision.mlp_width(), 8192);
        assert_eq!(g.vision.heads, 16);
    }

    #[test]
    fn unknown_arch_lists_known() {
        let e = by_name("ViT-Q-99").unwrap_err().to_string();
        assert!(
            e.contains("ViT-Q-99") && e.contains("ViT-B-32") && e.contains("ViT-L-14-quickgelu"),
            "{e}"
        );
    }
}
