//! The exact, deterministic corpus mixer. Every training sequence has the same length, so a
//! token ratio (the ALMR) is a sequence ratio: sequence `n` is drawn from the corpus whose
//! count lags its target `weight * n` the most, and the realized count of every corpus stays
//! within one sequence of its target after any number of draws.
//!
//! The rule is Tijdeman's solution of the chairman assignment problem (1980): among the
//! corpora at least `d = 1 / (2k - 2)` behind, the one whose next sequence is due soonest.
//! It bounds the error by `1 - d < 1` for any number `k` of corpora. (Megatron's
//! BlendedDataset takes the largest deficit, which drifts past one sequence from 5 corpora on.)
//!
//! Within a corpus, windows come in a seeded pseudo-random order that is a permutation of all
//! windows per epoch ([`Permutation`]); the whole state is the per-corpus counts, so a resumed
//! run continues exactly.

use super::{splitmix64, DataError};

/// What to do when a corpus has given all its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExhausted {
    /// Start another epoch over it, in a new order.
    Repeat,
    /// End training.
    Stop,
}

/// One corpus as the mixer sees it.
#[derive(Debug, Clone)]
pub struct MixerCorpus {
    pub name: String,
    /// Target fraction of sequences (the weights are normalized).
    pub weight: f64,
    /// Windows per epoch.
    pub windows: u64,
    pub on_exhausted: OnExhausted,
}

/// One drawn sequence: which corpus, which window of it, in which epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub corpus: usize,
    pub window: u64,
    pub epoch: u64,
}

/// The corpus due next has no window left and its rule is [`OnExhausted::Stop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    pub corpus: usize,
    pub name: String,
    pub windows: u64,
}

#[derive(Debug, Clone)]
pub struct Mixer {
    corpora: Vec<MixerCorpus>,
    weights: Vec<f64>,
    seed: u64,
    counts: Vec<u64>,
    perms: Vec<Permutation>,
}

impl Mixer {
    pub fn new(corpora: Vec<MixerCorpus>, seed: u64) -> Result<Self, DataError> {
        if corpora.is_empty() {
            return Err(DataError::Mixture("no corpora to mix".into()));
        }
        for c in &corpora {
            if !(c.weight.is_finite() && c.weight > 0.0) {
                return Err(DataError::Mixture(format!(
                    "corpus {:?}: weight {} must be positive",
                    c.name, c.weight
                )));
            }
            if c.windows == 0 {
                return Err(DataError::Mixture(format!(
                    "corpus {:?} has no full training window: it needs more tokens than seq_len",
                    c.name
                )));
            }
        }
        let total: f64 = corpora.iter().map(|c| c.weight).sum();
        let weights = corpora.iter().map(|c| c.weight / total).collect();
        let perms = corpora
            .iter()
            .enumerate()
            .map(|(i, c)| Permutation::new(c.windows, corpus_seed(seed, i, 0)))
            .collect();
        Ok(Self {
            counts: vec![0; corpora.len()],
            corpora,
            weights,
            seed,
            perms,
        })
    }

    pub fn corpora(&self) -> &[MixerCorpus] {
        &self.corpora
    }

