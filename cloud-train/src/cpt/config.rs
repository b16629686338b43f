//! The `cpt` TOML config: the shared `[model]`, `[train]` and `[output]` sections (see
//! `train::config`) and the `[data]` mixture: corpora by role and the ALMR.

use std::path::PathBuf;

use crate::data::OnExhausted;
use crate::train::config::{
    Invalid, ModelSection, OutputSection, RunConfig, RunSections, TrainSection,
};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CptConfig {
    pub model: ModelSection,
    pub data: DataSection,
    pub train: TrainSection,
    pub output: OutputSection,
}

/// What role a corpus plays in the mixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The original language(s): they get what the others leave.
    Base,
    /// The additional language: together these get `almr` of the tokens.
    Additional,
    /// Domain corpora (code, math, ...): each gets its own `fraction`.
    Domain,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSection {
    pub name: String,
    /// A directory written by `cloud-train data prepare`.
    pub path: PathBuf,
    pub role: Role,
    /// Share within its role (base, additional); default 1.
    pub weight: Option<f64>,
    /// Fraction of all tokens (domain corpora only).
    pub fraction: Option<f64>,
    #[serde(default = "repeat")]
    pub on_exhausted: OnExhausted,
}

fn repeat() -> OnExhausted {
    OnExhausted::Repeat
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Tokens per training sequence (the paper: 2048).
    pub seq_len: usize,
    /// Additional Language Mixture Ratio: the fraction of training tokens from the
    /// `additional` corpora.
    pub almr: f64,
    #[serde(default)]
    pub seed: u64,
    /// Validation sequences per corpus (from each corpus's `val` split).
    #[serde(default = "default_val_sequences")]
    pub val_sequences: usize,
    pub corpus: Vec<CorpusSection>,
}

fn default_val_sequences() -> usize {
    16
}

impl RunConfig for CptConfig {
    fn sections(&self) -> RunSections<'_> {
        RunSections::new(&self.model, &self.train, &self.output)
    }

    fn validate_own(&self) -> Result<(), Invalid> {
        if self.data.seq_len < 2 {
            return Err(Invalid::new("[data] seq_len must be at least 2"));
        }
        let t = &self.train;
        if t.steps.is_none() == t.tokens.is_none() || t.epochs.is_some() {
            return Err(Invalid::new(
                "[train]: give exactly one of `steps` or `tokens` (`epochs` is for sft/dpo)",
            ));
        }
        self.weights().map(|_| ())
    }
}

