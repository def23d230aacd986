//! The embedded default model (see the README section "The embedded default model").
//!
//! A small GCL model trained from scratch by `gclip experiment gcl-vs-clip` on the
//! procedural shop (ViT 64 px / patch 16 / 4 layers, 3-layer text tower over the full CLIP
//! BPE vocabulary, 64-d embeddings). The weights are stored as F16 (the loader widens them to
//! F32); `model/README.md` gives the command that reproduces them.

use crate::source::EmbeddedModel;

pub(crate) const EMBEDDED: Option<EmbeddedModel> = Some(EmbeddedModel {
    config: include_bytes!("../model/open_clip_config.json"),
    weights: include_bytes!("../model/open_clip_model.safetensors"),
});

#[cfg(test)]
mod tests {
    use crate::{cosine_matrix, Clip, ModelSource};

    /// The embedded model loads through the default path and is not degenerate: different
    /// texts get clearly different embeddings (a collapsed from-scratch model maps every
    /// input to nearly the same vector, cosine > 0.99).
    #[test]
    fn embedded_model_loads_and_separates_texts() {
        let clip = Clip::load(&ModelSource::Default).expect("embedded model loads");
        assert_eq!(clip.dim(), 64);
        let t = clip
            .embed_texts(&["red shirt", "blue mug", "leather boots"], true)
            .expect("texts embed");
        let sims = cosine_matrix(&t, &t).unwrap();
        for (i, row) in sims.iter().enumerate() {
            for (j, &c) in row.iter().enumerate() {
                assert!(i == j || c < 0.9, "texts {i} and {j}: cosine {c}");
            }
        }
    }
}
