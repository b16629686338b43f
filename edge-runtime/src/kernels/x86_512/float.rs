//! Float weights with AVX-512: F16 rows against four f32 activation rows at once (prefill and
//! speculative checks), summed in exactly the order of the AVX2 one-row kernel.

use std::arch::x86_64::*;

use super::super::x86_base::f16_at;
use super::super::Dot4;
use llama_spec::gguf::GgmlType;

/// Four-activation-row kernels for float weight types.
pub fn row_dot4(ty: GgmlType) -> Option<Dot4> {
    match ty {
        GgmlType::F16 => Some(Dot4::F32(dot4_f16)),
        _ => None,
    }
}

/// `x86::dot_f16` for four activation rows: each 16 halves are widened once and used four
/// times, and the loads per FMA drop from one to about 0.6 (the one-row kernel is bound by
/// loads, not FMAs). `dot_f16` keeps four 8-lane accumulators over 32-element steps; here
/// one 16-lane register holds its accumulators 0 and 1, another 2 and 3, so every lane does
/// the same FMAs in the same order and the sums are bit-identical.
fn dot4_f16(row: &[u8], a: [&[f32]; 4]) -> [f32; 4] {
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    fn inner(row: &[u8], a: [&[f32]; 4]) -> [f32; 4] {
        let n = a
            .iter()
            .map(|x| x.len())
            .min()
            .unwrap_or(0)
            .min(row.len() / 2);
        let np = n & !31;
        let mut acc = [[_mm512_setzero_ps(); 2]; 4];
        for i in (0..np).step_by(32) {
            for (h, j) in [i, i + 16].into_iter().enumerate() {
                // SAFETY: j + 16 <= np <= n: 32 bytes of `row` and 16 floats of each `a[t]`
                // are readable; unaligned loads.
                let w =
                    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(row.as_ptr().add(2 * j).cast())) };
                for t in 0..4 {
                    // SAFETY: as above.
                    let x = unsafe { _mm512_loadu_ps(a[t].as_ptr().add(j)) };
                    acc[t][h] = _mm512_fmadd_ps(w, x, acc[t][h]);
                }
            }
        }
        // A plain loop, not a closure: a closure would not inherit the target features and
        // its intrinsics would become calls.
        let mut out = [0f32; 4];
        for (t, o) in out.iter_mut().enumerate() {
            // The upper 8 lanes (AVX-512F has no f32x8 extract; DQ does).
            let hi = |v: __m512| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let (a0, a1) = (_mm512_castps512_ps256(acc[t][0]), hi(acc[t][0]));
            let (a2, a3) = (_mm512_castps512_ps256(acc[t][1]), hi(acc[t][1]));
            // dot_f16's reduction: (a0 + a2) + (a1 + a3), halves, two horizontal adds.
            let y = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
            let t0 = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
            let t1 = _mm_hadd_ps(t0, t0);
            let mut sum = f64::from(_mm_cvtss_f32(_mm_hadd_ps(t1, t1)));
            for (i, &x) in a[t][..n].iter().enumerate().skip(np) {
                sum += f64::from(f16_at(row, 2 * i) * x);
            }
            *o = sum as f32;
        }
        out
    }
    // SAFETY: handed out by `row_dot4` only after `Isa::detect` confirmed AVX-512F (and with
    // it AVX2, FMA and F16C).
    unsafe { inner(row, a) }
}
