//! Converted JSONL files mixed by weight into one, reproducibly (`data mix`, C-SFT-E's mix).

use std::path::{Path, PathBuf};

use crate::data::{splitmix64, DataError, Permutation};

/// One input of [`mix`]: a converted JSONL file and its share of the output.
#[derive(Debug, Clone, PartialEq)]
pub struct MixInput {
    pub path: PathBuf,
    pub weight: f64,
}

/// What [`mix`] took from each input.
#[derive(Debug, Clone, PartialEq)]
pub struct MixReport {
    /// Per input: lines available, lines taken.
    pub taken: Vec<(usize, usize)>,
    pub total: usize,
}

/// Lines of `inputs` in proportion to their weights, shuffled together, into `out`. `total`
/// lines in all (default: as many as the scarcest input allows without repeating a line).
/// An input asked for more lines than it has repeats whole passes over it only with
/// `repeat`. The same inputs and `seed` give the same file.
pub fn mix(
    inputs: &[MixInput],
    out: &Path,
    total: Option<usize>,
    repeat: bool,
    seed: u64,
) -> Result<MixReport, DataError> {
    if inputs.is_empty()
        || inputs
            .iter()
            .any(|i| !(i.weight > 0.0 && i.weight.is_finite()))
    {
        return Err(DataError::Mixture(
            "mix: give at least one input, each with a positive weight".into(),
        ));
    }
    let mut lines = Vec::with_capacity(inputs.len());
    for i in inputs {
        let text = std::fs::read_to_string(&i.path).map_err(DataError::io(&i.path))?;
        let l: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        if l.is_empty() {
            return Err(DataError::format(&i.path, "no lines to mix"));
        }
        lines.push(l);
    }
    let sum: f64 = inputs.iter().map(|i| i.weight).sum();
    let shares: Vec<f64> = inputs.iter().map(|i| i.weight / sum).collect();
    let total = total.unwrap_or_else(|| {
        lines
            .iter()
            .zip(&shares)
            .map(|(l, s)| (l.len() as f64 / s).floor() as usize)
            .min()
            .unwrap_or(0)
    });
    // Largest remainders: the counts sum to `total` exactly.
    let exact: Vec<f64> = shares.iter().map(|s| s * total as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let short = total - counts.iter().sum::<usize>();
    for &k in order.iter().take(short) {
        counts[k] += 1;
    }
    let mut picked: Vec<&str> = Vec::with_capacity(total);
    for (k, (l, &want)) in lines.iter().zip(&counts).enumerate() {
        if want > l.len() && !repeat {
            return Err(DataError::format(
                &inputs[k].path,
                format!(
                    "{want} lines wanted for its weight, {} there: lower --total, or pass --repeat",
                    l.len()
                ),
            ));
        }
        for j in 0..want {
            let pass = (j / l.len()) as u64;
            let perm = Permutation::new(
                l.len() as u64,
                splitmix64(seed ^ splitmix64(k as u64) ^ splitmix64(pass.wrapping_add(1))),
            );
            picked.push(&l[perm.apply((j % l.len()) as u64) as usize]);
        }
    }
    let perm = Permutation::new(picked.len() as u64, splitmix64(seed));
    let mut text = String::new();
    for j in 0..picked.len() {
        text.push_str(picked[perm.apply(j as u64) as usize]);
        text.push('\n');
    }
    llama_spec::atomic::write_atomic(out, text.as_bytes()).map_err(DataError::io(out))?;
    Ok(MixReport {
        taken: lines.iter().map(Vec::len).zip(counts).collect(),
        total,
    })
}
