//! Kernels against f32 math: each scalar kernel equals the dot product of the dequantized
//! weights with the dequantized activations (up to float summation order); each SIMD kernel
//! equals its scalar twin.

use super::ahead::AheadLines;
use super::*;
use llama_spec::quant;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
}

pub(super) fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|i| lcg(&mut s) * (1.0 + (i % 7) as f32))
        .collect()
}

/// Every weight type that both llama-spec quantizes and the runtime multiplies.
fn types() -> impl Iterator<Item = GgmlType> {
    quant::SUPPORTED.iter().copied().filter(|&t| supported(t))
}

/// f32 reference: dequantized weights · dequantized activations.
fn reference(ty: GgmlType, w: &[u8], x: &[f32]) -> f64 {
    let n = x.len();
    let wf = quant::dequantize_to_vec(ty, w, n).expect("dequantize");
    let xf: Vec<f32> = match ActFormat::for_weights(ty).expect("supported") {
        ActFormat::F32 => x.to_vec(),
        ActFormat::Q8 => {
            let mut b = vec![BlockQ8::default(); n / QK];
            quantize_q8(x, &mut b);
            b.iter()
                .flat_map(|b| b.qs.map(|q| q as f32 * b.d))
                .collect()
        }
        ActFormat::Q8K => {
            let mut b = vec![BlockQ8K::default(); n / QK_K];
            quantize_q8k(x, &mut b);
            b.iter()
                .flat_map(|b| b.qs.map(|q| q as f32 * b.d))
                .collect()
        }
    };
    wf.iter()
        .zip(&xf)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

/// `count` random activation rows of `n` values quantized to blocks of `qk`; row `t` from
/// `random(n, seed(t))`.
fn act_rows<B: Clone + Default>(
    count: u64,
    n: usize,
    qk: usize,
    quantize: fn(&[f32], &mut [B]),
    seed: impl Fn(u64) -> u64,
) -> Vec<Vec<B>> {
    (0..count)
        .map(|t| {
            let mut b = vec![B::default(); n / qk];
            quantize(&random(n, seed(t)), &mut b);
            b
        })
        .collect()
}

pub(super) fn run(k: RowDot, w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    match k {
        RowDot::F32(f) => f(w, x),
        RowDot::Q8(f) => {
            let mut b = vec![BlockQ8::default(); n / QK];
            quantize_q8(x, &mut b);
            f(w, &b)
        }
        RowDot::Q8K(f) => {
            let mut b = vec![BlockQ8K::default(); n / QK_K];
            quantize_q8k(x, &mut b);
            f(w, &b)
        }
    }
}

#[test]
fn scalar_kernels_equal_f32_math() {
    let n = 1024;
    for ty in types() {
        for seed in 0..4 {
            let wf = random(n, seed * 2 + 1);
            let x = random(n, seed * 2 + 2);
            let w = quant::quantize_to_vec(ty, &wf).expect("quantize");
            let want = reference(ty, &w, &x);
            let got = run(scalar::row_dot(ty).expect("kernel"), &w, &x);
            let scale: f64 = x.iter().map(|v| f64::from(v.abs())).sum::<f64>() * 10.0;
            // The Q4_1/Q5_1 offset term uses ggml's f16-rounded block sums.
            let tol = scale
                * if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                    2e-4
                } else {
                    1e-6
                };
            assert!(
                (f64::from(got) - want).abs() <= tol,
                "{ty}: scalar {got} vs f32 reference {want}"
            );
        }
    }
}

#[test]
fn activation_quantization_matches_ggml_q8_k_reference() {
    let x = random(512, 9);
    let mut ours = vec![BlockQ8K::default(); 2];
    quantize_q8k(&x, &mut ours);
    let ggml = quant::quantize_to_vec(GgmlType::Q8_K, &x).expect("q8_k");
    for (b, g) in ours.iter().zip(ggml.chunks(292)) {
        assert_eq!(b.d.to_le_bytes(), g[0..4]);
        assert!(b.qs.iter().zip(&g[4..260]).all(|(&q, &r)| q as u8 == r));
        for (j, s) in b.bsums.iter().enumerate() {
            assert_eq!(s.to_le_bytes(), g[260 + 2 * j..262 + 2 * j]);
        }
    }
}

