//! Speed measurements for benchmarks (`edge-run bench`): the machine's read bandwidth, and the
//! weight bytes per second each quantized type's matmul reaches, so that a decode speed can be
//! put against the bound the memory sets.

use std::time::{Duration, Instant};

use llama_spec::gguf::GgmlType;

use super::matmul::{matmul, ActBuf, MatOut, QMatrix};
use super::pool::ThreadPool;
use super::repack::{self, AlignedBytes};
use super::Isa;

/// A buffer (in huge pages, as the weights are read; well above the caches) whose read speed
/// can be measured quickly and often, e.g. between stretches of decoding on a machine whose
/// bandwidth changes. 512 MiB: a 128 MiB buffer read up to 20 % fast, partly from cache.
pub struct ReadProbe {
    buf: AlignedBytes,
    isa: Isa,
}

impl ReadProbe {
    pub fn new(bytes: usize) -> Self {
        Self {
            buf: AlignedBytes::zeroed(bytes.next_multiple_of(256)),
            isa: Isa::detect(),
        }
    }

    /// The read bandwidth in bytes/s: the best of `passes` [`measure`](Self::measure)s.
    pub fn best(&self, threads: usize, passes: usize) -> f64 {
        (0..passes)
            .map(|_| self.measure(threads))
            .fold(0.0, f64::max)
    }

    /// Bytes/s of `threads` threads reading their shares of the buffer: the best of one pass
    /// each of three ways to read (the scalar loop, this CPU's widest loads, and those with
    /// prefetches 4 KiB ahead into the level the kernels' go to, [`super::prefetch::Level`]). Which is fastest depends on the machine (on a Zen 4 host,
    /// 512-bit loads on one thread: 42 against 37 GB/s for the scalar loop), and a decode that
    /// reads faster than the bound would be put against too low a one.
    pub fn measure(&self, threads: usize) -> f64 {
        let buf = self.buf.as_slice();
        let part = (buf.len() / threads.max(1)).next_multiple_of(256);
        let isa = self.isa;
        let mut best = 0f64;
        for way in [ReadWay::Scalar, ReadWay::Wide, ReadWay::WidePrefetch] {
            let t = Instant::now();
            std::thread::scope(|s| {
                for chunk in buf.chunks(part) {
                    s.spawn(move || {
                        std::hint::black_box(match way {
                            ReadWay::Scalar => super::scalar::xor_lines(chunk),
                            ReadWay::Wide => isa.xor_lines(chunk, 0),
                            ReadWay::WidePrefetch => isa.xor_lines(chunk, 4096),
                        })
                    });
                }
            });
            best = best.max(buf.len() as f64 / t.elapsed().as_secs_f64());
        }
        best
    }
}

#[derive(Clone, Copy)]
enum ReadWay {
    Scalar,
    Wide,
    WidePrefetch,
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
