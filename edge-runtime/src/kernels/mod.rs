//! Quantized dot-product kernels. Weights stay in their GGUF block format (borrowed from the
//! mmap); activations are quantized once per matmul to the format each weight type pairs with
//! (as in ggml: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants), and rows
//! are reduced with integer dot products.
//!
//! Every kernel has a scalar twin in [`scalar`]; SIMD versions are chosen at run time
//! ([`Isa::detect`]) and tested against the scalar ones.

pub mod ahead;
mod attend;
pub mod attention;
pub mod ggml_math;
pub mod matmul;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod pool;
pub mod prefetch;
pub mod repack;
pub mod scalar;
pub mod speed;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_512;
#[cfg(target_arch = "x86_64")]
mod x86_base;
#[cfg(target_arch = "x86_64")]
mod x86_kquant;
#[cfg(target_arch = "x86_64")]
mod x86_packed;

use llama_spec::gguf::GgmlType;

pub const QK: usize = 32;
pub const QK_K: usize = 256;

/// A quantized activation block for the 32-element formats: ggml's Q8_0 and Q8_1 in one.
/// `d` is the f16-rounded scale (as ggml stores it), `s` the f16-rounded `d * sum(qs)` that
/// Q4_1/Q5_1 dot products need for their offset term, `sum` the exact `sum(qs)` (the offset
/// correction of the AVX-512 kernels, which multiply unsigned bytes).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockQ8 {
    pub d: f32,
    pub s: f32,
    pub sum: i32,
    pub qs: [i8; QK],
}

/// ggml's Q8_K: the activation format of the K-quants.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl Default for BlockQ8K {
    fn default() -> Self {
        Self {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// The activation format a weight type is multiplied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActFormat {
    F32,
    Q8,
    Q8K,
}

impl ActFormat {
    pub fn for_weights(ty: GgmlType) -> Option<Self> {
        use GgmlType as T;
        match ty {
            T::F32 | T::F16 | T::BF16 => Some(Self::F32),
            T::Q4_0 | T::Q4_1 | T::Q5_0 | T::Q5_1 | T::Q8_0 => Some(Self::Q8),
            T::Q4_K | T::Q5_K | T::Q6_K => Some(Self::Q8K),
            _ => None,
        }
    }
}

/// Weight types the runtime can multiply with.
pub fn supported(ty: GgmlType) -> bool {
    ActFormat::for_weights(ty).is_some()
}

fn f16(b: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Quantize to [`BlockQ8`] with ggml's SIMD rounding (`id = 127/amax`, ties to even).
pub fn quantize_q8(x: &[f32], out: &mut [BlockQ8]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        b.d = half::f16::from_f32(d).to_f32();
        b.s = half::f16::from_f32(d * sum as f32).to_f32();
        b.sum = sum;
    }
}

/// Quantize to [`BlockQ8K`] exactly as ggml's `quantize_row_q8_K` (llama-spec's reference).
pub fn quantize_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (d, qs, bsums) = llama_spec::quant::quantize_block_q8_k(xb);
        *b = BlockQ8K { d, qs, bsums };
    }
}

/// Row dot-product kernels for one weight type, resolved once per matmul.
#[derive(Clone, Copy)]
pub enum RowDot {
    F32(fn(&[u8], &[f32]) -> f32),
    Q8(fn(&[u8], &[BlockQ8]) -> f32),
    Q8K(fn(&[u8], &[BlockQ8K]) -> f32),
}

/// A Q8-activation kernel over four activation rows at once (same results as four calls).
pub type RowDot4 = fn(&[u8], [&[BlockQ8]; 4]) -> [f32; 4];

/// A Q8-activation kernel over eight weight rows at once (same results as eight calls).
pub type RowDot8 = fn([&[u8]; 8], &[BlockQ8]) -> [f32; 8];

/// A Q8-activation kernel over a tile of 4 weight rows x 4 activation rows: `out[t][r]`.
pub type Tile4x4 = fn([&[u8]; 4], [&[BlockQ8]; 4]) -> [[f32; 4]; 4];

/// Rows per call of the [`Rows16`] kernels.
pub const ROWS16: usize = 16;

/// A [`Rows16`] kernel against 4 activation rows.
pub type Rows16x4<A> = fn(&[u8], usize, [&[A]; 4]) -> [[f32; ROWS16]; 4];

/// Kernels over 16 consecutive weight rows (`w` starts at the first, rows are `rb` bytes apart)
/// against 1 or 4 activation rows of blocks `A`: `out[t][r]`.
pub struct Rows16<A> {
    pub one: fn(&[u8], usize, &[A]) -> [f32; ROWS16],
    pub four: Rows16x4<A>,
    /// Whether to use them for decode (fewer than 4 activation rows) too, where they beat the
    /// AVX2 kernels there.
    pub decode: bool,
}

// Manual impls: a derive would require `A: Copy`.
impl<A> Clone for Rows16<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A> Copy for Rows16<A> {}

/// [`Rows16`] kernels, by activation format.
#[derive(Clone, Copy)]
pub enum Dot16 {
    Q8(Rows16<BlockQ8>),
    Q8K(Rows16<BlockQ8K>),
}

impl Dot16 {
    pub fn decode(&self) -> bool {
        match self {
            Self::Q8(k) => k.decode,
            Self::Q8K(k) => k.decode,
        }
    }
}

