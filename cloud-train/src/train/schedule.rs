//! Learning-rate schedules: linear warmup, then constant, linear or cosine decay to a floor.
//! The same numbers as transformers' `get_linear_schedule_with_warmup`,
//! `get_cosine_with_min_lr_schedule_with_warmup` and `get_constant_schedule_with_warmup`
//! (which LLaMA-Factory uses), step `s` counted from 0 at the first optimizer step.

/// The shape after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    Constant,
    Linear,
    Cosine,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    /// The floor reached at the last step (transformers: `min_lr`; 0 for `linear`).
    pub min_lr: f64,
    pub warmup: u64,
    pub total: u64,
    pub decay: Decay,
}

impl Schedule {
    /// The learning rate of optimizer step `s` (0-based).
    pub fn lr(&self, s: u64) -> f64 {
        if s < self.warmup {
            return self.peak * s as f64 / self.warmup.max(1) as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((s - self.warmup) as f64 / span).clamp(0.0, 1.0);
        let factor = match self.decay {
            Decay::Constant => return self.peak,
            Decay::Linear => 1.0 - progress,
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        self.min_lr + (self.peak - self.min_lr) * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let s = Schedule {
            peak: 1e-3,
            min_lr: 0.0,
            warmup: 10,
            total: 110,
            decay: Decay::Linear,
        };
        // transformers: lr_lambda(s) = s / warmup, then (total - s) / (total - warmup).
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-15);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15);
        assert!((s.lr(60) - 5e-4).abs() < 1e-15);
        assert_eq!(s.lr(110), 0.0);
        let c = Schedule {
            min_lr: 1e-4,
            decay: Decay::Cosine,
            ..s.clone()
        };
        assert!((c.lr(60) - (1e-4 + 0.9e-3 * 0.5)).abs() < 1e-15);
        assert!((c.lr(110) - 1e-4).abs() < 1e-15);
        let k = Schedule {
            decay: Decay::Constant,
            ..s
        };
        assert_eq!(k.lr(100), 1e-3);
    }
}
