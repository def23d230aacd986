//! The search engine on a loaded model: [`Clip`] implements [`gclip_index::Embedder`], and the
//! whole `gclip_index` API is re-exported here, so `gclip::index::Engine` is all a user needs.
//!
//! ```no_run
//! use std::sync::Arc;
//! use gclip::index::{Engine, IndexSettings, AddDocuments, SearchRequest, default_data_dir};
//! let clip = Arc::new(gclip::Clip::load(&gclip::ModelSource::resolve(None))?);
//! let engine = Engine::open(default_data_dir())?;
//! let shop = engine.create_index("shop", IndexSettings::default(), clip)?;
//! shop.add_documents(&AddDocuments {
//!     documents: vec![serde_json::json!({"_id": "1", "title": "a red shoe"})],
//!     tensor_fields: vec!["title".into()],
//!     ..Default::default()
//! })?;
//! let hits = shop.search(&SearchRequest::text("red sneakers"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use gclip_index::*;

use crate::Clip;
use gclip_image::DecodeOptions;
use rayon::prelude::*;

impl Embedder for Clip {
    fn model_id(&self) -> String {
        content_id(self)
    }

    fn dim(&self) -> usize {
        Clip::dim(self)
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        let e = Clip::embed_texts(self, texts, false)
            .map_err(|e| EmbedError::with_source("text embedding failed", e))?;
        Embeddings::new(e.dim(), e.into_vec())
            .map_err(|e| EmbedError::with_source("the model returned a ragged batch", e))
    }

    fn embed_images(&self, images: &[ImageInput]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let decode = DecodeOptions::default();
        // Decode in the image's own colour mode and preprocess with the checkpoint's pipeline,
        // so an indexed image gets the same vector as `gclip embed` gives it.
        let pixels: Vec<Result<Vec<f32>, EmbedError>> = self.on_pool(|| {
            images
            .par_iter()
            .map(|i| {
                let img = match i {
                    ImageInput::Path(p) => gclip_image::load_image(p, &decode).map_err(|e| {
                        EmbedError::with_source(format!("cannot read image {}", p.display()), e)
                    }),
                    ImageInput::Bytes(b) => gclip_image::decode_image(b, &decode).map_err(|e| {
                        EmbedError::with_source(format!("cannot decode image {}", i.describe()), e)
                    }),
                    ImageInput::Url(u) => Err(EmbedError::new(format!(
                        "image URL {u}: gclip does not download images; give a local path or the bytes"
                    ))),
                }?;
                Ok(self.preprocessor().preprocess_image(&img))
            })
            .collect()
        });
        let ok: Vec<f32> = pixels
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .flatten()
            .copied()
            .collect();
        let mut rows = match Clip::embed_pixels(self, &ok, false) {
            Ok(e) => e
                .rows()
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
                .into_iter(),
            Err(e) => {
                let msg = e.to_string();
                return pixels
                    .into_iter()
                    .map(|d| {
                        d.and(Err(EmbedError::new(format!(
                            "image embedding failed: {msg}"
                        ))))
                    })
                    .collect();
            }
        };
        pixels
            .into_iter()
            .map(|d| {
                d.and_then(|_| {
                    rows.next()
                        .ok_or_else(|| EmbedError::new("the model returned too few vectors"))
                })
            })
            .collect()
    }

    fn count_tokens(&self, text: &str) -> usize {
        // The tokenizer pads to the context length with id 0.
        self.tokenize(text).iter().filter(|&&t| t != 0).count()
    }

    fn context_length(&self) -> usize {
        self.config().text.context_length
    }
}

/// The identity an index pins: the architecture and image pipeline plus a hash of the weights' content (each
/// weight file's size and its first and last 64 KiB), without paths or times, so a model that
/// is moved or re-extracted still opens its indexes and retrained weights do not.
fn content_id(clip: &Clip) -> String {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    const EDGE: u64 = 64 * 1024;
    let mut h = Sha256::new();
    h.update(
        serde_json::to_string(clip.config())
            .unwrap_or_default()
            .as_bytes(),
    );
    // The preprocessing is part of what a vector means.
    h.update(clip.image_pipeline().to_string().as_bytes());
    let mut read_edges = |path: &std::path::Path| -> std::io::Result<()> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        h.update(len.to_le_bytes());
        let mut buf = Vec::new();
        (&mut f).take(EDGE).read_to_end(&mut buf)?;
        if len > EDGE {
            f.seek(SeekFrom::Start(len.saturating_sub(EDGE).max(EDGE)))?;
            f.read_to_end(&mut buf)?;
        }
        h.update(&buf);
        Ok(())
    };
    let mut files = clip.weight_files().to_vec();
    files.sort();
    for path in &files {
        if read_edges(path).is_err() {
            // Unreadable now (it was just loaded): fall back to the loader's identity.
            return Clip::model_id(clip).to_string();
        }
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
