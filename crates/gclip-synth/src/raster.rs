//! A tiny analytic rasterizer: shapes are point-membership tests in a
//! canonical object frame, and anti-aliasing comes from supersampling each
//! pixel. This is all the drawing the catalogue needs, without a heavy
//! 2-D graphics dependency.

/// A 2-D point or vector.
pub(crate) type V2 = [f32; 2];

/// Which half of a ring is kept (handles, hooks and arcs are half rings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Half {
    All,
    Upper,
    Lower,
}

/// A filled primitive in the canonical object frame (x right, y down, the
/// object roughly inside [-1, 1]^2).
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// Simple polygon (even-odd rule).
    Poly(Vec<V2>),
    /// Axis-aligned ellipse.
    Ellipse { c: V2, r: V2 },
    /// Axis-aligned rectangle with rounded corners.
    RoundRect { min: V2, max: V2, r: f32 },
    /// Elliptic annulus of thickness `t`, optionally cut to one half.
    Ring { c: V2, r: V2, t: f32, half: Half },
    /// Thick line segment with round caps.
    Capsule { a: V2, b: V2, r: f32 },
}

impl Shape {
    /// Whether the point lies inside the shape.
    pub(crate) fn contains(&self, p: V2) -> bool {
        match self {
            Shape::Poly(pts) => poly_contains(pts, p),
            Shape::Ellipse { c, r } => {
                let dx = (p[0] - c[0]) / r[0];
                let dy = (p[1] - c[1]) / r[1];
                dx * dx + dy * dy <= 1.0
            }
            Shape::RoundRect { min, max, r } => {
                if p[0] < min[0] || p[0] > max[0] || p[1] < min[1] || p[1] > max[1] {
                    return false;
                }
                let r = r.min((max[0] - min[0]) * 0.5).min((max[1] - min[1]) * 0.5);
                let cx = p[0].clamp(min[0] + r, max[0] - r);
                let cy = p[1].clamp(min[1] + r, max[1] - r);
                let (dx, dy) = (p[0] - cx, p[1] - cy);
                dx * dx + dy * dy <= r * r
            }
            Shape::Ring { c, r, t, half } => {
                let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
                let keep = match half {
                    Half::All => true,
                    Half::Upper => dy <= 0.0,
                    Half::Lower => dy >= 0.0,
                };
                if !keep {
                    return false;
                }
                let o = (dx / r[0]).powi(2) + (dy / r[1]).powi(2);
                let (ix, iy) = ((r[0] - t).max(1e-4), (r[1] - t).max(1e-4));
                let i = (dx / ix).powi(2) + (dy / iy).powi(2);
                o <= 1.0 && i > 1.0
            }
            Shape::Capsule { a, b, r } => {
                let (abx, aby) = (b[0] - a[0], b[1] - a[1]);
                let (apx, apy) = (p[0] - a[0], p[1] - a[1]);
                let len2 = abx * abx + aby * aby;
                let t = if len2 > 0.0 {
                    ((apx * abx + apy * aby) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (dx, dy) = (apx - t * abx, apy - t * aby);
                dx * dx + dy * dy <= r * r
            }
        }
    }

    /// Axis-aligned bounding box as [xmin, ymin, xmax, ymax].
    pub(crate) fn bbox(&self) -> [f32; 4] {
        match self {
            Shape::Poly(pts) => {
                let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
                for q in pts {
                    b[0] = b[0].min(q[0]);
                    b[1] = b[1].min(q[1]);
                    b[2] = b[2].max(q[0]);
                    b[3] = b[3].max(q[1]);
                }
                b
            }
            Shape::Ellipse { c, r } | Shape::Ring { c, r, .. } => {
                [c[0] - r[0], c[1] - r[1], c[0] + r[0], c[1] + r[1]]
            }
            Shape::RoundRect { min, max, .. } => [min[0], min[1], max[0], max[1]],
            Shape::Capsule { a, b, r } => [
                a[0].min(b[0]) - r,
                a[1].min(b[1]) - r,
                a[0].max(b[0]) + r,
                a[1].max(b[1]) + r,
            ],
        }
    }

    /// Moves every vertex by a small random offset so silhouettes vary
    /// between products (only polygons; round shapes stay round).
    pub(crate) fn jitter(&mut self, amount: f32, mut next: impl FnMut() -> f32) {
        if let Shape::Poly(pts) = self {
            for q in pts.iter_mut() {
                q[0] += (next() * 2.0 - 1.0) * amount;
                q[1] += (next() * 2.0 - 1.0) * amount;
            }
        }
    }
}

fn poly_contains(pts: &[V2], p: V2) -> bool {
    let mut inside = false;
    let n = pts.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (a, b) = (pts[i], pts[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Affine map from image pixels to the canonical object frame
/// (rotation, anisotropic scale, translation, optional mirror).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Affine {
    /// Row-major 2x2 matrix and translation: q = m * (p - t).
    m: [f32; 4],
    t: V2,
}

impl Affine {
    /// Object of half-extent `scale` pixels centred at `centre`, rotated by
    /// `angle` radians, stretched by `aspect` in x, mirrored if `flip`.
    pub(crate) fn object_to_image(
        centre: V2,
        scale: f32,
        aspect: f32,
        angle: f32,
        flip: bool,
    ) -> Self {
        // Forward: image = centre + R * S * obj, with S = diag(sx, sy).
        // Inverse: obj = S^-1 * R^T * (image - centre).
        let (s, c) = angle.sin_cos();
        let sx = scale * aspect * if flip { -1.0 } else { 1.0 };
        let sy = scale / aspect;
        Affine {
            m: [c / sx, s / sx, -s / sy, c / sy],
            t: centre,
        }
    }

    /// Maps an image point to the object frame.
    #[inline]
    pub(crate) fn apply(&self, p: V2) -> V2 {
        let (x, y) = (p[0] - self.t[0], p[1] - self.t[1]);
        [self.m[0] * x + self.m[1] * y, self.m[2] * x + self.m[3] * y]
    }

    /// Image-space bounding box of an object-space box (via its corners).
    pub(crate) fn image_bbox(&self, b: [f32; 4]) -> [f32; 4] {
        // Invert the 2x2 matrix to map the corners forward.
        let det = self.m[0] * self.m[3] - self.m[1] * self.m[2];
        let inv = [
            self.m[3] / det,
            -self.m[1] / det,
            -self.m[2] / det,
            self.m[0] / det,
        ];
        let mut out = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for (x, y) in [(b[0], b[1]), (b[2], b[1]), (b[0], b[3]), (b[2], b[3])] {
            let ix = inv[0] * x + inv[1] * y + self.t[0];
            let iy = inv[2] * x + inv[3] * y + self.t[1];
            out[0] = out[0].min(ix);
            out[1] = out[1].min(iy);
            out[2] = out[2].max(ix);
            out[3] = out[3].max(iy);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_contain_expected_points() {
        let tri = Shape::Poly(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        assert!(tri.contains([0.2, 0.2]));
        assert!(!tri.contains([0.8, 0.8]));
        let ring = Shape::Ring {
            c: [0.0, 0.0],
            r: [1.0, 1.0],
            t: 0.2,
            half: Half::Upper,
        };
        assert!(ring.contains([0.0, -0.9]));
        assert!(!ring.contains([0.0, 0.9]));
        assert!(!ring.contains([0.0, 0.0]));
        let rr = Shape::RoundRect {
            min: [0.0, 0.0],
            max: [1.0, 1.0],
            r: 0.3,
        };
        assert!(!rr.contains([0.01, 0.01]));
        assert!(rr.contains([0.5, 0.5]));
        let cap = Shape::Capsule {
            a: [0.0, 0.0],
            b: [1.0, 0.0],
            r: 0.1,
        };
        assert!(cap.contains([1.05, 0.0]));
        assert!(!cap.contains([0.5, 0.2]));
    }

    #[test]
    fn affine_round_trips_bbox() {
        let a = Affine::object_to_image([32.0, 32.0], 20.0, 1.0, 0.0, false);
        let p = a.apply([52.0, 32.0]);
        assert!((p[0] - 1.0).abs() < 1e-5 && p[1].abs() < 1e-5);
        let b = a.image_bbox([-1.0, -1.0, 1.0, 1.0]);
        assert!((b[0] - 12.0).abs() < 1e-4 && (b[3] - 52.0).abs() < 1e-4);
    }
}
