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
        if let Some(id) = self.prepare(logits, history) {
            return id;
        }
        let total: f64 = self.probs.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (&(id, _), w) in self.candidates.iter().zip(self.probs.iter()) {
            if r < *w {
                return id;
            }
            r -= w;
        }
        self.candidates.last().map_or(0, |c| c.0)
    }

    /// The distribution [`Sampler::sample`] draws from for these `logits` and `history`:
    /// `(token, probability)` pairs after the penalties, top-k, top-p, min-p and temperature,
    /// most likely first. A greedy config gives its one token with probability 1. Draws
    /// nothing from the RNG.
    pub fn distribution(&mut self, logits: &[f32], history: &[u32]) -> Vec<(u32, f64)> {
        if let Some(id) = self.prepare(logits, history) {
            return vec![(id, 1.0)];
        }
        let total: f64 = self.probs.iter().sum();
        self.candidates
            .iter()
            .zip(self.probs.iter())
            .map(|(&(id, _), w)| (id, w / total))
            .collect()
    }

    /// Run the chain up to the draw: `Some(token)` when the choice is already made (greedy),
    /// else the survivors in `candidates` (best first) with their unnormalized weights after
    /// temperature in `probs`.
    fn prepare(&mut self, logits: &[f32], history: &[u32]) -> Option<u32> {
        let c = &self.config;
        let penalize =
            c.repeat_penalty != 1.0 || c.presence_penalty != 0.0 || c.frequency_penalty != 0.0;
        if c.temperature <= 0.0 && !penalize {
            return Some(argmax(logits));
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
            let best = self
                .candidates
                .iter()
                .fold(
                    (0u32, f32::NEG_INFINITY),
                    |b, &(i, l)| if l > b.1 { (i, l) } else { b },
                );
            return Some(best.0);
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

        // Temperature: the weights the draw uses.
        probs.clear();
        probs.extend(
            self.candidates
                .iter()
                .map(|&(_, l)| f64::from((l - max) / c.temperature).exp()),
        );
        None
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

    /// Logits of six tokens, deliberately not in id order: sorted they are ids 1, 5, 3, 0, 4, 2
    /// at 2.0, 1.5, 1.0, 0.5, 0.0, -1.0.
    const L: [f32; 6] = [0.5, 2.0, -1.0, 1.0, 0.0, 1.5];

    /// No filter: the distribution is all of it; the others close over one base.
    fn open() -> SamplerConfig {
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerConfig::default()
        }
    }

    /// `got` equals the written-out `want` (same tokens in the same order, probabilities to
    /// 1e-8: the largest difference seen is 1.5e-9, with the penalties, which are applied to
    /// the f32 logits while the reference computed them in f64).
    fn assert_distribution(cfg: SamplerConfig, history: &[u32], want: &[(u32, f64)]) {
        let got = Sampler::new(cfg.clone()).distribution(&L, history);
        let ids = |d: &[(u32, f64)]| d.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(want), "{cfg:?}: support");
        for ((id, p), (_, q)) in got.iter().zip(want) {
            assert!((p - q).abs() < 1e-8, "{cfg:?}: token {id}: {p} vs {q}");
        }
        // The draws follow it: 20000 seeded samples, every frequency within 5 sigma.
        let mut s = Sampler::new(cfg.clone());
        let n = 20_000;
        let mut counts = [0usize; 6];
        for _ in 0..n {
            counts[s.sample(&L, history) as usize] += 1;
        }
        for (id, c) in counts.iter().enumerate() {
            let q = want.iter().find(|p| p.0 == id as u32).map_or(0.0, |p| p.1);
            let sigma = (q * (1.0 - q) / n as f64).sqrt();
            let f = *c as f64 / n as f64;
            assert!(
                (f - q).abs() <= 5.0 * sigma + 1e-12,
                "{cfg:?}: token {id} drawn {f} of the time, expected {q}"
            );
        }
    }

    // Reference distributions, written out: softmax(l) = exp(l - 2) / sum over the kept tokens;
    // the numbers were computed in Python (f64 math.exp) by the same chain as llama.cpp's
    // samplers (top-k, top-p on the softmax before temperature, min-p relative to the top
    // token, then temperature).

    #[test]
    fn plain_softmax_at_temperature_one() {
        assert_distribution(
            open(),
            &[],
            &[
                (1, 0.419698531675),
                (5, 0.254560027297),
                (3, 0.154398461293),
                (0, 0.093647400587),
                (4, 0.056800019658),
                (2, 0.020895559490),
            ],
        );
    }

    #[test]
    fn temperature_flattens() {
        // exp((l - 2) / 2), normalized.
        let cfg = SamplerConfig {
            temperature: 2.0,
            ..open()
        };
        assert_distribution(
            cfg,
            &[],
            &[
                (1, 0.289963695651),
                (5, 0.225823953235),
                (3, 0.175871871616),
                (0, 0.136969151335),
                (4, 0.106671682316),
                (2, 0.064699645848),
            ],
        );
    }

    #[test]
    fn top_k_keeps_the_k_best() {
        let cfg = SamplerConfig { top_k: 4, ..open() };
        assert_distribution(
            cfg,
            &[],
            &[
                (1, 0.455054233923),
                (5, 0.276004344707),
                (3, 0.167405097278),
                (0, 0.101536324092),
            ],
        );
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_p() {
        // Cumulative 0.4197, 0.6743: p = 0.6 keeps two tokens.
        let cfg = SamplerConfig {
            top_p: 0.6,
            ..open()
        };
        assert_distribution(cfg, &[], &[(1, 0.622459331202), (5, 0.377540668798)]);
    }

    #[test]
    fn min_p_keeps_tokens_within_a_factor_of_the_best() {
        // 0.3 x 0.4197 = 0.1259: ids 1, 5, 3 stay; 0 (0.0936) goes.
        let cfg = SamplerConfig {
            min_p: 0.3,
            ..open()
        };
        assert_distribution(
            cfg,
            &[],
            &[
                (1, 0.506480391056),
                (5, 0.307195885718),
                (3, 0.186323723226),
            ],
        );
    }

    #[test]
    fn the_whole_chain_in_order() {
        // top-k 5, then top-p 0.9 (keeps 4), min-p 0.1 (keeps those 4), then temperature 0.5.
        let cfg = SamplerConfig {
            top_k: 5,
            top_p: 0.9,
            min_p: 0.1,
            temperature: 0.5,
            ..open()
        };
        assert_distribution(
            cfg,
            &[],
            &[
                (1, 0.643914259888),
                (5, 0.236882818090),
                (3, 0.087144318742),
                (0, 0.032058603280),
            ],
        );
    }

    #[test]
    fn penalties_as_llama_cpp_applies_them() {
        // History [1, 1, 2]: token 1 (2.0) -> 2.0 / 1.5 - 2 x 0.25 - 0.1 = 0.7333;
        // token 2 (-1.0) -> -1.0 x 1.5 - 0.25 - 0.1 = -1.85; then softmax.
        let cfg = SamplerConfig {
            repeat_penalty: 1.5,
            frequency_penalty: 0.25,
            presence_penalty: 0.1,
            ..open()
        };
        assert_distribution(
            cfg,
            &[1, 1, 2],
            &[
                (5, 0.370757106354),
                (3, 0.224875552310),
                (1, 0.172238558119),
                (0, 0.136393917096),
                (4, 0.082727092517),
                (2, 0.013007773605),
            ],
        );
        // penalty_last_n = 1 looks at token 2 only.
        let only_last = SamplerConfig {
            penalty_last_n: 1,
            repeat_penalty: 1.5,
            frequency_penalty: 0.25,
            presence_penalty: 0.1,
            ..open()
        };
        let d = Sampler::new(only_last).distribution(&L, &[1, 1, 2]);
        assert_eq!(d[0].0, 1, "token 1 is outside the penalty window");
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
