//! The deterministic inputs of `shared/bench/WORKLOADS.md`: SplitMix64 with
//! seed 42, a fresh generator per workload, values drawn in the documented
//! order, so every library computes on identical data.

pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new() -> Self {
        SplitMix64(42)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`, exactly representable in f32.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 40) as f64) * (1.0 / 16_777_216.0) * 2.0 - 1.0
    }

    pub fn f32s(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (self.uniform() * scale) as f32).collect()
    }

    pub fn f64s(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }

    pub fn labels(&mut self, n: usize, classes: u64) -> Vec<usize> {
        (0..n)
            .map(|_| ((self.next_u64() >> 32) % classes) as usize)
            .collect()
    }
}