    /// Normalized target fractions.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Sequences drawn so far, per corpus.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn drawn(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Realized fraction of sequences per corpus (the targets before any draw).
    pub fn realized(&self) -> Vec<f64> {
        let n = self.drawn();
        if n == 0 {
            return self.weights.clone();
        }
        self.counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    /// The corpus the next draw comes from.
    fn due(&self) -> usize {
        let k = self.counts.len();
        if k == 1 {
            return 0;
        }
        let t = (self.drawn() + 1) as f64;
        let d = 1.0 / (2 * k - 2) as f64;
        let deadline = |j: usize| (self.counts[j] as f64 + 1.0 - d) / self.weights[j];
        let eligible = |j: &usize| self.weights[*j] * t - self.counts[*j] as f64 >= d - 1e-9;
        let pick = |it: &mut dyn Iterator<Item = usize>| {
            it.min_by(|&a, &b| deadline(a).total_cmp(&deadline(b)).then(a.cmp(&b)))
        };
        pick(&mut (0..k).filter(eligible)).unwrap_or_else(|| pick(&mut (0..k)).unwrap_or(0))
    }

    /// The next sequence, or why there is none.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Draw, Exhausted> {
        let i = self.due();
        let c = &self.corpora[i];
        let (epoch, pos) = (self.counts[i] / c.windows, self.counts[i] % c.windows);
        if epoch > 0 && c.on_exhausted == OnExhausted::Stop {
            return Err(Exhausted {
                corpus: i,
                name: c.name.clone(),
                windows: c.windows,
            });
        }
        if pos == 0 && epoch > 0 {
            self.perms[i] = Permutation::new(c.windows, corpus_seed(self.seed, i, epoch));
        }
        self.counts[i] += 1;
        Ok(Draw {
            corpus: i,
            window: self.perms[i].apply(pos),
            epoch,
        })
    }

    /// Continue after `drawn` sequences (a resumed run): replays the choices, which are cheap.
    pub fn fast_forward(&mut self, drawn: u64) -> Result<(), Exhausted> {
        while self.drawn() < drawn {
            self.next()?;
        }
        Ok(())
    }
}

fn corpus_seed(seed: u64, corpus: usize, epoch: u64) -> u64 {
    splitmix64(seed ^ splitmix64(corpus as u64 ^ splitmix64(epoch.wrapping_add(0x5EED))))
}

/// A seeded pseudo-random permutation of `0..n` in O(1) memory: a 4-round Feistel network on
/// the smallest even number of bits that covers `n`, with cycle walking to stay below `n`.
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; 4],
}