/// A four-activation-row kernel gives each row exactly what the one-row kernel gives, for
/// activations of either block format `B` (`qk` elements per block).
#[allow(clippy::too_many_arguments)]
fn check_four<B: Clone + Default>(
    ty: GgmlType,
    w: &[u8],
    n: usize,
    seed: u64,
    qk: usize,
    quantize: fn(&[f32], &mut [B]),
    four: fn(&[u8], [&[B]; 4]) -> [f32; 4],
    one: fn(&[u8], &[B]) -> f32,
) {
    let xs = act_rows(4, n, qk, quantize, |i| seed * 7 + i);
    let got = four(w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
    for i in 0..4 {
        assert_eq!(
            got[i].to_bits(),
            one(w, &xs[i]).to_bits(),
            "{ty}: 4-row kernel, row {i}"
        );
    }
}

/// AVX2 kernels on x86_64, NEON ones on aarch64 (run under qemu-aarch64 in CI).
#[test]
fn simd_kernels_equal_scalar_bit_for_bit() {
    let isa = Isa::detect();
    if !isa.avx2 && !isa.neon {
        return test_support::skip(
            "edge-runtime::simd_kernels_equal_scalar_bit_for_bit",
            "this CPU has no AVX2/FMA/F16C or NEON",
        );
    }
    eprintln!("{} kernels against the scalar twins", isa.name());
    let n = 2048;
    for ty in types() {
        let (Some(fast), Some(slow)) = (isa.row_dot(ty), scalar::row_dot(ty)) else {
            continue;
        };
        for seed in 0..8 {
            let w = quant::quantize_to_vec(ty, &random(n, seed * 2 + 11)).expect("quantize");
            let x = random(n, seed * 2 + 12);
            let (a, b) = (run(fast, &w, &x), run(slow, &w, &x));
            assert_eq!(a.to_bits(), b.to_bits(), "{ty}: simd {a} vs scalar {b}");
            match (isa.row_dot4(ty), slow) {
                (None, _) => {}
                (Some(Dot4::Q8(four)), RowDot::Q8(one)) => {
                    check_four(ty, &w, n, seed, QK, quantize_q8, four, one)
                }
                (Some(Dot4::Q8K(four)), RowDot::Q8K(one)) => {
                    check_four(ty, &w, n, seed, QK_K, quantize_q8k, four, one)
                }
                (Some(Dot4::F32(four)), RowDot::F32(one)) => {
                    let copy: fn(&[f32], &mut [f32]) = |x, out| out.copy_from_slice(x);
                    check_four(ty, &w, n, seed, 1, copy, four, one)
                }
                _ => panic!("{ty}: the 4-row kernel's activation format is not the 1-row one's"),
            }
        }
    }
}

/// The 8-weight-row kernels give each row exactly what the scalar one-row kernel gives, for
/// rows long and short (18 blocks: SmolLM2's 576 columns) and rows adjacent in one matrix.
#[cfg(target_arch = "x86_64")]
#[test]
fn simd_eight_row_kernels_equal_scalar_bit_for_bit() {
    let isa = Isa::detect();
    if !isa.avx2 {
        return test_support::skip(
            "edge-runtime::simd_eight_row_kernels_equal_scalar_bit_for_bit",
            "this CPU has no AVX2/FMA/F16C",
        );
    }
    let mut checked = 0;
    for ty in types() {
        let (Some(eight), Some(RowDot::Q8(one))) = (isa.row_dot8(ty), scalar::row_dot(ty)) else {
            continue;
        };
        for (n, seed) in [(576, 1u64), (2048, 2), (1536, 3)] {
            let w = quant::quantize_to_vec(ty, &random(8 * n, seed * 5 + 1)).expect("quantize");
            let rb = w.len() / 8;
            let rows: [&[u8]; 8] = std::array::from_fn(|r| &w[r * rb..(r + 1) * rb]);
            let mut x = vec![BlockQ8::default(); n / QK];
            quantize_q8(&random(n, seed * 5 + 2), &mut x);
            let got = eight(rows, &x);
            for r in 0..8 {
                assert_eq!(
                    got[r].to_bits(),
                    one(rows[r], &x).to_bits(),
                    "{ty}: 8-row kernel, row {r}, {n} columns"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no 8-row kernel was tested");
}

/// The 4x4 tile kernels give each (activation row, weight row) exactly the scalar one-row
/// kernel's result.
#[cfg(target_arch = "x86_64")]
#[test]
fn simd_tile_kernels_equal_scalar_bit_for_bit() {
    let isa = Isa::detect();
    if !isa.avx2 {
        return test_support::skip(
            "edge-runtime::simd_tile_kernels_equal_scalar_bit_for_bit",
            "this CPU has no AVX2/FMA/F16C",
        );
    }
    let mut checked = 0;
    for ty in types() {
        let (Some(tile), Some(RowDot::Q8(one))) = (isa.tile4x4(ty), scalar::row_dot(ty)) else {
            continue;
        };
        for (n, seed) in [(576, 1u64), (2048, 2)] {
            let w = quant::quantize_to_vec(ty, &random(4 * n, seed * 3 + 1)).expect("quantize");
            let rb = w.len() / 4;
            let rows: [&[u8]; 4] = std::array::from_fn(|r| &w[r * rb..(r + 1) * rb]);
            let xs = act_rows(4, n, QK, quantize_q8, |t| seed * 3 + 2 + 7 * t);
            let got = tile(rows, [&xs[0], &xs[1], &xs[2], &xs[3]]);
            for t in 0..4 {
                for r in 0..4 {
                    assert_eq!(
                        got[t][r].to_bits(),
                        one(rows[r], &xs[t]).to_bits(),
                        "{ty}: tile, activation row {t}, weight row {r}, {n} columns"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no tile kernel was tested");
}

/// One [`Rows16`] kernel against its scalar twin, bit for bit, for 1 and 4 activation rows, on
/// exactly 16 rows (the last row ends the buffer, as at the end of a matrix).
#[cfg(target_arch = "x86_64")]
/// With `packed`, the kernel reads the rows [`repack`]ed.
fn check16<A: Clone + Default>(
    ty: GgmlType,
    k: Rows16<A>,
    twin: fn(&[u8], &[A]) -> f32,
    qa: fn(&[f32], &mut [A]),
    block: usize,
    packed: bool,
) {
    for (n, seed) in [(576, 1u64), (1536, 2)] {
        if n % block != 0 {
            continue;
        }
        let w = quant::quantize_to_vec(ty, &random(ROWS16 * n, seed * 5 + 1)).expect("quantize");
        let rb = w.len() / ROWS16;
        let p = packed.then(|| repack::pack(ty, &w, ROWS16, n, 1).expect("packs"));
        let kw = p.as_ref().map_or(&w[..], |p| p.as_slice());
        let xs = act_rows(4, n, block, qa, |t| seed * 5 + 2 + 7 * t);
        let four = (k.four)(kw, rb, [&xs[0], &xs[1], &xs[2], &xs[3]]);
        for t in 0..4 {
            let one = (k.one)(kw, rb, &xs[t]);
            for r in 0..ROWS16 {
                let want = twin(&w[r * rb..(r + 1) * rb], &xs[t]).to_bits();
                assert_eq!(
                    four[t][r].to_bits(),
                    want,
                    "{ty}: 4 rows, t {t}, r {r}, {n}"
                );
                assert_eq!(one[r].to_bits(), want, "{ty}: 1 row, t {t}, r {r}, {n}");
            }
        }
    }
}

/// Every 16-row kernel `kernel` hands out, against its scalar twin (weights packed where
/// `packed`); returns the types checked.
#[cfg(target_arch = "x86_64")]
fn check_all16(kernel: impl Fn(GgmlType) -> Option<Dot16>, packed: bool) -> Vec<GgmlType> {
    let mut checked = vec![];
    for ty in types() {
        let Some(k) = kernel(ty) else { continue };
        let q8 = |k, twin| check16(ty, k, twin, quantize_q8, QK, packed);
        let q8k = |k, twin| check16(ty, k, twin, quantize_q8k, QK_K, packed);
        match (ty, k) {
            (GgmlType::Q4_0, Dot16::Q8(k)) => q8(k, scalar::dot_q4_0),
            (GgmlType::Q4_1, Dot16::Q8(k)) => q8(k, scalar::dot_q4_1),
            (GgmlType::Q5_0, Dot16::Q8(k)) => q8(k, scalar::dot_q5_0),
            (GgmlType::Q5_1, Dot16::Q8(k)) => q8(k, scalar::dot_q5_1),
            (GgmlType::Q8_0, Dot16::Q8(k)) => q8(k, scalar::dot_q8_0),
            (GgmlType::Q4_K, Dot16::Q8K(k)) => q8k(k, scalar::dot_q4_k_seq),
            (GgmlType::Q5_K, Dot16::Q8K(k)) => q8k(k, scalar::dot_q5_k),
            (GgmlType::Q6_K, Dot16::Q8K(k)) => q8k(k, scalar::dot_q6_k),
            _ => panic!("{ty}: a 16-row kernel without a scalar twin in this test"),
        }
        checked.push(ty);
    }
    checked
}

/// The AVX-512 16-row kernels give each (activation row, weight row) exactly their scalar
/// twin's result, from the file's layout and from packed rows.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_16_row_kernels_equal_scalar_bit_for_bit() {
    let isa = Isa::detect();
    if !isa.avx512 {
        return test_support::skip(
            "edge-runtime::avx512_16_row_kernels_equal_scalar_bit_for_bit",
            "this CPU has no AVX-512F/BW/VNNI",
        );
    }
    let file = check_all16(|ty| isa.rows16(ty), false);
    assert_eq!(file.len(), 8, "16-row kernels tested: {file:?}");
    let packed = check_all16(|ty| isa.packed16(ty), true);
    assert_eq!(packed.len(), 8, "packed kernels tested: {packed:?}");
}

/// The AVX2 kernels over packed groups of 16 rows (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K) give each
/// (activation row, weight row) exactly their scalar twin's result, for 1 and 4 tokens.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_packed_kernels_equal_scalar_bit_for_bit() {
    let isa = Isa::detect().without_avx512();
    if !isa.avx2 {
        return test_support::skip(
            "edge-runtime::avx2_packed_kernels_equal_scalar_bit_for_bit",
            "this CPU has no AVX2/FMA/F16C",
        );
    }
    let packed = check_all16(|ty| isa.packed16(ty), true);
    assert_eq!(
        packed,
        [
            GgmlType::Q4_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K
        ],
        "packed AVX2 kernels tested"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_attention_and_swiglu_equal_scalar_bit_for_bit() {
    use super::attend::{attend_scalar, Head, MAX_HEAD_DIM};
    use half::f16;
    if !Isa::detect().avx2 {
        return test_support::skip(
            "edge-runtime::simd_attention_and_swiglu_equal_scalar_bit_for_bit",
            "this CPU has no AVX2/FMA/F16C",
        );
    }
    // Head dimensions of SmolLM2 (64) and Llama-3 (128), one more below, and one whose P·V
    // takes the scalar path (not a multiple of 32); groups of 1 to 5 query heads on one K/V
    // head (the kernels take up to 4 at a time, fewer for the wider heads).
    for hd in [32, 64, 128, 256, 72] {
        assert!(MAX_HEAD_DIM >= hd);
        let n_ctx = 300;
        let k: Vec<f16> = random(n_ctx * hd, 3)
            .iter()
            .map(|&v| f16::from_f32(v))
            .collect();
        let v: Vec<f16> = random(n_ctx * hd, 4)
            .iter()
            .map(|&v| f16::from_f32(v * 0.1))
            .collect();
        for heads in 1..=5 {
            let q = random(heads * hd, 5 + heads as u64);
            let per = n_ctx + 8;
            for n_kv in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 257, 300] {
                let h = Head {
                    q: &q,
                    head_dim: hd,
                    k_cache: &k,
                    v_cache: &v,
                    n_kv,
                    scale: 0.125,
                };
                let (mut s1, mut s2) = (vec![0f32; heads * per], vec![0f32; heads * per]);
                let (mut o1, mut o2) = (vec![0f32; heads * hd], vec![0f32; heads * hd]);
                attend_scalar(&h, &mut s1, &mut o1);
                super::x86::attend(&h, &mut s2, &mut o2, &mut AheadLines::none());
                assert!(
                    o1.iter().zip(&o2).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "AVX2, hd {hd}, {heads} heads, n_kv {n_kv}: {o1:?} vs {o2:?}"
                );
                if Isa::detect().avx512 {
                    let mut o3 = vec![0f32; heads * hd];
                    super::x86_512::attend(&h, &mut s2, &mut o3, &mut AheadLines::none());
                    assert!(
                        o1.iter().zip(&o3).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "AVX-512, hd {hd}, {heads} heads, n_kv {n_kv}: {o1:?} vs {o3:?}"
                    );
                }
            }
        }
    }
    for n in [8, 13, 1536] {
        let g = random(n, 6);
        let x: Vec<f32> = random(n, 7).iter().map(|v| v * 12.0).collect();
        let (mut a, mut b) = (x.clone(), x);
        ggml_math::swiglu(&mut a, &g);
        super::x86::swiglu(&mut b, &g);
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "swiglu n={n}"
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_activation_quantization_equals_scalar() {
    let isa = Isa::detect();
    if !isa.avx2 {
        return test_support::skip(
            "edge-runtime::simd_activation_quantization_equals_scalar",
            "this CPU has no AVX2/FMA/F16C",
        );
    }
    for seed in 0..6 {
        let mut x = random(4096, seed + 40);
        x[7] = 0.0;
        x[100..132].fill(0.0); // an all-zero block
        x[200] = 1e-30;
        let (mut a, mut b) = (vec![BlockQ8::default(); 128], vec![BlockQ8::default(); 128]);
        quantize_q8(&x, &mut a);
        isa.quantize_q8(&x, &mut b);
        for (p, q) in a.iter().zip(&b) {
            assert_eq!(
                (p.d.to_bits(), p.s.to_bits(), p.qs),
                (q.d.to_bits(), q.s.to_bits(), q.qs)
            );
        }
    }
}

/// `Isa::detect` finds every feature the kernel reports in /proc/cpuinfo, so a regression in
/// detection (an AVX-512 host served AVX2 kernels, say) fails here rather than passing
/// silently as a skipped test. `EDGE_RUNTIME_ISA` caps are honoured.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn detect_finds_every_feature_proc_cpuinfo_lists() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split(':').nth(1))
        .expect("a flags line")
        .split_whitespace()
        .collect();
    let has = |f: &str| flags.contains(&f);
    let cap = std::env::var("EDGE_RUNTIME_ISA").unwrap_or_default();
    let scalar = cap == "scalar" || std::env::var_os("EDGE_RUNTIME_SCALAR").is_some();
    let avx2 = !scalar && has("avx2") && has("fma") && has("f16c");
    let avx512 = avx2 && cap != "avx2" && has("avx512f") && has("avx512bw") && has("avx512_vnni");
    let isa = Isa::detect();
    assert_eq!(
        (isa.avx2, isa.avx512),
        (avx2, avx512),
        "detected {} for flags {flags:?}",
        isa.name()
    );
}

/// The read-bandwidth passes read every byte: each instruction set's XOR of the lines, with
/// and without prefetching, equals the scalar twin's on random bytes.
#[test]
fn read_passes_equal_scalar() {
    let buf: Vec<u8> = random(4096, 77).iter().map(|v| v.to_bits() as u8).collect();
    let want = scalar::xor_lines(&buf);
    assert_ne!(want, [0; 8]);
    for isa in [Isa::detect(), Isa::detect().without_avx512()] {
        for ahead in [0, 4096] {
            assert_eq!(
                isa.xor_lines(&buf, ahead),
                want,
                "{} ahead {ahead}",
                isa.name()
            );
        }
    }
}
