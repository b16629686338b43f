//! Bit-exactness against fixtures made by ggml itself (see tests/fixtures/make_quant_fixtures.py).

use super::*;
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/quant")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const CASES: &[(&str, GgmlType)] = &[
    ("f16", GgmlType::F16),
    ("bf16", GgmlType::BF16),
    ("q4_0", GgmlType::Q4_0),
    ("q4_1", GgmlType::Q4_1),
    ("q5_0", GgmlType::Q5_0),
    ("q5_1", GgmlType::Q5_1),
    ("q8_0", GgmlType::Q8_0),
    ("q4_K", GgmlType::Q4_K),
    ("q5_K", GgmlType::Q5_K),
    ("q6_K", GgmlType::Q6_K),
    ("q8_K", GgmlType::Q8_K),
];

fn first_diff_block(a: &[u8], b: &[u8], block: usize) -> Option<usize> {
    a.chunks(block)
        .zip(b.chunks(block))
        .position(|(x, y)| x != y)
}

#[test]
fn quantize_matches_ggml_bit_for_bit() {
    let x = f32s(&fixture("input.f32"));
    assert_eq!(x.len(), 32 * 256);
    for &(name, ty) in CASES {
        let expected = fixture(&format!("{name}.bin"));
        let ours = quantize_to_vec(ty, &x).expect("quantize");
        assert_eq!(ours.len(), expected.len(), "{name}: length");
        if let Some(b) = first_diff_block(&ours, &expected, ty.type_size() as usize) {
            panic!("{name}: block {b} differs from ggml");
        }
    }
}

#[test]
fn dequantize_matches_ggml_bit_for_bit() {
    for &(name, ty) in CASES {
        let q = fixture(&format!("{name}.bin"));
        let expected = f32s(&fixture(&format!("{name}.deq.f32")));
        let ours = dequantize_to_vec(ty, &q, expected.len()).expect("dequantize");
        for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{name}: value {i}: {a} vs ggml {b}"
            );
        }
    }
}

#[test]
fn round_trip_error_is_bounded_and_requantization_is_stable() {
    let x = f32s(&fixture("input.f32"));
    for &(name, ty) in CASES {
        let q = quantize_to_vec(ty, &x).expect("quantize");
        let y = dequantize_to_vec(ty, &q, x.len()).expect("dequantize");
        // Error relative to each 256-value block's largest magnitude.
        let bound = match ty {
            GgmlType::F16 | GgmlType::BF16 => 4e-3,
            GgmlType::Q8_0 | GgmlType::Q8_K => 5e-3,
            GgmlType::Q6_K => 0.03,
            GgmlType::Q5_K | GgmlType::Q5_0 | GgmlType::Q5_1 => 0.07,
            // 4 bits: the extreme opposite to the scale's sign clamps to 7*d = 7/8 amax.
            _ => 0.126,
        };
        for (b, (xb, yb)) in x.chunks(256).zip(y.chunks(256)).enumerate() {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            // Below ~1e-4 the f16 scales (and F16 itself) underflow: no relative bound there.
            if amax < 1e-4 {
                continue;
            }
            let err = xb
                .iter()
                .zip(yb)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= bound * amax + 1e-30,
                "{name}: block {b} error {err} > {bound} * {amax}"
            );
        }
        // Dequantized values are representable: quantizing them again must reproduce them.
        let q2 = quantize_to_vec(ty, &y).expect("requantize");
        let y2 = dequantize_to_vec(ty, &q2, x.len()).expect("dequantize");
        let drift = y
            .iter()
            .zip(&y2)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let amax = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            drift <= bound * amax,
            "{name}: requantization drift {drift}"
        );
    }
}

#[test]
fn errors_are_typed_not_panics() {
    let x = vec![0f32; 100];
    assert!(matches!(
        quantize_to_vec(GgmlType::Q4_K, &x),
        Err(QuantError::NotBlockAligned { .. })
    ));
    assert!(matches!(
        dequantize(GgmlType::Q8_0, &[0u8; 33], &mut [0f32; 32]),
        Err(QuantError::WrongLength { .. })
    ));
    assert!(matches!(
        quantize_to_vec(GgmlType::IQ2_XS, &[0f32; 256]),
        Err(QuantError::Unsupported(_))
    ));
}

