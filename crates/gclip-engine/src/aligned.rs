//! 64-byte aligned buffers: packed panels are read with aligned vector loads
//! and must not straddle cache lines.

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A zero-initialised, 64-byte aligned byte buffer viewed as `f32` or `i8`.
#[derive(Clone)]
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
    bytes: usize,
}

impl AlignedBuf {
    pub(crate) fn zeroed(bytes: usize) -> Self {
        Self {
            lines: vec![Line([0; 64]); bytes.div_ceil(64)],
            bytes,
        }
    }

    pub(crate) fn f32s(&self) -> &[f32] {
        // SAFETY: the buffer is 64-byte aligned, zero-initialised and holds at
        // least `bytes` bytes; any bit pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.bytes / 4) }
    }

    pub(crate) fn f32s_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `f32s`, with unique access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.bytes / 4) }
    }

    pub(crate) fn i8s(&self) -> &[i8] {
        // SAFETY: any bit pattern is a valid i8.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.bytes) }
    }

    pub(crate) fn i8s_mut(&mut self) -> &mut [i8] {
        // SAFETY: as in `i8s`, with unique access.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.bytes) }
    }

    /// Heap bytes held.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.lines.len() * 64
    }
}
