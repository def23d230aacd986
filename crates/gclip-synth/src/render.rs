//! Rendering product images: a silhouette with a patterned body, shading,
//! a random pose, a plain or gradient background, an optional shadow and
//! occluder, and sensor noise. Every random choice comes from the caller's
//! RNG, so an image is a pure function of (product, size, RNG state).

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};

use crate::catalog::Attributes;
use crate::raster::{Affine, Shape, V2};
use crate::shapes::{silhouette, Paint, Part};
use crate::vocab::{CATEGORIES, COLOURS, PATTERNS};
use crate::SynthError;

/// Supersampling grid per pixel side (4x4 samples on object pixels).
const SS: usize = 4;

type Rgbf = [f32; 3];

fn lerp3(a: Rgbf, b: Rgbf, t: f32) -> Rgbf {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn luminance(c: Rgbf) -> f32 {
    (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255.0
}

fn dist(a: Rgbf, b: Rgbf) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn hsv(h: f32, s: f32, v: f32) -> Rgbf {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let (r, g, b) = match i as i32 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r * 255.0, g * 255.0, b * 255.0]
}

fn gauss<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u1: f32 = 1.0 - rng.random::<f32>();
    let u2: f32 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// How the body of the silhouette is filled.
struct Fill {
    pattern: usize,
    c1: Rgbf,
    c2: Rgbf,
    dir: V2,
    period: f32,
    offset: V2,
}

impl Fill {
    fn at(&self, q: V2) -> Rgbf {
        // Pattern coordinates rotate with the pattern direction.
        let u = q[0] * self.dir[0] + q[1] * self.dir[1] + self.offset[0];
        let v = -q[0] * self.dir[1] + q[1] * self.dir[0] + self.offset[1];
        match PATTERNS[self.pattern] {
            "striped" => {
                if (u / self.period).rem_euclid(1.0) < 0.4 {
                    self.c2
                } else {
                    self.c1
                }
            }
            "dotted" => {
                let s = self.period;
                let row = (v / s).floor();
                // Alternate rows are shifted by half a cell (hexagonal dots).
                let shift = if (row as i64).rem_euclid(2) == 1 {
                    0.5 * s
                } else {
                    0.0
                };
                let du = (u + shift).rem_euclid(s) - 0.5 * s;
                let dv = v.rem_euclid(s) - 0.5 * s;
                if du * du + dv * dv < (0.3 * s) * (0.3 * s) {
                    self.c2
                } else {
                    self.c1
                }
            }
            "checked" => {
                let k = (u / self.period).floor() as i64 + (v / self.period).floor() as i64;
                if k.rem_euclid(2) == 0 {
                    self.c1
                } else {
                    self.c2
                }
            }
            "gradient" => lerp3(self.c1, self.c2, ((u + 1.0) * 0.5).clamp(0.0, 1.0)),
            _ => self.c1,
        }
    }
}

/// An image-space occluder (a tag or card partly covering the product).
struct Occluder {
    shape: Shape,
    colour: Rgbf,
}

/// Everything needed to shade one sample.
struct Scene {
    parts: Vec<(Part, [f32; 4])>,
    xf: Affine,
    fill: Fill,
    trim: Rgbf,
    light: V2,
    bg0: Rgbf,
    bg1: Rgbf,
    bg_dir: V2,
    size: f32,
    shadow: Option<(V2, V2)>,
    occluder: Option<Occluder>,
}

impl Scene {
    fn background(&self, p: V2) -> Rgbf {
        let t = ((p[0] / self.size - 0.5) * self.bg_dir[0]
            + (p[1] / self.size - 0.5) * self.bg_dir[1]
            + 0.5)
            .clamp(0.0, 1.0);
        let mut c = lerp3(self.bg0, self.bg1, t);
        if let Some((sc, sr)) = self.shadow {
            let d = ((p[0] - sc[0]) / sr[0]).powi(2) + ((p[1] - sc[1]) / sr[1]).powi(2);
            if d < 1.0 {
                let k = 1.0 - 0.28 * (1.0 - d);
                c = [c[0] * k, c[1] * k, c[2] * k];
            }
        }
        c
    }

    /// Colour at an image point and whether it shows the product body.
    fn sample(&self, p: V2) -> (Rgbf, bool) {
        if let Some(o) = &self.occluder {
            if o.shape.contains(p) {
                return (o.colour, false);
            }
        }
        let q = self.xf.apply(p);
        for (part, b) in self.parts.iter().rev() {
            if q[0] < b[0] || q[0] > b[2] || q[1] < b[1] || q[1] > b[3] || !part.shape.contains(q) {
                continue;
            }
            let (c, body) = match part.paint {
                Paint::Body => (self.fill.at(q), true),
                Paint::Shade(k) => {
                    let c = self.fill.c1;
                    // Darken light colours, lighten very dark ones, so the trim stays visible.
                    if luminance(c) < 0.15 {
                        (lerp3(c, [255.0; 3], 1.0 - k), false)
                    } else {
                        ([c[0] * k, c[1] * k, c[2] * k], false)
                    }
                }
                Paint::Trim => (self.trim, false),
                Paint::Fixed(c) => ([c[0] as f32, c[1] as f32, c[2] as f32], false),
            };
            let shade =
                (1.0 + 0.16 * (q[0] * self.light[0] + q[1] * self.light[1])).clamp(0.75, 1.2);
            return ([c[0] * shade, c[1] * shade, c[2] * shade], body);
        }
        (self.background(p), false)
    }
}

/// Pose of the product in the image.
struct Pose {
    centre: V2,
    scale: f32,
    aspect: f32,
    angle: f32,
    flip: bool,
}

fn build_scene<R: Rng + ?Sized>(
    attrs: &Attributes,
    size: u32,
    rng: &mut R,
    canonical: bool,
) -> Scene {
    let s = size as f32;
    let cat = CATEGORIES[attrs.category];
    let mut parts = silhouette(cat.name);
    for part in parts.iter_mut() {
        if !canonical {
            part.shape.jitter(0.03, || rng.random::<f32>());
        }
    }
    let parts: Vec<(Part, [f32; 4])> = parts
        .into_iter()
        .map(|part| {
            let b = part.shape.bbox();
            (part, b)
        })
        .collect();

    // Product colour, jittered a little so colour names cover a small range.
    let base = COLOURS[attrs.colour].rgb;
    let mut c1: Rgbf = [base[0] as f32, base[1] as f32, base[2] as f32];
    if !canonical {
        let bright = rng.random_range(0.92..1.06f32);
        for ch in c1.iter_mut() {
            *ch = (*ch * bright + rng.random_range(-10.0..10.0f32)).clamp(0.0, 255.0);
        }
    }
    let light_c1 = luminance(c1) > 0.6;
    let c2 = match PATTERNS[attrs.pattern] {
        "gradient" => {
            if light_c1 {
                lerp3(c1, [20.0; 3], 0.45)
            } else {
                lerp3(c1, [255.0; 3], 0.5)
            }
        }
        _ => {
            if light_c1 {
                [45.0, 45.0, 50.0]
            } else {
                [240.0, 238.0, 232.0]
            }
        }
    };
    let angle_choices = [
        0.0f32,
        std::f32::consts::FRAC_PI_4,
        std::f32::consts::FRAC_PI_2,
        -std::f32::consts::FRAC_PI_4,
    ];
    let pat_angle = if canonical {
        0.0
    } else {
        angle_choices[rng.random_range(0..angle_choices.len())]
    };
    let fill = Fill {
        pattern: attrs.pattern,
        c1,
        c2,
        dir: [pat_angle.cos(), pat_angle.sin()],
        period: if canonical {
            0.25
        } else {
            rng.random_range(0.2..0.3f32)
        },
        offset: if canonical {
            [0.0, 0.0]
        } else {
            [rng.random::<f32>(), rng.random::<f32>()]
        },
    };
    let trims: [Rgbf; 4] = [
        [238.0, 236.0, 230.0],
        [36.0, 36.0, 40.0],
        [160.0, 162.0, 168.0],
        [165.0, 118.0, 70.0],
    ];
    let trim = trims[if canonical {
        1
    } else {
        rng.random_range(0..trims.len())
    }];

    let pose = if canonical {
        Pose {
            centre: [s / 2.0, s / 2.0],
            scale: s * 0.45,
            aspect: 1.0,
            angle: 0.0,
            flip: false,
        }
    } else {
        let upright = rng.random::<f32>() < 0.4;
        let max_angle = if upright { 0.08 } else { 0.4 };
        Pose {
            centre: [
                s * (0.5 + rng.random_range(-0.1..0.1f32)),
                s * (0.5 + rng.random_range(-0.1..0.1f32)),
            ],
            scale: s * rng.random_range(0.3..0.44f32),
            aspect: rng.random_range(0.9..1.1f32),
            angle: rng.random_range(-max_angle..max_angle),
            flip: rng.random::<bool>(),
        }
    };
    let xf = Affine::object_to_image(pose.centre, pose.scale, pose.aspect, pose.angle, pose.flip);
    let la: f32 = if canonical {
        0.0
    } else {
        rng.random_range(0.0..std::f32::consts::TAU)
    };
    let light = if canonical {
        [0.0, 0.0]
    } else {
        [la.cos(), la.sin()]
    };

    // Background: light or dark, solid or gradient, never too close to the product colour.
    let (bg0, bg1) = if canonical {
        ([255.0; 3], [255.0; 3])
    } else {
        let pick = |rng: &mut R| {
            let h = rng.random::<f32>();
            let dark = rng.random::<f32>() < 0.2;
            let sat = rng.random_range(0.0..0.22f32);
            let val = if dark {
                rng.random_range(0.22..0.45f32)
            } else {
                rng.random_range(0.8..0.99f32)
            };
            let a = hsv(h, sat, val);
            let b = if rng.random::<f32>() < 0.4 {
                hsv(
                    h + rng.random_range(-0.08..0.08f32),
                    sat,
                    (val + rng.random_range(-0.15..0.15f32)).clamp(0.0, 1.0),
                )
            } else {
                a
            };
            (a, b)
        };
        let mut bg = pick(rng);
        for _ in 0..12 {
            if dist(bg.0, c1) > 110.0 && dist(bg.1, c1) > 110.0 {
                break;
            }
            bg = pick(rng);
        }
        bg
    };
    let ba: f32 = if canonical {
        0.0
    } else {
        rng.random_range(0.0..std::f32::consts::TAU)
    };

    let shadow = if !canonical && rng.random::<f32>() < 0.5 {
        Some((
            [pose.centre[0], pose.centre[1] + 0.85 * pose.scale],
            [0.85 * pose.scale, 0.16 * pose.scale],
        ))
    } else {
        None
    };
    let occluder = if !canonical && rng.random::<f32>() < 0.15 {
        let w = s * rng.random_range(0.12..0.22f32);
        let h = s * rng.random_range(0.08..0.16f32);
        // Keep the occluder near a border so it covers only part of the product.
        let x0 = if rng.random::<bool>() {
            rng.random_range(0.0..0.12f32) * s
        } else {
            s - w - rng.random_range(0.0..0.12f32) * s
        };
        let y0 = rng.random_range(0.0..(s - h).max(1.0));
        let g = rng.random_range(150.0..250.0f32);
        let shape = if rng.random::<bool>() {
            Shape::RoundRect {
                min: [x0, y0],
                max: [x0 + w, y0 + h],
                r: 0.2 * h,
            }
        } else {
            Shape::Ellipse {
                c: [x0 + w / 2.0, y0 + h / 2.0],
                r: [w / 2.0, h / 2.0],
            }
        };
        Some(Occluder {
            shape,
            colour: [g, g * 0.97, g * 0.92],
        })
    } else {
        None
    };

    Scene {
        parts,
        xf,
        fill,
        trim,
        light,
        bg0,
        bg1,
        bg_dir: [ba.cos(), ba.sin()],
        size: s,
        shadow,
        occluder,
    }
}

/// Renders the scene, returning the image and a mask of the body coverage
/// (255 where every sample shows the patterned body).
fn rasterize<R: Rng + ?Sized>(
    scene: &Scene,
    size: u32,
    rng: Option<&mut R>,
) -> (RgbImage, GrayImage) {
    let mut img = RgbImage::new(size, size);
    let mut mask = GrayImage::new(size, size);
    // Supersample only where the product or occluder can be.
    let mut obox = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for (_, b) in &scene.parts {
        let ib = scene.xf.image_bbox(*b);
        obox = [
            obox[0].min(ib[0]),
            obox[1].min(ib[1]),
            obox[2].max(ib[2]),
            obox[3].max(ib[3]),
        ];
    }
    if let Some(o) = &scene.occluder {
        let b = o.shape.bbox();
        obox = [
            obox[0].min(b[0]),
            obox[1].min(b[1]),
            obox[2].max(b[2]),
            obox[3].max(b[3]),
        ];
    }
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f32, y as f32);
            let near = fx + 1.0 >= obox[0]
                && fx <= obox[2] + 1.0
                && fy + 1.0 >= obox[1]
                && fy <= obox[3] + 1.0;
            let (c, cover) = if near {
                let mut acc = [0.0f32; 3];
                let mut hits = 0u32;
                for sy in 0..SS {
                    for sx in 0..SS {
                        let p = [
                            fx + (sx as f32 + 0.5) / SS as f32,
                            fy + (sy as f32 + 0.5) / SS as f32,
                        ];
                        let (c, body) = scene.sample(p);
                        acc = [acc[0] + c[0], acc[1] + c[1], acc[2] + c[2]];
                        hits += body as u32;
                    }
                }
                let n = (SS * SS) as f32;
                ([acc[0] / n, acc[1] / n, acc[2] / n], hits as f32 / n)
            } else {
                (scene.background([fx + 0.5, fy + 0.5]), 0.0)
            };
            img.put_pixel(
                x,
                y,
                Rgb([
                    c[0].clamp(0.0, 255.0) as u8,
                    c[1].clamp(0.0, 255.0) as u8,
                    c[2].clamp(0.0, 255.0) as u8,
                ]),
            );
            mask.put_pixel(x, y, Luma([(cover * 255.0).round() as u8]));
        }
    }
    if let Some(rng) = rng {
        // Sensor noise: a shared luminance part plus independent channel noise.
        let sigma = rng.random_range(1.0..6.0f32);
        for px in img.pixels_mut() {
            let l = gauss(rng) * sigma;
            for ch in px.0.iter_mut() {
                let v = *ch as f32 + l + 0.5 * sigma * gauss(rng);
                *ch = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    (img, mask)
}

fn check_size(size: u32) -> Result<(), SynthError> {
    if !(8..=2048).contains(&size) {
        return Err(SynthError::InvalidConfig(format!(
            "image size {size} is outside 8..=2048 pixels"
        )));
    }
    Ok(())
}

fn check_attrs(attrs: &Attributes) -> Result<(), SynthError> {
    if attrs.category >= CATEGORIES.len()
        || attrs.colour >= COLOURS.len()
        || attrs.pattern >= PATTERNS.len()
    {
        return Err(SynthError::InvalidConfig(format!(
            "attribute index out of range (category {}, colour {}, pattern {})",
            attrs.category, attrs.colour, attrs.pattern
        )));
    }
    Ok(())
}

/// Renders a product image of `size` x `size` pixels in a random pose.
///
/// Deterministic for a given RNG state. Also returns the body mask: 255
/// where the pixel shows only the product's patterned body (what its
/// colour and pattern describe), 0 on background, trims and occluders.
pub fn render_attributes_with_mask<R: Rng + ?Sized>(
    attrs: &Attributes,
    size: u32,
    rng: &mut R,
) -> Result<(RgbImage, GrayImage), SynthError> {
    check_size(size)?;
    check_attrs(attrs)?;
    let scene = build_scene(attrs, size, rng, false);
    Ok(rasterize(&scene, size, Some(rng)))
}

/// Renders the product image (see [`render_attributes_with_mask`]).
/// [`crate::Product::image`] gives the exact image written by [`crate::generate`].
pub fn render_product<R: Rng + ?Sized>(
    product: &crate::Product,
    size: u32,
    rng: &mut R,
) -> Result<RgbImage, SynthError> {
    Ok(render_attributes_with_mask(&product.attributes, size, rng)?.0)
}

/// Coverage mask (0..=255) of a category's silhouette in its canonical pose:
/// centred, upright, no jitter, all parts. Used to compare shapes.
pub fn silhouette_mask(category: usize, size: u32) -> Result<GrayImage, SynthError> {
    check_size(size)?;
    let attrs = Attributes {
        category,
        ..Attributes::default()
    };
    check_attrs(&attrs)?;
    // No RNG is consumed in canonical mode; a fixed one satisfies the signature.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut scene = build_scene(&attrs, size, &mut rng, true);
    // Count every part, not just the body.
    for (part, _) in scene.parts.iter_mut() {
        part.paint = Paint::Body;
    }
    scene.fill.pattern = 0;
    Ok(rasterize::<rand_chacha::ChaCha8Rng>(&scene, size, None).1)
}
