//! The sampler chain, in llama.cpp's default order: penalties, top-k, top-p, min-p,
//! temperature, then a seeded draw (or argmax when greedy).

use std::collections::HashMap;

/// Sampling settings. `temperature <= 0` means greedy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables. Divides positive logits (multiplies negative ones) of recent tokens.
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0x5eed,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

/// SplitMix64: small, fast, and the same sequence on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A sampler with its RNG state and reusable candidate buffer.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub config: SamplerConfig,
    rng: Rng,
    candidates: Vec<(u32, f32)>,
    counts: HashMap<u32, u32>,
    probs: Vec<f64>,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = Rng(config.seed);
        Self {
            config,
            rng,
            candidates: Vec::new(),
            counts: HashMap::new(),
            probs: Vec::new(),
        }
    }

    /// Pick the next token from `logits`, given the `history` of tokens so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = self.config.clone();
        let penalize =
            c.repeat_penalty != 1.0 || c.presence_penalty != 0.0 || c.frequency_penalty != 0.0;
        if c.temperature <= 0.0 && !penalize {
            return argmax(logits);
        }
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));

        if penalize && c.penalty_last_n > 0 {
            self.counts.clear();
            let start = history.len().saturating_sub(c.penalty_last_n);
            for &t in &history[start..] {
                *self.counts.entry(t).or_insert(0) += 1;
            }
            for (&t, &n) in &self.counts {
                if let Some(cand) = self.candidates.get_mut(t as usize) {
                    let l = &mut cand.1;
                    // llama.cpp's penalties sampler.
                    if *l <= 0.0 {
                        *l *= c.repeat_penalty;
                    } else {
                        *l /= c.repeat_penalty;
                    }
                    *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
                }
            }
        }
        if c.temperature <= 0.0 {
            return self
                .candidates
                .iter()
                .fold(
                    (0u32, f32::NEG_INFINITY),
                    |b, &(i, l)| if l > b.1 { (i, l) } else { b },
                )
                .0;
        }

        // Sort descending; ties keep the lower id first, as argmax does.
        let k = if c.top_k > 0 {
            c.top_k.min(self.candidates.len())
        } else {
            self.candidates.len()
        };
        if k < self.candidates.len() {
            self.candidates
                .select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            self.candidates.truncate(k);
        }
        // Ids break ties, so an unstable (allocation-free) sort is deterministic.
        self.candidates
            .sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));

        // Softmax over the survivors for top-p and min-p.
        let max = self.candidates[0].1;
        // Buffers are reused: sampling allocates nothing after the first token.
        let probs = &mut self.probs;
        probs.clear();
        probs.extend(
            self.candidates
                .iter()
                .map(|&(_, l)| f64::from(l - max).exp()),
        );
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        let mut keep = probs.len();
        if c.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= f64::from(c.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        if c.min_p > 0.0 {
            let threshold = probs[0] * f64::from(c.min_p);
            keep = keep.min(probs.iter().take_while(|&&p| p >= threshold).count().max(1));
        }
        self.candidates.truncate(keep);

        // Temperature, then draw.
        probs.clear();
        probs.extend(
            self.candidates
                .iter()
                .map(|&(_, l)| f64::from((l - max) / c.temperature).exp()),
        );
        let total: f64 = probs.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (&(id, _), w) in self.candidates.iter().zip(probs.iter()) {
            if r < *w {
                return id;
            }
            r -= w;
        }
        self.candidates.last().map_or(0, |c| c.0)
    }
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| ((i * 37) % 100) as f32 / 10.0).collect()
    }

    #[test]
    fn greedy_is_argmax() {
        let l = logits();
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&l, &[]), argmax(&l));
        assert_eq!(l[argmax(&l) as usize], 9.9);
    }

    #[test]
    fn same_seed_same_tokens() {
        let l = logits();
        let cfg = SamplerConfig {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerConfig::default()
        };
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                seed,
                ..cfg.clone()
            });
            (0..50).map(|_| s.sample(&l, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let l = logits();
        let mut s = Sampler::new(SamplerConfig {
            top_k: 1,
            temperature: 5.0,
            ..SamplerConfig::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&l, &[]), argmax(&l));
        }
    }

    #[test]
    fn top_p_and_min_p_restrict_the_support() {
        // One dominant token: top-p 0.5 and min-p 0.5 both leave only it.
        let mut l = vec![0f32; 50];
        l[7] = 10.0;
        for cfg in [
            SamplerConfig {
                top_p: 0.5,
                top_k: 0,
                min_p: 0.0,
                temperature: 1.0,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                top_p: 1.0,
                top_k: 0,
                min_p: 0.5,
                temperature: 1.0,
                ..SamplerConfig::default()
            },
        ] {
            let mut s = Sampler::new(cfg);
            assert!((0..100).all(|_| s.sample(&l, &[]) == 7));
        }
    }

    #[test]
    fn repetition_penalty_moves_away_from_history() {
        let mut l = vec![0f32; 10];
        l[3] = 2.0;
        l[4] = 1.9;
        let mut s = Sampler::new(SamplerConfig {
            temperature: 0.0,
            repeat_penalty: 1.5,
            ..SamplerConfig::default()
        });
        assert_eq!(s.sample(&l, &[3]), 4);
        let mut s = Sampler::new(SamplerConfig {
            temperature: 0.0,
            presence_penalty: 0.5,
            ..SamplerConfig::default()
        });
        assert_eq!(s.sample(&l, &[3]), 4);
        assert_eq!(s.sample(&l, &[]), 3);
    }
}
