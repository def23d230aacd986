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

impl Embedder for Clip {
    fn model_id(&self) -> String {
        Clip::model_id(self).to_string()
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
        let decoded: Vec<Result<gclip_image::RgbImage, EmbedError>> = images
            .iter()
            .map(|i| match i {
                ImageInput::Path(p) => gclip_image::load_rgb(p, &decode).map_err(|e| {
                    EmbedError::with_source(format!("cannot read image {}", p.display()), e)
                }),
                ImageInput::Bytes(b) => gclip_image::decode_rgb(b, &decode).map_err(|e| {
                    EmbedError::with_source(format!("cannot decode image {}", i.describe()), e)
                }),
                ImageInput::Url(u) => Err(EmbedError::new(format!(
                    "image URL {u}: gclip does not download images; give a local path or the bytes"
                ))),
            })
            .collect();
        let ok: Vec<gclip_image::RgbImage> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok().cloned())
            .collect();
        let mut rows = match Clip::embed_images(self, &ok, false) {
            Ok(e) => e
                .rows()
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
                .into_iter(),
            Err(e) => {
                let msg = e.to_string();
                return decoded
                    .into_iter()
                    .map(|d| {
                        d.and(Err(EmbedError::new(format!(
                            "image embedding failed: {msg}"
                        ))))
                    })
                    .collect();
            }
        };
        decoded
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