/// Four-row kernels, by activation format.
#[derive(Clone, Copy)]
pub enum Dot4 {
    F32(fn(&[u8], [&[f32]; 4]) -> [f32; 4]),
    Q8(RowDot4),
    Q8K(fn(&[u8], [&[BlockQ8K]; 4]) -> [f32; 4]),
}

/// Which instruction-set extensions the kernels may use, detected at run time. The fields are
/// crate-private: an `Isa` claiming a feature the CPU lacks would run unsupported instructions,
/// so values come only from [`Isa::detect`], [`Isa::scalar`] and [`Isa::without_avx512`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isa {
    pub(crate) avx2: bool,
    /// AVX-512F, AVX-512BW and AVX-512 VNNI (implies `avx2` here).
    pub(crate) avx512: bool,
    /// NEON (aarch64).
    pub(crate) neon: bool,
}

impl Isa {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            // `EDGE_RUNTIME_ISA=scalar|avx2` caps what is used (comparisons, benchmarks).
            let cap = std::env::var("EDGE_RUNTIME_ISA").unwrap_or_default();
            let scalar = cap == "scalar" || std::env::var_os("EDGE_RUNTIME_SCALAR").is_some();
            let avx2 = !scalar
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            let avx512 = avx2
                && cap != "avx2"
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni");
            Self {
                avx2,
                avx512,
                neon: false,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            let scalar = std::env::var("EDGE_RUNTIME_ISA").is_ok_and(|v| v == "scalar")
                || std::env::var_os("EDGE_RUNTIME_SCALAR").is_some();
            Self {
                neon: !scalar && std::arch::is_aarch64_feature_detected!("neon"),
                ..Self::scalar()
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Self::scalar()
        }
    }

    /// The scalar reference kernels only.
    pub fn scalar() -> Self {
        Self {
            avx2: false,
            avx512: false,
            neon: false,
        }
    }

    /// At most AVX2 (no AVX-512), where detected.
    pub fn without_avx512(self) -> Self {
        Self {
            avx512: false,
            ..self
        }
    }

    pub fn name(&self) -> &'static str {
        if self.avx512 {
            "avx512-vnni"
        } else if self.avx2 {
            "avx2"
        } else if self.neon {
            "neon"
        } else {
            "scalar"
        }
    }

    /// [`scalar::xor_lines`] of `buf` (whole steps of 4 lines) with this instruction set's
    /// widest loads, prefetching `ahead` bytes on where it is not 0 (the scalar loop never
    /// prefetches).
    pub fn xor_lines(&self, buf: &[u8], ahead: usize) -> [u64; 8] {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            // SAFETY: `avx512` is set only where `detect` found AVX-512F.
            return unsafe { x86_512::xor_lines(buf, ahead) };
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is set only where `detect` found AVX2.
            return unsafe { x86_base::xor_lines_avx2(buf, ahead) };
        }
        let _ = ahead;
        scalar::xor_lines(buf)
    }

    /// 16-row kernels for `ty`, where they exist for this instruction set.
    pub fn rows16(&self, ty: GgmlType) -> Option<Dot16> {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            return x86_512::rows16(ty);
        }
        let _ = ty;
        None
    }

    /// 16-row kernels over [`repack`]ed groups of `ty`, where they exist for this instruction
    /// set.
    pub fn packed16(&self, ty: GgmlType) -> Option<Dot16> {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            return x86_512::packed16(ty);
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            return x86_packed::packed16(ty);
        }
        let _ = ty;
        None
    }

    /// A four-row kernel for `ty`, where one exists for this instruction set.
    pub fn row_dot4(&self, ty: GgmlType) -> Option<Dot4> {
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(k)) = (self.avx512, x86_512::row_dot4(ty)) {
            return Some(k);
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            return x86::row_dot4(ty);
        }
        let _ = ty;
        None
    }

    /// An eight-weight-row kernel for `ty`, where one exists for this instruction set.
    pub fn row_dot8(&self, ty: GgmlType) -> Option<RowDot8> {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            return x86::row_dot8(ty);
        }
        let _ = ty;
        None
    }

    /// A 4x4 tile kernel for `ty`, where one exists for this instruction set.
    pub fn tile4x4(&self, ty: GgmlType) -> Option<Tile4x4> {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            return x86::tile4x4(ty);
        }
        let _ = ty;
        None
    }

    /// [`quantize_q8`], with SIMD where available (identical results).
    pub fn quantize_q8(&self, x: &[f32], out: &mut [BlockQ8]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            return x86::quantize_q8(x, out);
        }
        quantize_q8(x, out)
    }

    /// The row kernel for weights of type `ty`.
    pub fn row_dot(&self, ty: GgmlType) -> Option<RowDot> {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            if let Some(k) = x86::row_dot(ty) {
                return Some(k);
            }
        }
        #[cfg(target_arch = "aarch64")]
        if self.neon {
            if let Some(k) = neon::row_dot(ty) {
                return Some(k);
            }
        }
        scalar::row_dot(ty)
    }
}

/// `x = silu(x) * g` as ggml computes it.
pub fn swiglu(isa: &Isa, x: &mut [f32], g: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx2 {
        return x86::swiglu(x, g);
    }
    let _ = isa;
    ggml_math::swiglu(x, g)
}

#[cfg(test)]
mod tests;
