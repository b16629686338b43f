//! Where software prefetches of weights go. Each line of weights is read once per token, so
//! a prefetch only has to bring it close before the kernel's load. Which cache level reads
//! fastest depends on the core: on an Intel Xeon (Emerald Rapids, 2 cores) prefetching into
//! L2 only decoded a 1B Q4_0 file at 18.1-19.0 against 16.6 t/s on one thread and 32-37
//! against 30-31 t/s on two (`edge-run bench`, alternated), as the L1 prefetches held the few
//! L1 fill buffers; on a Zen 4 host L1 was the faster (88-90 against 85-86 % of the bound).

use std::sync::OnceLock;

/// The cache level a prefetch of weights fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `prefetcht0`: into L1 (and the levels behind it).
    L1,
    /// `prefetcht1`: into L2, not L1.
    L2,
}

impl Level {
    /// For a CPU whose CPUID vendor string is `vendor`, unless `EDGE_RUNTIME_PREFETCH`
    /// (`setting`: `l1` or `l2`) says otherwise; other values are ignored, as with
    /// `EDGE_RUNTIME_ISA`.
    pub fn choose(vendor: &[u8], setting: Option<&str>) -> Self {
        match setting {
            Some("l1") => Self::L1,
            Some("l2") => Self::L2,
            _ if vendor == b"GenuineIntel" => Self::L2,
            _ => Self::L1,
        }
    }

    /// This machine's, chosen once.
    pub fn get() -> Self {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let setting = std::env::var("EDGE_RUNTIME_PREFETCH").ok();
            Self::choose(&vendor(), setting.as_deref())
        })
    }
}

/// The CPUID vendor string ("GenuineIntel", "AuthenticAMD"; empty off x86_64).
fn vendor() -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    {
        let r = std::arch::x86_64::__cpuid(0);
        [r.ebx, r.edx, r.ecx]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

/// Prefetches the line at `p` of weights into [`Level::get`]'s level.
#[inline(always)]
pub(crate) fn weights(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        // SAFETY: SSE is part of x86_64's baseline, and a prefetch is a hint that never
        // faults, whatever the address.
        unsafe {
            match Level::get() {
                Level::L1 => _mm_prefetch::<_MM_HINT_T0>(p.cast()),
                Level::L2 => _mm_prefetch::<_MM_HINT_T1>(p.cast()),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_prefetches_into_l2_others_into_l1_unless_set() {
        assert_eq!(Level::choose(b"GenuineIntel", None), Level::L2);
        assert_eq!(Level::choose(b"AuthenticAMD", None), Level::L1);
        assert_eq!(Level::choose(b"", None), Level::L1);
        assert_eq!(Level::choose(b"GenuineIntel", Some("l1")), Level::L1);
        assert_eq!(Level::choose(b"AuthenticAMD", Some("l2")), Level::L2);
        assert_eq!(Level::choose(b"AuthenticAMD", Some("L2")), Level::L1);
        assert_eq!(
            vendor().len(),
            if cfg!(target_arch = "x86_64") { 12 } else { 0 }
        );
    }
}
