//! Speed measurements for benchmarks (`edge-run bench`): the machine's read bandwidth, and the
//! weight bytes per second each quantized type's matmul reaches, so that a decode speed can be
//! put against the bound the memory sets.

use std::time::{Duration, Instant};

use llama_spec::gguf::GgmlType;

use super::matmul::{matmul, ActBuf, MatOut, QMatrix};
use super::pool::ThreadPool;
use super::repack::{self, AlignedBytes};
use super::Isa;

/// Read bandwidth in bytes/s: `threads` threads summing their shares of a 512 MiB buffer in
/// huge pages (as the weights are read), best of 5.
pub fn read_bandwidth(threads: usize) -> f64 {
    let buf = AlignedBytes::zeroed(512 << 20);
    let buf = buf.as_slice();
    let part = (buf.len() / threads.max(1)).next_multiple_of(64);
    let mut best = 0f64;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for chunk in buf.chunks(part) {
                s.spawn(move || {
                    // Eight independent sums per 64-byte line, which the compiler vectorizes.
                    let mut acc = [0u64; 8];
                    for line in chunk.chunks_exact(64) {
                        for (a, w) in acc.iter_mut().zip(line.chunks_exact(8)) {
                            *a = a.wrapping_add(u64::from_le_bytes(w.try_into().expect("8")));
                        }
                    }
                    std::hint::black_box(acc);
                });
            }
        });
        best = best.max(buf.len() as f64 / t.elapsed().as_secs_f64());
    }
    best
}

/// One matmul shape to time.
#[derive(Debug, Clone, Copy)]
pub struct MatmulShape {
    pub ty: GgmlType,
    /// Weight rows and columns (columns a multiple of 256).
    pub rows: usize,
    pub cols: usize,
    /// Activation rows (1: decode).
    pub n: usize,
    /// Multiply from a repacked copy where this CPU has packed kernels (as models load).
    pub packed: bool,
}

/// Weight bytes per second of `x · Wᵀ` on `threads` threads, timed over at least `min_time`.
/// The weights repeat one quantized block of 16 rows of random values (the speed does not
/// depend on the values), so a large matrix is quick to make.
pub fn matmul_bytes_per_s(shape: MatmulShape, threads: usize, min_time: Duration) -> f64 {
    let MatmulShape {
        ty,
        rows,
        cols,
        n,
        packed,
    } = shape;
    let seed_rows = 16;
    let x: Vec<f32> = (0..seed_rows * cols)
        .map(|i| ((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let block = llama_spec::quant::quantize_to_vec(ty, &x).expect("a quantized type");
    let mut data = AlignedBytes::zeroed(block.len() * rows.div_ceil(seed_rows));
    data.fill_with(&block);
    let data = &data.as_slice()[..block.len() / seed_rows * rows];
    let isa = Isa::detect();
    let copy = (packed && isa.packed16(ty).is_some())
        .then(|| repack::pack(ty, data, rows, cols, threads))
        .flatten();
    let w = QMatrix {
        ty,
        rows,
        cols,
        data,
        packed: copy.as_ref().map(|p| p.as_slice()),
    };
    let pool = ThreadPool::new(threads);
    let mut acts = ActBuf::with_capacity(n, cols);
    let input: Vec<f32> = x.iter().cycle().take(n * cols).copied().collect();
    let mut out = vec![0f32; n * rows];
    let mut run = || {
        matmul(
            &pool,
            &isa,
            &mut acts,
            &input,
            n,
            &mut [MatOut { w, out: &mut out }],
        )
    };
    run();
    let (start, mut iters) = (Instant::now(), 0u64);
    while start.elapsed() < min_time {
        run();
        iters += 1;
    }
    (data.len() as u64 * iters) as f64 / start.elapsed().as_secs_f64()
}
