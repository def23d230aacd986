//! The search engine through the facade, on the embedded model: Clip is the embedder.

use gclip::index::*;
use gclip::{Clip, ModelSource};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

#[test]
fn clip_indexes_texts_and_images_and_pins_its_model() {
    let clip = Arc::new(Clip::load(&ModelSource::Default).expect("embedded model"));
    let d = tempfile::tempdir().unwrap();
    let engine = Engine::open(d.path()).unwrap();
    let settings =
        IndexSettings::from_json(&json!({"treatUrlsAndPointersAsImages": true})).unwrap();
    let ix = engine.create_index("shop", settings, clip.clone()).unwrap();
    let images =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/images/files");
    let img = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg"))
        .expect("a fixture image");
    let r = ix
        .add_documents(&AddDocuments {
            documents: vec![
                json!({"_id": "shirt", "title": "red shirt"}),
                json!({"_id": "mug", "title": "blue mug"}),
                json!({"_id": "boots", "title": "leather boots"}),
                json!({"_id": "pic", "image": img.to_str().unwrap()}),
                json!({"_id": "broken", "image": "data:image/png;base64,aGVsbG8="}),
            ],
            tensor_fields: vec!["title".into(), "image".into()],
            ..Default::default()
        })
        .unwrap();
    let status: Vec<(String, u16)> = r.items.iter().map(|i| (i.id.clone(), i.status)).collect();
    assert_eq!(status.iter().filter(|s| s.1 == 200).count(), 4, "{r:?}");
    assert_eq!(status.iter().find(|s| s.0 == "broken").unwrap().1, 400);
    let hits = ix.search(&SearchRequest::text("blue mug")).unwrap();
    assert_eq!(hits.hits[0]["_id"], json!("mug"));
    assert!((hits.hits[0]["_score"].as_f64().unwrap() - 1.0).abs() < 1e-4);
    // The stored vector equals the model's normalised embedding.
    let doc = ix.get_document("boots", true).unwrap();
    let v: Vec<f32> =
        serde_json::from_value(doc["_tensor_facets"][0]["_embedding"].clone()).unwrap();
    let want = clip.embed_texts(&["leather boots"], true).unwrap();
    assert!(v
        .iter()
        .zip(want.row(0).unwrap())
        .all(|(a, b)| (a - b).abs() < 1e-5));
    drop(ix);
    drop(engine);
    struct Other;
    impl Embedder for Other {
        fn model_id(&self) -> String {
            "other".into()
        }
        fn dim(&self) -> usize {
            64
        }
        fn embed_texts(&self, _: &[&str]) -> Result<Embeddings, EmbedError> {
            Err(EmbedError::new("unused"))
        }
        fn embed_images(&self, _: &[ImageInput]) -> Vec<Result<Vec<f32>, EmbedError>> {
            Vec::new()
        }
    }
    let engine = Engine::open(d.path()).unwrap();
    assert!(matches!(
        engine.index("shop", Some(Arc::new(Other))),
        Err(Error::ModelMismatch { .. })
    ));
}

/// The pin is the weights' content: a copy of the model elsewhere opens the same indexes,
/// changed weights do not, and an indexed image carries the vector `embed_image_files` gives.
#[test]
fn the_pin_follows_the_weights_not_the_path() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference/models/openclip_gelu");
    assert!(fixture.is_dir(), "fixture {} is missing", fixture.display());
    let copies = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let dst = copies.path().join(name);
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(&fixture).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
        dst
    };
    let load = |dir: &Path| Clip::load(&ModelSource::resolve(Some(dir))).unwrap();
    let a = load(&fixture);
    let b = load(&copy("moved"));
    let changed = copy("retrained");
    let st = changed.join("open_clip_model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    // The low mantissa byte of the last f32: one weight changes, slightly.
    let low = bytes.len() - 4;
    bytes[low] ^= 0x01;
    std::fs::write(&st, bytes).unwrap();
    let c = load(&changed);
    let (ia, ib, ic) = (
        Embedder::model_id(&a),
        Embedder::model_id(&b),
        Embedder::model_id(&c),
    );
    assert_eq!(ia, ib, "a moved copy must keep the identity");
    assert_ne!(ia, ic, "changed weights must change the identity");

    let img = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference/modes/files/rgba.png");
    assert!(img.is_file(), "fixture {} is missing", img.display());
    let want = a
        .embed_image_files(std::slice::from_ref(&img), true)
        .unwrap();
    let got = Embedder::embed_images(&a, &[ImageInput::Path(img)]);
    let mut got = got.into_iter().next().unwrap().unwrap();
    gclip::vectors::normalize(&mut got);
    let d = got
        .iter()
        .zip(want.row(0).unwrap())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        d < 1e-6,
        "indexed image vector differs from embed_image_files by {d}"
    );
}
