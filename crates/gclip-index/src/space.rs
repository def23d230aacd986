//! Adapters between [`VectorData`] and the graph's distance traits.

use crate::hnsw::{NodeSpace, Space};
use crate::vectors::VectorData;

/// Exact float32 distances to a borrowed query.
pub struct Exact<'a> {
    pub v: &'a VectorData,
    pub q: &'a [f32],
}

impl Space for Exact<'_> {
    #[inline]
    fn to_query(&self, i: u32) -> f32 {
        self.v.exact(self.q, i)
    }
    #[inline]
    fn to_query4(&self, ids: [u32; 4]) -> [f32; 4] {
        self.v.exact4(self.q, ids)
    }
    #[inline]
    fn prefetch(&self, i: u32) {
        self.v.prefetch(i);
    }
    #[inline]
    fn prefetch_row(&self, i: u32) {
        self.v.prefetch_row(i);
    }
}

/// Distances read from the compressed codes (float16 / int8), for traversal.
pub struct Approx<'a> {
    pub v: &'a VectorData,
    pub q: &'a [f32],
    pub qn2: f32,
}

impl Space for Approx<'_> {
    #[inline]
    fn to_query(&self, i: u32) -> f32 {
        self.v.approx(self.q, self.qn2, i)
    }
    #[inline]
    fn prefetch(&self, i: u32) {
        self.v.prefetch(i);
    }
    #[inline]
    fn prefetch_row(&self, i: u32) {
        self.v.prefetch_row(i);
    }
}

/// Node-to-node exact distances, used while building the graph.
pub struct Build<'a>(pub &'a VectorData);

impl NodeSpace for Build<'_> {
    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        self.0.exact(self.0.row(a), b)
    }
    fn of_node(&self, a: u32) -> impl Space + '_ {
        Exact {
            v: self.0,
            q: self.0.row(a),
        }
    }
}
