//! Silhouettes of the product categories, composed of simple primitives in
//! the canonical object frame (x right, y down, roughly [-1, 1]^2).

use crate::raster::{Half, Shape, V2};

/// How a part of a silhouette is painted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Paint {
    /// The product's colour with its pattern: what attributes describe.
    Body,
    /// The product colour darkened by the factor (cuffs, rims, bands).
    Shade(f32),
    /// A per-product neutral trim colour (soles, handles, straps' metal).
    Trim,
    /// A fixed colour (watch face, lenses, hands).
    Fixed([u8; 3]),
}

/// One drawn part; later parts cover earlier ones.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub shape: Shape,
    pub paint: Paint,
}

fn p(shape: Shape, paint: Paint) -> Part {
    Part { shape, paint }
}

fn poly(pts: &[V2]) -> Shape {
    Shape::Poly(pts.to_vec())
}

fn rrect(x0: f32, y0: f32, x1: f32, y1: f32, r: f32) -> Shape {
    Shape::RoundRect {
        min: [x0, y0],
        max: [x1, y1],
        r,
    }
}

fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32) -> Shape {
    Shape::Ellipse {
        c: [cx, cy],
        r: [rx, ry],
    }
}

fn capsule(a: V2, b: V2, r: f32) -> Shape {
    Shape::Capsule { a, b, r }
}

const DARK: [u8; 3] = [30, 30, 34];
const FACE: [u8; 3] = [245, 245, 240];