#[test]
fn round_half_away_is_roundf() {
    let mut xs = vec![
        0.0f32,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -1.5,
        2.5,
        -2.5,
        127.5,
        -127.5,
        f32::NAN,
    ];
    for i in -300..300 {
        let h = i as f32 + 0.5;
        xs.extend([
            h,
            h.next_up(),
            h.next_down(),
            i as f32,
            (i as f32).next_up(),
        ]);
    }
    // 0.49999997 + 0.5 rounds to 1.0 in f32: the classic wrong `(x + 0.5) as i32`.
    xs.push(0.5f32.next_down());
    for x in xs {
        let want = if x.is_nan() { 0 } else { x.round() as i32 };
        assert_eq!(legacy::round_half_away(x), want, "{x}");
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// The 16-lane Q6_K fit equals 16 scalar fits (`make_qx_quants`, rmse_type 1) bit for
        /// bit, an all-zero sub-block included.
        #[test]
        fn qx_lanes_equal_the_scalar_fit(
            v in proptest::collection::vec(-3f32..3f32, 256),
            zero in 0usize..16,
        ) {
            let mut v = v;
            v[16 * zero..16 * zero + 16].fill(0.0);
            let mut xs = [[0f32; 16]; 16];
            for k in 0..16 {
                for i in 0..16 {
                    xs[i][k] = v[16 * k + i];
                }
            }
            let mut l16 = [0i8; 256];
            let s16 = kquants::make_qx_quants_x16(32, &xs, &mut l16);
            for k in 0..16 {
                let mut l = [0i8; 16];
                let s = kquants::make_qx_quants(32, &v[16 * k..16 * k + 16], &mut l, 1);
                prop_assert_eq!(s.to_bits(), s16[k].to_bits(), "lane {}", k);
                prop_assert_eq!(&l[..], &l16[16 * k..16 * k + 16], "lane {} levels", k);
            }
        }

        /// The 8-lane K-quant fit equals 8 scalar fits (the line-by-line port of ggml's
        /// `make_qkx2_quants`) bit for bit, flat and all-positive sub-blocks included.
        #[test]
        fn qkx2_lanes_equal_the_scalar_fit(
            v in proptest::collection::vec(-3f32..3f32, 256),
            flat in 0usize..8,
            positive in 0usize..8,
            nmax in prop_oneof![Just(15), Just(31)],
        ) {
            let mut v = v;
            v[32 * flat..32 * flat + 32].fill(0.25);
            for x in &mut v[32 * positive..32 * positive + 32] {
                *x = x.abs() + 0.5;
            }
            let (rmin, nstep) = if nmax == 15 { (-1.0, 20) } else { (-0.5, 15) };
            let mut xs = [[0f32; 8]; 32];
            let mut ws = [[0f32; 8]; 32];
            for k in 0..8 {
                for i in 0..32 {
                    xs[i][k] = v[32 * k + i];
                    ws[i][k] = 0.5 + v[32 * k + i].abs();
                }
            }
            let mut l8 = [0u8; 256];
            let (s8, m8) = kquants::make_qkx2_quants_x8(nmax, &xs, &ws, &mut l8, rmin, 0.1, nstep);
            for k in 0..8 {
                let w: Vec<f32> = (0..32).map(|i| ws[i][k]).collect();
                let (mut l, mut aux) = ([0u8; 32], [0u8; 32]);
                let (s, m) = kquants::make_qkx2_quants(
                    nmax, &v[32 * k..32 * k + 32], &w, &mut l, &mut aux, rmin, 0.1, nstep, false,
                );
                prop_assert_eq!((s.to_bits(), m.to_bits()), (s8[k].to_bits(), m8[k].to_bits()), "lane {}", k);
                prop_assert_eq!(&l[..], &l8[32 * k..32 * k + 32], "lane {} levels", k);
            }
        }

        /// Any input within F16 range quantizes without panicking and stays within a loose error bound.
        #[test]
        fn any_finite_input(v in proptest::collection::vec(-6e4f32..6e4f32, 256)) {
            let amax = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            for &(_, ty) in CASES {
                let q = quantize_to_vec(ty, &v).expect("quantize");
                let y = dequantize_to_vec(ty, &q, v.len()).expect("dequantize");
                for (a, b) in v.iter().zip(&y) {
                    prop_assert!((a - b).abs() <= 0.15 * amax + 1e-6, "{ty}: {a} -> {b}");
                }
            }
        }
    }
}