impl CptConfig {
    /// Each corpus's target fraction of training sequences (= of tokens).
    pub fn weights(&self) -> Result<Vec<f64>, Invalid> {
        let d = &self.data;
        if d.corpus.is_empty() {
            return Err(Invalid::new("[data]: no [[data.corpus]]"));
        }
        if !(0.0..=1.0).contains(&d.almr) {
            return Err(Invalid(format!("[data] almr {} must be in [0, 1]", d.almr)));
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &d.corpus {
            if !names.insert(&c.name) {
                return Err(Invalid(format!("[data]: two corpora named {:?}", c.name)));
            }
            if c.weight.is_some_and(|w| !(w > 0.0 && w.is_finite())) {
                return Err(Invalid(format!(
                    "corpus {:?}: weight must be positive",
                    c.name
                )));
            }
            match (c.role, c.fraction) {
                (Role::Domain, Some(f)) if f > 0.0 && f < 1.0 => {}
                (Role::Domain, _) => {
                    return Err(Invalid(format!(
                        "corpus {:?}: a domain corpus needs a `fraction` in (0, 1)",
                        c.name
                    )))
                }
                (_, Some(_)) => {
                    return Err(Invalid(format!(
                        "corpus {:?}: `fraction` is for domain corpora; base and additional corpora share by `weight`",
                        c.name
                    )))
                }
                _ => {}
            }
        }
        let domain: f64 = d.corpus.iter().filter_map(|c| c.fraction).sum();
        let base_share = 1.0 - d.almr - domain;
        let role_total = |r: Role| -> f64 {
            d.corpus
                .iter()
                .filter(|c| c.role == r)
                .map(|c| c.weight.unwrap_or(1.0))
                .sum()
        };
        let (base_w, add_w) = (role_total(Role::Base), role_total(Role::Additional));
        if d.almr > 0.0 && add_w == 0.0 {
            return Err(Invalid(format!(
                "[data] almr {} but no corpus has role = \"additional\"",
                d.almr
            )));
        }
        if base_share < -1e-9 {
            return Err(Invalid(format!(
                "[data] almr {} plus domain fractions {domain} exceed 1",
                d.almr
            )));
        }
        if base_share > 1e-9 && base_w == 0.0 {
            return Err(Invalid(format!(
                "[data] {base_share:.4} of the tokens are left for base corpora, but none has role = \"base\""
            )));
        }
        let weights: Vec<f64> = d
            .corpus
            .iter()
            .map(|c| match c.role {
                Role::Base => base_share.max(0.0) * c.weight.unwrap_or(1.0) / base_w,
                Role::Additional => d.almr * c.weight.unwrap_or(1.0) / add_w,
                Role::Domain => c.fraction.unwrap_or(0.0),
            })
            .collect();
        if let Some((c, _)) = d.corpus.iter().zip(&weights).find(|(_, &w)| w <= 0.0) {
            return Err(Invalid(format!(
                "corpus {:?} gets no tokens at almr {}: remove it or change the mixture",
                c.name, d.almr
            )));
        }
        Ok(weights)
    }

    /// Optimizer steps of the run.
    pub fn total_steps(&self) -> u64 {
        let per_step = (self.train.gbs * self.data.seq_len) as u64;
        self.train
            .steps
            .unwrap_or_else(|| self.train.tokens.unwrap_or(0) / per_step.max(1))
    }

    pub fn warmup_steps(&self) -> u64 {
        self.train.warmup(self.total_steps())
    }

    /// What a resumed run must share with the run it continues: the data it sees and the
    /// batch geometry. (Learning rates and output settings may change.)
    pub fn resume_key(&self) -> serde_json::Value {
        let corpora: Vec<serde_json::Value> = self
            .data
            .corpus
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "path": c.path, "role": c.role}))
            .collect();
        serde_json::json!({
            "seq_len": self.data.seq_len, "almr": self.data.almr, "seed": self.data.seed,
            "weights": self.weights().unwrap_or_default(), "corpora": corpora,
            "mbs": self.train.mbs, "gbs": self.train.gbs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<CptConfig, Invalid> {
        let text = format!(
            r#"
[model]
config = "m.json"
[data]
seq_len = 16
almr = 0.33
{extra}
[train]
mbs = 2
gbs = 4
steps = 3
lr = 1e-3
[output]
dir = "out"
save_every = 2
"#
        );
        let c: CptConfig = toml::from_str(&text).map_err(|e| Invalid(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// A `[[data.corpus]]` table.
    fn corpus(name: &str, role: &str, extra: &str) -> String {
        format!("[[data.corpus]]\nname = {name:?}\npath = \"d/{name}\"\nrole = {role:?}\n{extra}\n")
    }

    #[test]
    fn mixture_fractions_by_role() {
        let c =
            config(&(corpus("en", "base", "") + &corpus("zh", "additional", ""))).expect("valid");
        let w = c.weights().expect("weights");
        assert!((w[0] - 0.67).abs() < 1e-12 && (w[1] - 0.33).abs() < 1e-12);
        let c = config(
            &[
                corpus("en", "base", ""),
                corpus("code", "domain", "fraction = 0.1"),
                corpus("zh-web", "additional", "weight = 3"),
                corpus("zh-books", "additional", ""),
            ]
            .concat(),
        )
        .expect("valid");
        let w = c.weights().expect("weights");
        let want = [0.57, 0.1, 0.33 * 0.75, 0.33 * 0.25];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{w:?}");
        }
    }

    #[test]
    fn bad_mixtures_are_explained() {
        let e = config(&corpus("en", "base", "")).expect_err("no additional");
        assert!(e.0.contains("additional"), "{e}");
        let e = config(&corpus("zh", "additional", "")).expect_err("no base");
        assert!(e.0.contains("base"), "{e}");
        let e = config("[[data.corpus]]\nname = \"x\"\npath = \"p\"\nrole = \"domain\"\n")
            .expect_err("domain without fraction")
            .0;
        assert!(e.contains("fraction"), "{e}");
        let e = config("bogus = 1\n").expect_err("unknown key").0;
        assert!(e.contains("bogus"), "{e}");
    }
}