/// The parts of one category's silhouette, in drawing order.
pub(crate) fn silhouette(category: &str) -> Vec<Part> {
    use Paint::*;
    match category {
        "shirt" => vec![
            p(
                poly(&[
                    [-0.28, -0.82],
                    [-0.72, -0.64],
                    [-0.98, -0.2],
                    [-0.7, -0.04],
                    [-0.54, -0.3],
                    [-0.54, 0.88],
                    [0.54, 0.88],
                    [0.54, -0.3],
                    [0.7, -0.04],
                    [0.98, -0.2],
                    [0.72, -0.64],
                    [0.28, -0.82],
                    [0.14, -0.68],
                    [0.0, -0.64],
                    [-0.14, -0.68],
                ]),
                Body,
            ),
            p(
                Shape::Ring {
                    c: [0.0, -0.82],
                    r: [0.3, 0.2],
                    t: 0.07,
                    half: Half::Lower,
                },
                Shade(0.7),
            ),
        ],
        "dress" => vec![
            p(capsule([-0.2, -0.95], [-0.24, -0.6], 0.035), Shade(0.75)),
            p(capsule([0.2, -0.95], [0.24, -0.6], 0.035), Shade(0.75)),
            p(
                poly(&[[-0.34, -0.62], [0.34, -0.62], [0.24, -0.12], [-0.24, -0.12]]),
                Body,
            ),
            p(
                poly(&[[-0.24, -0.14], [0.24, -0.14], [0.78, 0.92], [-0.78, 0.92]]),
                Body,
            ),
            p(rrect(-0.26, -0.2, 0.26, -0.08, 0.03), Shade(0.6)),
        ],
        "trousers" => vec![
            p(
                poly(&[
                    [-0.46, -0.8],
                    [0.46, -0.8],
                    [0.56, 0.96],
                    [0.1, 0.96],
                    [0.0, -0.25],
                    [-0.1, 0.96],
                    [-0.56, 0.96],
                ]),
                Body,
            ),
            p(rrect(-0.47, -0.95, 0.47, -0.78, 0.02), Shade(0.65)),
        ],
        "shoe" => vec![
            p(
                poly(&[
                    [-0.9, 0.3],
                    [-0.93, -0.02],
                    [-0.82, -0.3],
                    [-0.52, -0.34],
                    [-0.25, -0.12],
                    [0.25, -0.02],
                    [0.7, 0.06],
                    [0.93, 0.2],
                    [0.93, 0.32],
                ]),
                Body,
            ),
            p(rrect(-0.97, 0.26, 0.97, 0.44, 0.08), Trim),
            p(capsule([-0.4, -0.16], [-0.2, -0.02], 0.025), Shade(0.55)),
            p(capsule([-0.28, -0.2], [-0.08, -0.04], 0.025), Shade(0.55)),
        ],
        "boot" => vec![
            p(
                poly(&[
                    [-0.48, -0.92],
                    [0.08, -0.92],
                    [0.12, 0.3],
                    [0.72, 0.42],
                    [0.86, 0.72],
                    [-0.52, 0.72],
                    [-0.52, 0.0],
                ]),
                Body,
            ),
            p(rrect(-0.5, -0.96, 0.1, -0.8, 0.02), Shade(0.65)),
            p(rrect(-0.58, 0.7, 0.92, 0.88, 0.05), Trim),
        ],
        "hat" => vec![
            p(
                poly(&[
                    [-0.5, 0.32],
                    [-0.46, -0.4],
                    [-0.16, -0.56],
                    [0.0, -0.44],
                    [0.16, -0.56],
                    [0.46, -0.4],
                    [0.5, 0.32],
                ]),
                Body,
            ),
            p(ellipse(0.0, 0.34, 0.98, 0.2), Body),
            p(rrect(-0.49, 0.08, 0.49, 0.24, 0.0), Shade(0.5)),
        ],
        "bag" => vec![
            p(
                Shape::Ring {
                    c: [0.0, -0.22],
                    r: [0.44, 0.62],
                    t: 0.09,
                    half: Half::Upper,
                },
                Trim,
            ),
            p(
                poly(&[[-0.66, -0.24], [0.66, -0.24], [0.86, 0.82], [-0.86, 0.82]]),
                Body,
            ),
            p(
                poly(&[[-0.66, -0.24], [0.66, -0.24], [0.52, 0.16], [-0.52, 0.16]]),
                Shade(0.72),
            ),
            p(ellipse(0.0, 0.16, 0.08, 0.06), Fixed([205, 180, 90])),
        ],
        "mug" => vec![
            p(
                Shape::Ring {
                    c: [0.4, 0.05],
                    r: [0.4, 0.38],
                    t: 0.13,
                    half: Half::All,
                },
                Body,
            ),
            p(rrect(-0.58, -0.62, 0.42, 0.78, 0.08), Body),
            p(ellipse(-0.08, -0.62, 0.5, 0.09), Shade(0.55)),
        ],
        "chair" => vec![
            p(rrect(-0.46, -0.96, 0.46, -0.16, 0.06), Body),
            p(rrect(-0.34, 0.04, -0.26, 0.74, 0.0), Trim),
            p(rrect(0.26, 0.04, 0.34, 0.74, 0.0), Trim),
            p(rrect(-0.56, -0.18, 0.56, 0.06, 0.03), Body),
            p(rrect(-0.54, 0.04, -0.44, 0.96, 0.0), Trim),
            p(rrect(0.44, 0.04, 0.54, 0.96, 0.0), Trim),
        ],
        "lamp" => vec![
            p(rrect(-0.05, -0.25, 0.05, 0.74, 0.0), Trim),
            p(ellipse(0.0, 0.8, 0.46, 0.14), Trim),
            p(
                poly(&[[-0.3, -0.92], [0.3, -0.92], [0.64, -0.2], [-0.64, -0.2]]),
                Body,
            ),
        ],
        "watch" => vec![
            p(rrect(-0.98, -0.19, 0.98, 0.19, 0.08), Body),
            p(rrect(-0.08, -0.6, 0.08, -0.46, 0.02), Trim),
            p(ellipse(0.0, 0.0, 0.52, 0.52), Trim),
            p(ellipse(0.0, 0.0, 0.42, 0.42), Fixed(FACE)),
            p(capsule([0.0, 0.0], [0.0, -0.28], 0.03), Fixed(DARK)),
            p(capsule([0.0, 0.0], [0.2, 0.06], 0.03), Fixed(DARK)),
        ],
        "bottle" => vec![
            p(rrect(-0.44, -0.3, 0.44, 0.94, 0.14), Body),
            p(
                poly(&[[-0.44, -0.26], [0.44, -0.26], [0.14, -0.62], [-0.14, -0.62]]),
                Body,
            ),
            p(rrect(-0.14, -0.74, 0.14, -0.56, 0.0), Body),
            p(rrect(-0.18, -0.97, 0.18, -0.72, 0.04), Trim),
        ],
        "umbrella" => {
            // Canopy: upper half ellipse with a scalloped lower edge.
            let mut pts = Vec::new();
            let n = 24;
            for i in 0..=n {
                let a = std::f32::consts::PI * (1.0 + i as f32 / n as f32);
                pts.push([0.96 * a.cos(), 0.05 + 0.78 * a.sin()]);
            }
            let scallops = 5;
            for k in (0..scallops).rev() {
                let x0 = -0.96 + 1.92 * k as f32 / scallops as f32;
                let x1 = -0.96 + 1.92 * (k + 1) as f32 / scallops as f32;
                for j in (0..=6).rev() {
                    let t = j as f32 / 6.0;
                    let x = x0 + (x1 - x0) * t;
                    let bump = (std::f32::consts::PI * t).sin() * 0.12;
                    pts.push([x, 0.05 - bump]);
                }
            }
            vec![
                p(rrect(-0.03, -0.9, 0.03, 0.82, 0.0), Fixed(DARK)),
                p(
                    Shape::Ring {
                        c: [0.12, 0.82],
                        r: [0.15, 0.14],
                        t: 0.06,
                        half: Half::Lower,
                    },
                    Fixed(DARK),
                ),
                p(Shape::Poly(pts), Body),
                p(capsule([0.0, -0.73], [0.0, -0.85], 0.03), Fixed(DARK)),
            ]
        }
        "sunglasses" => vec![
            p(capsule([-0.86, -0.12], [-0.98, -0.42], 0.04), Body),
            p(capsule([0.86, -0.12], [0.98, -0.42], 0.04), Body),
            p(ellipse(-0.47, 0.02, 0.44, 0.36), Body),
            p(ellipse(0.47, 0.02, 0.44, 0.36), Body),
            p(
                Shape::Ring {
                    c: [0.0, 0.0],
                    r: [0.16, 0.14],
                    t: 0.07,
                    half: Half::Upper,
                },
                Body,
            ),
            p(ellipse(-0.47, 0.03, 0.33, 0.25), Fixed([40, 44, 52])),
            p(ellipse(0.47, 0.03, 0.33, 0.25), Fixed([40, 44, 52])),
        ],
        // Unknown names draw nothing; every name in CATEGORIES is covered
        // (checked by the `every_category_has_a_silhouette` test).
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::CATEGORIES;

    #[test]
    fn every_category_has_a_silhouette() {
        for c in CATEGORIES {
            let parts = silhouette(c.name);
            assert!(
                parts.iter().any(|p| p.paint == Paint::Body),
                "{} has no body",
                c.name
            );
        }
    }
}
