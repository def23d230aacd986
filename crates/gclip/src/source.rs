//! Where a model comes from: an explicit path, the `GCLIP_MODEL` environment variable, or the
//! default model embedded in the binary.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming the model used when no `--model` is given.
pub const MODEL_ENV: &str = "GCLIP_MODEL";

/// A model to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A checkpoint directory or file; `arch` names the architecture of a bare weight file.
    Path { path: PathBuf, arch: Option<String> },
    /// The small model trained by gclip on its procedural shop, embedded in the binary.
    Default,
}

impl ModelSource {
    /// `explicit` if given, else `$GCLIP_MODEL` if set and non-empty, else the embedded default.
    pub fn resolve(explicit: Option<&Path>) -> Self {
        Self::resolve_with_arch(explicit, None)
    }

    /// As [`ModelSource::resolve`], with an architecture name for bare weight files.
    pub fn resolve_with_arch(explicit: Option<&Path>, arch: Option<&str>) -> Self {
        let path = explicit.map(Path::to_path_buf).or_else(|| {
            std::env::var_os(MODEL_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        match path {
            Some(path) => ModelSource::Path {
                path,
                arch: arch.map(str::to_owned),
            },
            None => ModelSource::Default,
        }
    }

    /// A short human-readable name.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Path { path, .. } => path.display().to_string(),
            ModelSource::Default => "gclip default model (embedded)".to_owned(),
        }
    }
}

/// The embedded default model: open_clip layout config and safetensors weights.
pub(crate) struct EmbeddedModel {
    pub config: &'static [u8],
    pub weights: &'static [u8],
}

#[cfg(feature = "default-model")]
pub(crate) const EMBEDDED: Option<EmbeddedModel> = crate::default_model::EMBEDDED;
/// Built without the `default-model` feature: nothing embedded.
#[cfg(not(feature = "default-model"))]
pub(crate) const EMBEDDED: Option<EmbeddedModel> = None;

/// Writes the embedded model into a cache directory (once per content) and returns its path,
/// so it loads (memory-mapped) like any other open_clip directory.
pub(crate) fn materialize_default() -> Result<PathBuf> {
    let Some(m) = EMBEDDED else {
        return Err(Error::NoDefaultModel(
            "this build of gclip was compiled without the `default-model` feature; \
             pass --model PATH or set GCLIP_MODEL"
                .into(),
        ));
    };
    let tag = fnv1a(m.weights) ^ fnv1a(m.config).rotate_left(17);
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("gclip").join(format!("default-{tag:016x}"));
    let weights = dir.join("open_clip_model.safetensors");
    if weights.is_file()
        && std::fs::metadata(&weights).map(|m2| m2.len()).ok() == Some(m.weights.len() as u64)
    {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    // Write to temporary names then rename, so a concurrent or interrupted run never leaves a
    // half-written model behind.
    for (name, bytes) in [
        ("open_clip_config.json", m.config),
        ("open_clip_model.safetensors", m.weights),
    ] {
        let tmp = dir.join(format!("{name}.tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        let dst = dir.join(name);
        std::fs::rename(&tmp, &dst).map_err(|source| Error::Io { path: dst, source })?;
    }
    Ok(dir)
}

#[cfg(all(test, not(feature = "default-model")))]
mod tests {
    use super::*;

    /// Without the feature, resolving "no model" fails with a message naming the way out.
    #[test]
    fn without_the_feature_no_model_is_a_clear_error() {
        let e = crate::Clip::load(&ModelSource::Default)
            .err()
            .expect("must fail");
        assert!(matches!(e, Error::NoDefaultModel(_)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("default-model") && msg.contains("GCLIP_MODEL"),
            "{msg}"
        );
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}
