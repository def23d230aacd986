//! `--threads N` means N threads in all: image decoding runs on the engine's own pool.

use std::collections::HashSet;
use std::sync::Mutex;

use gclip::{Clip, ModelSource, RuntimeOptions};
use rayon::prelude::*;

fn load(threads: usize) -> Clip {
    Clip::load_with(
        &ModelSource::Default,
        &RuntimeOptions {
            threads: Some(threads),
            ..RuntimeOptions::default()
        },
    )
    .expect("embedded model")
}

#[test]
fn decoding_work_shares_the_engine_pool() {
    for threads in [1, 2, 3] {
        let clip = load(threads);
        let seen = Mutex::new(HashSet::new());
        let width = clip.on_pool(|| {
            (0..256).into_par_iter().for_each(|_| {
                let name = std::thread::current().name().unwrap_or("").to_string();
                seen.lock().unwrap().insert(name);
                std::thread::sleep(std::time::Duration::from_micros(200));
            });
            rayon::current_num_threads()
        });
        assert_eq!(width, threads, "pool width");
        let seen = seen.into_inner().unwrap();
        assert!(
            !seen.is_empty() && seen.len() <= threads,
            "{threads} threads asked, work ran on {seen:?}"
        );
        assert!(
            seen.iter().all(|n| n.starts_with("gclip-engine-")),
            "work left the engine's pool: {seen:?}"
        );
    }
}

#[test]
fn image_files_embed_the_same_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 0..5u8 {
        let img = image::RgbImage::from_fn(40 + i as u32 * 7, 30, |x, y| {
            image::Rgb([(x as u8).wrapping_mul(i + 1), y as u8 * 3, 90 + i * 20])
        });
        let p = dir.path().join(format!("{i}.png"));
        img.save(&p).unwrap();
        paths.push(p);
    }
    let one = load(1).embed_image_files(&paths, true).unwrap();
    let three = load(3).embed_image_files(&paths, true).unwrap();
    assert_eq!(one.len(), paths.len());
    for (a, b) in one.rows().zip(three.rows()) {
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "thread count changed an embedding by {d}");
    }
}
