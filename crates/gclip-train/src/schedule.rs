//! Learning-rate schedule.

/// Linear warmup then cosine decay to zero, as open_clip's `cosine_lr`.
///
/// `step` counts optimizer steps from 0. During the first `warmup` steps the
/// rate rises linearly, `base_lr * (step + 1) / warmup`; afterwards it follows
/// `0.5 * (1 + cos(pi * (step - warmup) / (total - warmup))) * base_lr`.
/// Steps at or past `total` give 0.
pub fn cosine_with_warmup(step: usize, base_lr: f64, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base_lr * (step + 1) as f64 / warmup as f64;
    }
    if step >= total || total <= warmup {
        return 0.0;
    }
    let e = (step - warmup) as f64;
    let es = (total - warmup) as f64;
    0.5 * (1.0 + (std::f64::consts::PI * e / es).cos()) * base_lr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert!((cosine_with_warmup(0, 1.0, 4, 104) - 0.25).abs() < 1e-12);
        assert!((cosine_with_warmup(3, 1.0, 4, 104) - 1.0).abs() < 1e-12);
        assert!((cosine_with_warmup(4, 1.0, 4, 104) - 1.0).abs() < 1e-12);
        // half way through the decay the rate is half the base
        assert!((cosine_with_warmup(54, 1.0, 4, 104) - 0.5).abs() < 1e-12);
        assert_eq!(cosine_with_warmup(104, 1.0, 4, 104), 0.0);
        // no warmup starts at the base rate
        assert!((cosine_with_warmup(0, 2.0, 0, 10) - 2.0).abs() < 1e-12);
    }
}
