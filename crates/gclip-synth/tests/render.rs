//! Visual sanity checks of the renderer: categories have different
//! silhouettes, and a product's colour can be read back from its pixels.

use gclip_synth::vocab::{CATEGORIES, COLOURS, PLAIN};
use gclip_synth::{render_attributes_with_mask, silhouette_mask, Attributes};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn iou(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    let (mut inter, mut union) = (0u32, 0u32);
    for (p, q) in a.pixels().zip(b.pixels()) {
        let (x, y) = (p.0[0] >= 128, q.0[0] >= 128);
        inter += (x && y) as u32;
        union += (x || y) as u32;
    }
    inter as f64 / union.max(1) as f64
}

#[test]
fn categories_have_distinct_silhouettes() {
    let masks: Vec<_> = (0..CATEGORIES.len())
        .map(|c| silhouette_mask(c, 64).unwrap())
        .collect();
    let mut worst = (0.0, "", "");
    for i in 0..masks.len() {
        // A silhouette covers a reasonable part of the frame.
        let area = masks[i].pixels().filter(|p| p.0[0] >= 128).count() as f64 / (64.0 * 64.0);
        assert!(
            (0.08..0.7).contains(&area),
            "{} covers {area}",
            CATEGORIES[i].name
        );
        for j in 0..i {
            let v = iou(&masks[i], &masks[j]);
            if v > worst.0 {
                worst = (v, CATEGORIES[i].name, CATEGORIES[j].name);
            }
        }
    }
    assert!(
        worst.0 < 0.7,
        "{} and {} overlap with IoU {:.3}",
        worst.1,
        worst.2,
        worst.0
    );
}

#[test]
fn plain_product_colour_is_readable_from_pixels() {
    // Mean body colour of a plain product, over random poses, backgrounds and
    // noise, is nearest to its own palette colour.
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut wrong = Vec::new();
    for (colour, cspec) in COLOURS.iter().enumerate() {
        for (category, kspec) in CATEGORIES.iter().enumerate() {
            let attrs = Attributes {
                pattern: PLAIN,
                ..Attributes::random(&mut rng, Some(category), Some(colour))
            };
            let (img, mask) = render_attributes_with_mask(&attrs, 48, &mut rng).unwrap();
            let (mut sum, mut n) = ([0f64; 3], 0f64);
            for (p, m) in img.pixels().zip(mask.pixels()) {
                if m.0[0] == 255 {
                    for (acc, v) in sum.iter_mut().zip(p.0) {
                        *acc += v as f64;
                    }
                    n += 1.0;
                }
            }
            assert!(
                n > 20.0,
                "{} {} shows too little body",
                cspec.name,
                kspec.name
            );
            let mean = sum.map(|s| s / n);
            let nearest = (0..COLOURS.len())
                .min_by(|&a, &b| {
                    let d = |c: usize| {
                        (0..3)
                            .map(|k| (COLOURS[c].rgb[k] as f64 - mean[k]).powi(2))
                            .sum::<f64>()
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            if nearest != colour {
                wrong.push(format!(
                    "{} {} read as {}",
                    cspec.name, kspec.name, COLOURS[nearest].name
                ));
            }
        }
    }
    // Shading may push a few near neighbours (navy/black) over; allow 3%.
    let total = COLOURS.len() * CATEGORIES.len();
    assert!(
        wrong.len() * 100 <= total * 3,
        "{} of {total} misread: {:?}",
        wrong.len(),
        wrong
    );
}

#[test]
fn renders_are_deterministic_and_sized() {
    let attrs = Attributes::random(&mut ChaCha8Rng::seed_from_u64(1), Some(3), Some(5));
    let a = render_attributes_with_mask(&attrs, 40, &mut ChaCha8Rng::seed_from_u64(2))
        .unwrap()
        .0;
    let b = render_attributes_with_mask(&attrs, 40, &mut ChaCha8Rng::seed_from_u64(2))
        .unwrap()
        .0;
    let c = render_attributes_with_mask(&attrs, 40, &mut ChaCha8Rng::seed_from_u64(3))
        .unwrap()
        .0;
    assert_eq!(a.dimensions(), (40, 40));
    assert_eq!(a.as_raw(), b.as_raw());
    assert_ne!(a.as_raw(), c.as_raw());
    let bad = Attributes {
        category: CATEGORIES.len(),
        ..attrs
    };
    assert!(render_attributes_with_mask(&bad, 40, &mut ChaCha8Rng::seed_from_u64(2)).is_err());
}
