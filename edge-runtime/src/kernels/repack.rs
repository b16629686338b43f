//! Weight matrices re-laid out once at load for the packed 16-row kernels (AVX-512, and AVX2
//! as two halves of 8 rows), as llama.cpp repacks Q4_0/Q4_K into interleaved row groups:
//! reading 16 rows' blocks straight from the file's layout takes 16 strided loads and an
//! in-register transpose per block, which costs more than the arithmetic at decode. Packed, the
//! same bytes come in a few aligned sequential loads.
//!
//! Layout of one group of 16 consecutive rows (its size is that of the 16 rows in the file, so
//! group `g` starts at `g * 16 * row_bytes`): first every block's *head* bytes (the f16 scale,
//! for the types that start or end with one) for the 16 rows, `[block][row][head]`; then every
//! block's *body* (the rest, a whole number of 32-bit words), transposed by words:
//! `[block][word][row]`, so that one 64-byte load gives word `j` of all 16 rows, lane `r`
//! holding row `r`.

use llama_spec::gguf::GgmlType;

/// Rows per packed group.
pub const GROUP: usize = 16;

/// How a block of one weight type splits into head and transposed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packing {
    /// Bytes per block.
    pub block: usize,
    /// Head bytes per block (the f16 scale).
    pub head: usize,
    /// Whether the head is the block's last bytes (Q6_K) rather than its first.
    pub head_at_end: bool,
}

impl Packing {
    pub fn body(&self) -> usize {
        self.block - self.head
    }
}

/// The packing of the types that have packed kernels.
pub fn packing(ty: GgmlType) -> Option<Packing> {
    let p = |block, head, head_at_end| {
        Some(Packing {
            block,
            head,
            head_at_end,
        })
    };
    match ty {
        GgmlType::Q4_0 => p(18, 2, false),
        GgmlType::Q4_1 => p(20, 4, false),
        GgmlType::Q5_0 => p(22, 2, false),
        GgmlType::Q5_1 => p(24, 4, false),
        GgmlType::Q8_0 => p(34, 2, false),
        GgmlType::Q4_K => p(144, 0, false),
        GgmlType::Q5_K => p(176, 0, false),
        GgmlType::Q6_K => p(210, 2, true),
        _ => None,
    }
}

/// A zeroed byte buffer in 2 MiB-aligned memory that the kernel is asked to back with huge
/// pages: the file's pages usually sit in huge page-cache folios, and the packed copy read
/// through 4 KiB pages instead decodes ~40 % slower (TLB misses; measured on a 1B Q4_0 file).
pub struct AlignedBytes {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
    len: usize,
}

// SAFETY: the buffer is owned (like a `Box<[u8]>`); shared access is read-only.
unsafe impl Send for AlignedBytes {}
// SAFETY: as above.
unsafe impl Sync for AlignedBytes {}

const HUGE_PAGE: usize = 2 << 20;

