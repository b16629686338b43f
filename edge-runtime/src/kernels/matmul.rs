//! `out = x · Wᵀ` for a batch of activation rows against quantized weight matrices, split by
//! weight rows over the thread pool. Several matrices that share the same input (Q/K/V, or
//! gate/up) run in one parallel region to save barriers.

use llama_spec::gguf::GgmlType;

use super::pool::{run_of, split, SyncPtr, ThreadPool, CHUNKS_PER_THREAD};
use super::{
    quantize_q8k, ActFormat, BlockQ8, BlockQ8K, Dot16, Dot4, Isa, RowDot, RowDot8, Rows16, Tile4x4,
    QK, QK_K, ROWS16,
};

/// A weight matrix inside the mapped file: `rows` rows of `cols` elements of type `ty`, and
/// where the model made one, the same matrix [`repack`](super::repack)ed.
#[derive(Debug, Clone, Copy)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    pub packed: Option<&'a [u8]>,
}

impl QMatrix<'_> {
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// Reusable quantized-activation buffers (allocated once per session).
#[derive(Default)]
pub struct ActBuf {
    q8: Vec<BlockQ8>,
    q8k: Vec<BlockQ8K>,
}

impl ActBuf {
    pub fn with_capacity(max_rows: usize, max_cols: usize) -> Self {
        Self {
            q8: vec![BlockQ8::default(); max_rows * max_cols.div_ceil(QK)],
            q8k: vec![BlockQ8K::default(); max_rows * max_cols.div_ceil(QK_K)],
        }
    }

    /// Quantize `n` rows of `cols` from `x` into the formats `formats` need, in parallel.
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        pool: &ThreadPool,
        isa: &Isa,
        x: &[f32],
        n: usize,
        cols: usize,
        q8: bool,
        q8k: bool,
    ) {
        if q8 {
            let nb = cols / QK;
            let need = n * nb;
            if self.q8.len() < need {
                self.q8.resize(need, BlockQ8::default());
            }
            let out = SyncPtr(self.q8.as_mut_ptr());
            pool.for_range(n, &|rows| {
                for r in rows {
                    // SAFETY: row r's blocks [r*nb, (r+1)*nb) are written by this thread only.
                    let dst = unsafe { out.slice(r * nb, nb) };
                    isa.quantize_q8(&x[r * cols..(r + 1) * cols], dst);
                }
            });
        }
        if q8k {
            let nb = cols / QK_K;
            let need = n * nb;
            if self.q8k.len() < need {
                self.q8k.resize(need, BlockQ8K::default());
            }
            let out = SyncPtr(self.q8k.as_mut_ptr());
            pool.for_range(n, &|rows| {
                for r in rows {
                    // SAFETY: row r's blocks are written by this thread only.
                    let dst = unsafe { out.slice(r * nb, nb) };
                    quantize_q8k(&x[r * cols..(r + 1) * cols], dst);
                }
            });
        }
    }
}

/// Matrices that can share one parallel region (Q/K/V is the most).
pub const MAX_FUSED: usize = 4;

/// One matrix of a fused matmul and where its `n × rows` output goes.
pub struct MatOut<'a, 'b> {
    pub w: QMatrix<'a>,
    pub out: &'b mut [f32],
}

/// For every matrix `m` in `mats`: `m.out[t*rows + r] = dot(W_r, x_t)` for the `n` rows of `x`
/// (each `cols` long; all matrices must share `cols`).
pub fn matmul(
    pool: &ThreadPool,
    isa: &Isa,
    acts: &mut ActBuf,
    x: &[f32],
    n: usize,
    mats: &mut [MatOut],
) {
    let Some(cols) = mats.first().map(|m| m.w.cols) else {
        return;
    };
    assert!(mats
        .iter()
        .all(|m| m.w.cols == cols && m.out.len() >= n * m.w.rows));
    assert!(x.len() >= n * cols);
    // Fixed-size tables: the decode loop allocates nothing.
    assert!(
        mats.len() <= MAX_FUSED,
        "at most {MAX_FUSED} fused matrices"
    );
    let fmts = |f: ActFormat| {
        mats.iter()
            .any(|m| ActFormat::for_weights(m.w.ty) == Some(f))
    };
    let (need_q8, need_q8k) = (fmts(ActFormat::Q8), fmts(ActFormat::Q8K));
    acts.prepare(pool, isa, x, n, cols, need_q8, need_q8k);
    type Job<'w> = (SyncPtr<f32>, QMatrix<'w>, Kernels);
    let mut jobs: [Option<Job>; MAX_FUSED] = [None, None, None, None];
    for (slot, m) in jobs.iter_mut().zip(mats.iter_mut()) {
        let k = isa
            .row_dot(m.w.ty)
            .expect("weight types are checked at load");
        let ks = Kernels {
            one: k,
            four: isa.row_dot4(m.w.ty),
            eight: isa.row_dot8(m.w.ty),
            tile: isa.tile4x4(m.w.ty),
            x16: isa.rows16(m.w.ty),
            packed16: m.w.packed.and(isa.packed16(m.w.ty)),
        };
        *slot = Some((SyncPtr(m.out.as_mut_ptr()), m.w, ks));
    }
    let outs = &jobs[..mats.len()];
    let total_rows: usize = outs.iter().flatten().map(|(_, w, _)| w.rows).sum();
    let (q8, q8k) = (&acts.q8[..], &acts.q8k[..]);
    // Chunks of the global row range across all matrices, in whole groups of 16 rows (so that
    // the 8- and 16-row kernels see full groups; matrices have multiples of 16 rows).
    let g = ROWS16;
    let (n_groups, chunks) = groups_and_chunks(total_rows, pool.n_threads());
    pool.for_chunks(chunks, &|_, c| {
        let groups = split(n_groups, chunks, c);
        let mine = (groups.start * g).min(total_rows)..(groups.end * g).min(total_rows);
        let mut base = 0;
        for (out, w, k) in outs.iter().flatten() {
            let lo = mine.start.max(base);
            let hi = mine.end.min(base + w.rows);
            if lo < hi {
                rows_kernel(*k, w, x, q8, q8k, n, cols, (lo - base)..(hi - base), *out);
            }
            base += w.rows;
        }
    });
}

