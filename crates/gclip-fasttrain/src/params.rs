//! All weights of a model in one flat `f32` buffer, in the canonical (open_clip) key order
//! of its config; gradients and optimizer moments use buffers of the same layout.

use std::collections::HashMap;
use std::ops::Range;

use gclip_checkpoint::{ClipConfig, RawTensor, TensorMap};

use crate::{FastTrainError, Result};

/// The layout (names, shapes, offsets) and values of a model's parameters.
#[derive(Clone, Debug)]
pub struct Params {
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    ranges: Vec<Range<usize>>,
    index: HashMap<String, usize>,
    /// Every parameter, back to back.
    pub data: Vec<f32>,
}

impl Params {
    /// Copies the tensors `cfg` needs out of `tensors` (any stored float type). A missing or
    /// mis-shaped tensor is an error naming it.
    pub fn from_tensors(cfg: &ClipConfig, tensors: &TensorMap) -> Result<Self> {
        let spec = gclip_checkpoint::keys::expected_shapes(cfg);
        let mut p = Params {
            names: Vec::with_capacity(spec.len()),
            shapes: Vec::with_capacity(spec.len()),
            ranges: Vec::with_capacity(spec.len()),
            index: HashMap::new(),
            data: Vec::new(),
        };
        for (key, shape) in spec {
            let t = tensors
                .get(&key)
                .ok_or_else(|| FastTrainError::Shape(format!("missing tensor `{key}`")))?;
            let numel: usize = shape.iter().product();
            if t.numel() != numel {
                return Err(FastTrainError::Shape(format!(
                    "`{key}`: expected {shape:?}, found {:?}",
                    t.shape()
                )));
            }
            let start = p.data.len();
            p.data.extend(t.to_f32());
            p.index.insert(key.clone(), p.names.len());
            p.names.push(key);
            p.shapes.push(shape);
            p.ranges.push(start..start + numel);
        }
        Ok(p)
    }

    /// Total number of values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the model has no parameters.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Names in layout order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `(name, shape, range)` of every parameter, in layout order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[usize], Range<usize>)> {
        self.names
            .iter()
            .zip(&self.shapes)
            .zip(&self.ranges)
            .map(|((n, s), r)| (n.as_str(), s.as_slice(), r.clone()))
    }

    /// Where `name` lives in the flat buffers.
    pub fn range(&self, name: &str) -> Result<Range<usize>> {
        self.index
            .get(name)
            .map(|&i| self.ranges[i].clone())
            .ok_or_else(|| FastTrainError::Shape(format!("no parameter `{name}`")))
    }

    /// Shape of `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|&i| self.shapes[i].as_slice())
    }

    /// The values of `name`.
    pub fn get(&self, name: &str) -> Result<&[f32]> {
        Ok(&self.data[self.range(name)?])
    }

    /// `values` (a buffer of this layout: the parameters, a gradient, a moment) as named
    /// f32 tensors.
    pub fn to_tensors(&self, values: &[f32]) -> Result<TensorMap> {
        if values.len() != self.data.len() {
            return Err(FastTrainError::Shape(format!(
                "{} values for a layout of {}",
                values.len(),
                self.data.len()
            )));
        }
        let mut out = TensorMap::new();
        for (name, shape, r) in self.entries() {
            out.insert(
                name.to_string(),
                RawTensor::from_f32(shape.to_vec(), &values[r])?,
            );
        }
        Ok(out)
    }
}

/// Two disjoint mutable views into one buffer (e.g. a weight's and its bias's gradient).
pub(crate) fn two_mut(v: &mut [f32], a: Range<usize>, b: Range<usize>) -> (&mut [f32], &mut [f32]) {
    assert!(a.end <= b.start || b.end <= a.start, "overlapping ranges");
    if a.start < b.start {
        let (lo, hi) = v.split_at_mut(b.start);
        (&mut lo[a], &mut hi[..b.end - b.start])
    } else {
        let (lo, hi) = v.split_at_mut(a.start);
        (&mut hi[..a.end - a.start], &mut lo[b])
    }
}
