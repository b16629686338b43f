//! Every row kernel (scalar and SIMD) returns exactly the float that llama.cpp's own AVX2 kernel
//! `ggml_vec_dot_<type>` returned for the same quantized inputs
//! (tests/fixtures/runtime/kernel_dots.*, made by make_kernel_fixtures.py).
//!
//! Q4_0 (and Q4_K, below) llama.cpp computes two ways on AVX2: `ggml_vec_dot_q4_0_q8_0` (checked
//! here against `scalar::dot_q4_0_lanes`) and, for the matrices its CPU backend repacks (every
//! Q4_0 weight with rows in groups of 8, so every real one), a gemv with one accumulator per row,
//! which our Q4_0 kernels follow; that path is checked end to end in llama_cpp.rs. Q4_K is
//! the same (`scalar::dot_q4_k` here; `dot_q4_k_seq`, checked end to end in quantize's tests,
//! in the model).
//!
//! Q5_K matches once its `summs += dmin * hsum` is an FMA, as GCC contracts it in ggml's build.

use crate::common;

use edge_runtime::kernels::{quantize_q8, quantize_q8k, scalar, BlockQ8, BlockQ8K, Isa, RowDot};
use llama_spec::gguf::GgmlType;

fn run(k: RowDot, w: &[u8], x: &[f32]) -> f32 {
    match k {
        RowDot::F32(f) => f(w, x),
        RowDot::Q8(f) => {
            let mut b = vec![BlockQ8::default(); x.len() / 32];
            quantize_q8(x, &mut b);
            f(w, &b)
        }
        RowDot::Q8K(f) => {
            let mut b = vec![BlockQ8K::default(); x.len() / 256];
            quantize_q8k(x, &mut b);
            f(w, &b)
        }
    }
}

#[test]
fn row_kernels_equal_ggml_bit_for_bit() {
    let meta = common::fixture("runtime/kernel_dots.json");
    let n = meta["n"].as_u64().expect("n") as usize;
    let raw = std::fs::read(common::repo().join("tests/fixtures/runtime/kernel_dots.f32"))
        .expect("inputs");
    let floats: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let isa = Isa::detect();
    let mut failures = Vec::new();
    for (i, case) in meta["cases"].as_array().expect("cases").iter().enumerate() {
        let ty = GgmlType::from_name(case["type"].as_str().expect("type")).expect("known type");
        let w = &floats[2 * n * i..2 * n * i + n];
        let x = &floats[2 * n * i + n..2 * n * (i + 1)];
        let want = case["dot_bits"].as_u64().expect("bits") as u32;
        let q = llama_spec::quant::quantize_to_vec(ty, w).expect("quantize");
        let kernels = if ty == GgmlType::Q4_0 {
            vec![("scalar lanes", Some(RowDot::Q8(scalar::dot_q4_0_lanes)))]
        } else if ty == GgmlType::Q4_K {
            vec![("scalar lanes", Some(RowDot::Q8K(scalar::dot_q4_k)))]
        } else {
            vec![
                ("scalar", scalar::row_dot(ty)),
                (isa.name(), isa.row_dot(ty)),
            ]
        };
        for (name, k) in kernels {
            let got = run(k.expect("kernel"), &q, x);
            if got.to_bits() != want {
                failures.push(format!(
                    "{ty} case {i} {name}: {got} vs ggml {}",
                    f32::from_bits(want)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