/// Groups of 16 rows over `total_rows`, and the chunks [`matmul`] cuts them into for
/// `n_threads` threads.
fn groups_and_chunks(total_rows: usize, n_threads: usize) -> (usize, usize) {
    let n_groups = total_rows.div_ceil(ROWS16);
    (n_groups, n_groups.min(n_threads * CHUNKS_PER_THREAD))
}

/// The weight bytes thread `tid` (of `n_threads`) reads first when [`matmul`] runs over
/// `mats`: the start of its run of chunks, in the layout its kernel reads (see
/// [`ThreadPool::prefetch_after`]). Empty where the thread has no rows.
pub fn first_bytes<'w>(isa: &Isa, mats: &[QMatrix<'w>], n_threads: usize, tid: usize) -> &'w [u8] {
    let total_rows: usize = mats.iter().map(|w| w.rows).sum();
    let (n_groups, chunks) = groups_and_chunks(total_rows, n_threads);
    let run = run_of(chunks, n_threads, tid);
    if run.is_empty() {
        return &[];
    }
    let mut row = split(n_groups, chunks, run.start).start * ROWS16;
    for w in mats {
        if row < w.rows {
            // The packed copy where this CPU's kernels read it (as `matmul`'s `packed16`).
            let data = w.packed.filter(|_| isa.packed16(w.ty).is_some());
            return &data.unwrap_or(w.data)[row * w.row_bytes()..];
        }
        row -= w.rows;
    }
    &[]
}

/// The kernels of one weight type: one row, four activation rows, eight weight rows.
#[derive(Clone, Copy)]
struct Kernels {
    one: RowDot,
    four: Option<Dot4>,
    eight: Option<RowDot8>,
    tile: Option<Tile4x4>,
    x16: Option<Dot16>,
    /// Set only for matrices that have a packed copy.
    packed16: Option<Dot16>,
}