impl AlignedBytes {
    pub fn zeroed(len: usize) -> Self {
        let size = len.max(1).next_multiple_of(HUGE_PAGE);
        let layout = std::alloc::Layout::from_size_align(size, HUGE_PAGE).expect("layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        // The hint goes before the first write: pages faulted in before it stay 4 KiB.
        #[cfg(target_os = "linux")]
        // SAFETY: a hint on memory this buffer owns; it never changes the contents.
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_HUGEPAGE);
        }
        // SAFETY: `size` writable bytes at `ptr`.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, size) };
        Self { ptr, layout, len }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` holds `layout.size() >= len` initialized (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Fills the buffer with copies of `pattern` (the last one cut short).
    pub fn fill_with(&mut self, pattern: &[u8]) {
        for chunk in self.as_mut_slice().chunks_mut(pattern.len().max(1)) {
            chunk.copy_from_slice(&pattern[..chunk.len()]);
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the view unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// `data` (`rows` rows of `cols` values of `ty`, the file's layout) packed in groups of
/// [`GROUP`] rows, or `None` where `ty` has no packing or `rows` is not a whole number of groups.
/// Groups are packed on up to `threads` threads.
pub fn pack(
    ty: GgmlType,
    data: &[u8],
    rows: usize,
    cols: usize,
    threads: usize,
) -> Option<AlignedBytes> {
    let p = packing(ty)?;
    let rb = data.len() / rows.max(1);
    let nb = rb / p.block;
    if rows == 0 || !rows.is_multiple_of(GROUP) || rb * rows != data.len() || nb * p.block != rb {
        return None;
    }
    debug_assert_eq!(nb as u64 * ty.block_size(), cols as u64);
    let _ = cols;
    let mut out = AlignedBytes::zeroed(data.len());
    let group_bytes = GROUP * rb;
    let groups = rows / GROUP;
    let per_thread = groups.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (ci, chunk) in out
            .as_mut_slice()
            .chunks_mut(per_thread * group_bytes)
            .enumerate()
        {
            s.spawn(move || {
                for (gi, dst) in chunk.chunks_exact_mut(group_bytes).enumerate() {
                    let g = ci * per_thread + gi;
                    pack_group(p, &data[g * group_bytes..(g + 1) * group_bytes], rb, dst);
                }
            });
        }
    });
    Some(out)
}

/// One group of 16 rows (`src`, the file's layout) into `dst`.
fn pack_group(p: Packing, src: &[u8], rb: usize, dst: &mut [u8]) {
    let nb = rb / p.block;
    let (heads, bodies) = dst.split_at_mut(nb * GROUP * p.head);
    let words = p.body() / 4;
    for r in 0..GROUP {
        for i in 0..nb {
            let b = &src[r * rb + i * p.block..r * rb + (i + 1) * p.block];
            let (head, body) = if p.head_at_end {
                let (body, head) = b.split_at(p.body());
                (head, body)
            } else {
                b.split_at(p.head)
            };
            let h = (i * GROUP + r) * p.head;
            heads[h..h + p.head].copy_from_slice(head);
            let base = i * GROUP * p.body();
            for j in 0..words {
                let d = base + (j * GROUP + r) * 4;
                bodies[d..d + 4].copy_from_slice(&body[4 * j..4 * j + 4]);
            }
        }
    }
}

/// The file's layout of row `r` of a packed group (the inverse of [`pack`], for tests).
#[cfg(test)]
pub fn unpack_row(p: Packing, group: &[u8], rb: usize, r: usize) -> Vec<u8> {
    let nb = rb / p.block;
    let (heads, bodies) = group.split_at(nb * GROUP * p.head);
    let mut row = Vec::with_capacity(rb);
    for i in 0..nb {
        let h = (i * GROUP + r) * p.head;
        let head = &heads[h..h + p.head];
        let mut body = Vec::with_capacity(p.body());
        for j in 0..p.body() / 4 {
            let d = i * GROUP * p.body() + (j * GROUP + r) * 4;
            body.extend_from_slice(&bodies[d..d + 4]);
        }
        if p.head_at_end {
            row.extend_from_slice(&body);
            row.extend_from_slice(head);
        } else {
            row.extend_from_slice(head);
            row.extend_from_slice(&body);
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_a_permutation_of_every_group() {
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            let p = packing(ty).expect("packed type");
            let (rows, cols) = (48, 256);
            let x = super::super::tests::random(rows * cols, 9);
            let data = llama_spec::quant::quantize_to_vec(ty, &x).expect("quantize");
            let rb = data.len() / rows;
            for threads in [1, 2, 5] {
                let packed = pack(ty, &data, rows, cols, threads).expect("packs");
                assert_eq!(packed.as_slice().len(), data.len());
                assert_eq!(packed.as_slice().as_ptr() as usize % 64, 0, "aligned");
                for g in 0..rows / GROUP {
                    let group = &packed.as_slice()[g * GROUP * rb..(g + 1) * GROUP * rb];
                    for r in 0..GROUP {
                        let row = g * GROUP + r;
                        assert_eq!(
                            unpack_row(p, group, rb, r),
                            &data[row * rb..(row + 1) * rb],
                            "{ty} row {row}, {threads} threads"
                        );
                    }
                }
            }
            assert!(pack(ty, &data[..rb * 40], 40, cols, 1).is_none(), "40 rows");
        }
    }
}
