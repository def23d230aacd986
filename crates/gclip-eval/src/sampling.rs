//! Marqo's query sampling, reproduced bit for bit: weight rescaling to 1..100 and
//! `pandas.DataFrame.sample(n, weights, random_state=seed, replace=False)`, which is
//! numpy's legacy `RandomState(seed).choice(len, n, replace=False, p=w / w.sum())`
//! driven by MT19937.

/// The 32-bit Mersenne Twister (MT19937) seeded like numpy's `RandomState(int)`.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    pos: usize,
}

impl Mt19937 {
    /// Seeds the generator with `init_genrand(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, pos: 624 }
    }

    fn refill(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.pos = 0;
    }

    /// Next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.refill();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Uniform double in [0, 1) with 53 random bits (numpy's `random_sample`).
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

/// Marqo's weight rescaling `int((w - min) / (max - min) * 99 + 1)`, or all 1 when the
/// weights have fewer than two distinct values.
pub fn rescale_weights(w: &[f64]) -> Vec<i64> {
    let min = w.iter().copied().fold(f64::INFINITY, f64::min);
    let max = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if w.is_empty() || min == max {
        return vec![1; w.len()];
    }
    w.iter()
        .map(|&x| ((x - min) / (max - min) * 99.0 + 1.0).trunc() as i64)
        .collect()
}

/// Draws `n` distinct indices of `weights` with probability proportional to weight,
/// exactly as `numpy.random.RandomState(seed).choice(len(w), n, replace=False,
/// p=w / w.sum())` does: repeated rounds of inverse-CDF draws, keeping the first
/// occurrence of each new index, with chosen indices zeroed between rounds.
///
/// `n` is clamped to the number of positive weights. Returns indices in draw order.
pub fn weighted_sample_without_replacement(weights: &[f64], n: usize, seed: u32) -> Vec<usize> {
    let positive = weights.iter().filter(|&&w| w > 0.0).count();
    let n = n.min(positive);
    let mut rng = Mt19937::new(seed);
    let sum: f64 = weights.iter().sum();
    let mut p: Vec<f64> = weights.iter().map(|&w| w / sum).collect();
    let mut found: Vec<usize> = Vec::with_capacity(n);
    let mut cdf = vec![0.0f64; p.len()];
    while found.len() < n {
        let draws: Vec<f64> = (0..n - found.len()).map(|_| rng.next_f64()).collect();
        for &i in &found {
            p[i] = 0.0;
        }
        let mut acc = 0.0;
        for (c, &x) in cdf.iter_mut().zip(&p) {
            acc += x;
            *c = acc;
        }
        let last = acc;
        cdf.iter_mut().for_each(|c| *c /= last);
        // searchsorted(side="right"): first index whose cdf exceeds x.
        let mut new: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for x in draws {
            let idx = cdf.partition_point(|&c| c <= x).min(p.len() - 1);
            if seen.insert(idx) {
                new.push(idx);
            }
        }
        found.extend(new);
    }
    found
}