#[allow(clippy::too_many_arguments)]
fn rows_kernel(
    ks: Kernels,
    w: &QMatrix,
    x: &[f32],
    q8: &[BlockQ8],
    q8k: &[BlockQ8K],
    n: usize,
    cols: usize,
    rows: std::ops::Range<usize>,
    out: SyncPtr<f32>,
) {
    // Tokens innermost: a weight row is read from memory once and reused from cache for all
    // `n` activation rows (the prefill case).
    let (k, k4) = (ks.one, ks.four);
    let (nb, nbk) = (cols / QK, cols / QK_K);
    let mut rows = rows;
    // Packed groups of 16 rows, where this range starts on a group (the rest below).
    if let (Some(k16), Some(packed), 0) = (ks.packed16, w.packed, rows.start % ROWS16) {
        let wp = QMatrix { data: packed, ..*w };
        match k16 {
            Dot16::Q8(k16) => rows16(k16, &wp, q8, nb, n, &mut rows, out),
            Dot16::Q8K(k16) => rows16(k16, &wp, q8k, nbk, n, &mut rows, out),
        }
    }
    // AVX-512: 16 weight rows at a time, against 4 activation rows and then the rest one by one.
    match ks.x16.filter(|k| n >= 4 || k.decode()) {
        Some(Dot16::Q8(k16)) => rows16(k16, w, q8, nb, n, &mut rows, out),
        Some(Dot16::Q8K(k16)) => rows16(k16, w, q8k, nbk, n, &mut rows, out),
        None => {}
    }
    // Decode (fewer than 4 activation rows): eight weight rows at a time. Prefill takes the
    // four-activation-row kernels below, which reuse each unpacked weight block 4 times.
    // Prefill: tiles of 4 weight rows x 4 activation rows, while there are 4 of each.
    if let (Some(tile), true) = (ks.tile, n >= 4) {
        while rows.len() >= 4 {
            let r0 = rows.start;
            let wr: [&[u8]; 4] = std::array::from_fn(|j| w.row(r0 + j));
            let mut t0 = 0;
            while t0 + 4 <= n {
                let a: [&[BlockQ8]; 4] =
                    std::array::from_fn(|i| &q8[(t0 + i) * nb..(t0 + i + 1) * nb]);
                let v = tile(wr, a);
                for (i, row) in v.iter().enumerate() {
                    for (j, &x) in row.iter().enumerate() {
                        // SAFETY: as below.
                        unsafe { out.write((t0 + i) * w.rows + r0 + j, x) };
                    }
                }
                t0 += 4;
            }
            // The last activation rows (fewer than 4), row by row.
            if let RowDot::Q8(f) = k {
                for t in t0..n {
                    for (j, wj) in wr.iter().enumerate() {
                        let x = f(wj, &q8[t * nb..(t + 1) * nb]);
                        // SAFETY: as below.
                        unsafe { out.write(t * w.rows + r0 + j, x) };
                    }
                }
            }
            rows.start += 4;
        }
    }
    let eight = if n < 4 || k4.is_none() {
        ks.eight
    } else {
        None
    };
    if let Some(k8) = eight {
        while rows.len() >= 8 {
            let r0 = rows.start;
            let wr: [&[u8]; 8] = std::array::from_fn(|j| w.row(r0 + j));
            for t in 0..n {
                let v = k8(wr, &q8[t * nb..(t + 1) * nb]);
                for (j, v) in v.into_iter().enumerate() {
                    // SAFETY: as below.
                    unsafe { out.write(t * w.rows + r0 + j, v) };
                }
            }
            rows.start += 8;
        }
    }
    for r in rows {
        let wr = w.row(r);
        let mut t0 = 0;
        if let Some(k4) = k4 {
            while t0 + 4 <= n {
                let v = match k4 {
                    Dot4::F32(f) => {
                        let a = |i: usize| &x[(t0 + i) * cols..(t0 + i + 1) * cols];
                        f(wr, [a(0), a(1), a(2), a(3)])
                    }
                    Dot4::Q8(f) => {
                        let a = |i: usize| &q8[(t0 + i) * nb..(t0 + i + 1) * nb];
                        f(wr, [a(0), a(1), a(2), a(3)])
                    }
                    Dot4::Q8K(f) => {
                        let a = |i: usize| &q8k[(t0 + i) * nbk..(t0 + i + 1) * nbk];
                        f(wr, [a(0), a(1), a(2), a(3)])
                    }
                };
                for (i, v) in v.into_iter().enumerate() {
                    // SAFETY: as below.
                    unsafe { out.write((t0 + i) * w.rows + r, v) };
                }
                t0 += 4;
            }
        }
        for t in t0..n {
            let v = match k {
                RowDot::F32(f) => f(wr, &x[t * cols..(t + 1) * cols]),
                RowDot::Q8(f) => f(wr, &q8[t * (cols / QK)..(t + 1) * (cols / QK)]),
                RowDot::Q8K(f) => f(wr, &q8k[t * (cols / QK_K)..(t + 1) * (cols / QK_K)]),
            };
            // SAFETY: (t, r) with r in this thread's disjoint row range; in bounds as asserted.
            unsafe { out.write(t * w.rows + r, v) };
        }
    }
}

/// Whole groups of 16 rows from the start of `rows` through a [`Rows16`] kernel; `rows` keeps
/// what is left (fewer than 16).
fn rows16<A>(
    k: Rows16<A>,
    w: &QMatrix,
    acts: &[A],
    nb: usize,
    n: usize,
    rows: &mut std::ops::Range<usize>,
    out: SyncPtr<f32>,
) {
    let rb = w.row_bytes();
    while rows.len() >= ROWS16 {
        let r0 = rows.start;
        let wr = &w.data[r0 * rb..(r0 + ROWS16) * rb];
        let mut t0 = 0;
        while t0 + 4 <= n {
            let a: [&[A]; 4] = std::array::from_fn(|i| &acts[(t0 + i) * nb..(t0 + i + 1) * nb]);
            for (i, v) in (k.four)(wr, rb, a).iter().enumerate() {
                for (j, &x) in v.iter().enumerate() {
                    // SAFETY: output (t, r) of this thread's rows is written by it only, and
                    // `matmul` checked `out` holds n x rows values.
                    unsafe { out.write((t0 + i) * w.rows + r0 + j, x) };
                }
            }
            t0 += 4;
        }
        for t in t0..n {
            let v = (k.one)(wr, rb, &acts[t * nb..(t + 1) * nb]);
            for (j, &x) in v.iter().enumerate() {
                // SAFETY: as above.
                unsafe { out.write(t * w.rows + r0 + j, x) };
            }
        }
        rows.start += ROWS16;
    }
}
