//! Learning rates as small as the paper's optimum (1e-9): how much of an f32 AdamW update is
//! lost on real weights, and the compensated (Kahan) update that keeps it.

use burn::prelude::*;
use cloud_train::train::optim::{adamw_update, AdamWSettings};
use llama_spec::gguf::GgufFile;

/// The shipped SmolLM2-135M weights (its Q4_1 GGUF, every tensor dequantized to f32).
fn smollm2_weights() -> Vec<f32> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        p.display()
    );
    let file = GgufFile::open(&p).expect("open");
    let mut all = Vec::new();
    for t in file.tensors() {
        let v = llama_spec::quant::dequantize_to_vec(
            t.ggml_type,
            file.tensor_data(t),
            t.n_elements() as usize,
        )
        .expect("dequantize");
        all.extend(v);
    }
    all
}

/// An AdamW step moves each weight by about `lr` (the bias-corrected m / sqrt(v) is ~1 for a
/// steady gradient). At LR 1e-9, f32 holds that change only where it is at least half the
/// weight's rounding step: on SmolLM2's weights most updates round to nothing, and where they
/// do not they are rounded to a whole step (too large).
#[test]
fn plain_f32_loses_most_of_an_lr_1e9_update_on_real_weights() {
    let w = smollm2_weights();
    assert!(w.len() > 100_000_000, "{} weights", w.len());
    let d = 1e-9f32;
    let (mut unchanged, mut realized, mut wanted) = (0usize, 0f64, 0f64);
    for &x in &w {
        let y = x - d;
        if y == x {
            unchanged += 1;
        }
        realized += f64::from(x - y).abs();
        wanted += f64::from(d);
    }
    let lost = unchanged as f64 / w.len() as f64;
    let err = (realized - wanted).abs() / wanted;
    println!(
        "LR 1e-9 on SmolLM2-135M's {} weights: {:.1} % of the updates are lost, the rest rounded: \
         the sum of the applied changes is off by {:.1} % of the sum wanted",
        w.len(),
        100.0 * lost,
        100.0 * err
    );
    // Observed on the shipped file: 83.9 % lost, the applied sum off by 77.6 %.
    assert!(lost > 0.75, "{lost}");
    assert!(err > 0.5, "{err}");
}

/// 1000 AdamW steps at LR 1e-9 with a steady gradient on weights from 0.001 to 1: plain f32
/// leaves every weight of magnitude >= 2^-5 exactly where it was, the compensated update moves
/// every weight by the 1e-6 wanted, to within one rounding step.
#[test]
fn compensated_update_keeps_an_lr_1e9_update_that_plain_f32_loses() {
    let device = Device::flex();
    let start: Vec<f32> = (0..64)
        .map(|i| 0.001 * 1.115f32.powi(i) * if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let (lr, steps) = (1e-9, 1000u64);
    let run = |compensated: bool| -> Vec<f32> {
        let settings = AdamWSettings {
            weight_decay: 0.0,
            compensated,
            ..AdamWSettings::default()
        };
        let mut p = Tensor::<2>::from_data(TensorData::new(start.clone(), [1, 64]), &device);
        let g = Tensor::<2>::ones([1, 64], &device);
        let mut state = None;
        for step in 1..=steps {
            let (next, m) = adamw_update(&settings, step, p, g.clone(), state, lr, false);
            (p, state) = (next, Some(m));
        }
        p.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32")
    };
    let (plain, kahan) = (run(false), run(true));
    let wanted = lr * steps as f64;
    let (mut frozen, mut big) = (0, 0);
    for ((&w0, &p), &k) in start.iter().zip(&plain).zip(&kahan) {
        let ulp = f64::from(w0.abs()) * f64::from(f32::EPSILON);
        if w0.abs() >= 1.0 / 32.0 {
            big += 1;
            frozen += usize::from(p == w0);
        }
        // Adam's step is lr * m/(sqrt(v)+eps) with m/sqrt(v) = 1 - O(eps): ~1e-6 in all.
        let moved = f64::from(w0) - f64::from(k);
        assert!(
            (moved - wanted).abs() <= ulp + 1e-3 * wanted,
            "{w0}: compensated moved {moved:e}, wanted {wanted:e} (ulp {ulp:e})"
        );
    }
    assert!(big >= 20, "{big} weights of magnitude >= 2^-5");
    assert_eq!(frozen, big, "plain f32 left every weight >= 2^-5 in place");
}