impl Permutation {
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        let mut k = seed;
        let keys = std::array::from_fn(|_| {
            k = splitmix64(k);
            k
        });
        Self { n, half_bits, keys }
    }

    /// The image of `i` (< n).
    pub fn apply(&self, i: u64) -> u64 {
        if self.n <= 1 {
            return 0;
        }
        let mut x = i;
        loop {
            x = self.round_trip(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn round_trip(&self, x: u64) -> u64 {
        let h = self.half_bits;
        let mask = (1u64 << h) - 1;
        let (mut l, mut r) = (x >> h, x & mask);
        for k in self.keys {
            let t = l ^ (splitmix64(r ^ k) & mask);
            l = r;
            r = t;
        }
        (l << h) | r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpora(weights: &[f64], windows: u64, rule: OnExhausted) -> Vec<MixerCorpus> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| MixerCorpus {
                name: format!("c{i}"),
                weight: w,
                windows,
                on_exhausted: rule,
            })
            .collect()
    }

    /// After every draw, every corpus's count is within one sequence of its target.
    fn assert_exact(weights: &[f64], draws: u64) {
        let mut m = Mixer::new(corpora(weights, 1 << 20, OnExhausted::Repeat), 7).expect("mixer");
        let total: f64 = weights.iter().sum();
        let mut worst = 0f64;
        for n in 1..=draws {
            m.next().expect("draw");
            for (c, w) in m.counts().iter().zip(weights) {
                worst = worst.max((*c as f64 - w / total * n as f64).abs());
            }
        }
        assert!(worst < 1.0, "{weights:?}: error {worst} sequences");
    }

    #[test]
    fn two_corpora_exact() {
        for almr in [0.33, 0.5, 0.1, 0.01, 0.9, 1.0 / 3.0] {
            assert_exact(&[1.0 - almr, almr], 5000);
        }
        // ALMR 33 %: after 100 sequences, exactly 33 are Chinese.
        let mut m = Mixer::new(corpora(&[0.67, 0.33], 1000, OnExhausted::Repeat), 0).expect("m");
        m.fast_forward(100).expect("draws");
        assert_eq!(m.counts(), &[67, 33]);
    }

    #[test]
    fn three_or_more_corpora_exact() {
        assert_exact(&[0.57, 0.33, 0.10], 5000);
        assert_exact(&[0.2, 0.3, 0.5], 5000);
        // Random weights, up to 8 corpora (the greedy largest-deficit rule fails these).
        let mut s = 1u64;
        for k in 2..=8usize {
            for _ in 0..20 {
                let w: Vec<f64> = (0..k)
                    .map(|_| {
                        s = splitmix64(s);
                        ((s >> 11) as f64 / (1u64 << 53) as f64).powi(3) + 1e-3
                    })
                    .collect();
                assert_exact(&w, 800);
            }
        }
    }

    #[test]
    fn deterministic_by_seed() {
        let draws = |seed| {
            let mut m =
                Mixer::new(corpora(&[0.6, 0.4], 50, OnExhausted::Repeat), seed).expect("mixer");
            (0..200)
                .map(|_| m.next().expect("draw"))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        // Resuming from a count gives the same continuation.
        let all = draws(3);
        let mut m = Mixer::new(corpora(&[0.6, 0.4], 50, OnExhausted::Repeat), 3).expect("m");
        m.fast_forward(123).expect("replay");
        let rest: Vec<Draw> = (123..200).map(|_| m.next().expect("draw")).collect();
        assert_eq!(rest, all[123..]);
    }

    #[test]
    fn epochs_cover_every_window_once_in_new_orders() {
        let mut m = Mixer::new(corpora(&[1.0], 37, OnExhausted::Repeat), 9).expect("m");
        let e0: Vec<u64> = (0..37).map(|_| m.next().expect("d").window).collect();
        let e1: Vec<Draw> = (0..37).map(|_| m.next().expect("d")).collect();
        assert!(e1.iter().all(|d| d.epoch == 1));
        let e1: Vec<u64> = e1.iter().map(|d| d.window).collect();
        for e in [&e0, &e1] {
            let mut sorted = e.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..37).collect::<Vec<_>>());
        }
        assert_ne!(e0, e1);
        assert_ne!(e0, (0..37).collect::<Vec<_>>(), "shuffled");
    }

    #[test]
    fn exhaustion_rules() {
        // en repeats, zh stops: the run ends when zh is due with no window left.
        let cs = vec![
            MixerCorpus {
                name: "en".into(),
                weight: 0.5,
                windows: 3,
                on_exhausted: OnExhausted::Repeat,
            },
            MixerCorpus {
                name: "zh".into(),
                weight: 0.5,
                windows: 4,
                on_exhausted: OnExhausted::Stop,
            },
        ];
        let mut m = Mixer::new(cs, 0).expect("m");
        let mut got = Vec::new();
        let stop = loop {
            match m.next() {
                Ok(d) => got.push(d),
                Err(e) => break e,
            }
        };
        assert_eq!(stop.name, "zh");
        // Alternating (ties go to the first corpus): en, zh, en, zh, ..., en; then zh is due.
        assert_eq!(
            m.counts(),
            &[5, 4],
            "en went into a second epoch, zh stopped"
        );
        assert_eq!(
            got.iter().filter(|d| d.corpus == 0 && d.epoch == 1).count(),
            2
        );
        // The error repeats: the state did not move.
        assert_eq!(m.next().expect_err("still exhausted"), stop);
        assert!(Mixer::new(corpora(&[1.0, 0.0], 3, OnExhausted::Stop), 0).is_err());
        assert!(Mixer::new(corpora(&[1.0], 0, OnExhausted::Stop), 0).is_err());
    }

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1u64, 2, 3, 10, 1000, 4097] {
            let p = Permutation::new(n, n * 31);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let j = p.apply(i) as usize;
                assert!(!seen[j], "n={n}: {j} twice");
                seen[j] = true;
            }
        }
    }
}
