//! Tensor data streamed from source to output in row steps: each step's rows are converted on
//! all cores a few rows per task, and a writer thread appends the results in order while the
//! next step is computed. No tensor is ever held whole in f32, so peak memory stays at a few
//! steps whatever the model's size.

use llama_spec::gguf::GgufWriter;
use rayon::prelude::*;

use crate::Error;

/// Elements converted per step (16 MiB as f32; the embedding of a Llama-3 1B alone would be
/// 1 GiB as f32), still work for every core.
pub const STEP_ELEMENTS: usize = 1 << 22;

/// Parts waiting for the writer at most; parts are at most about 1 MiB.
const IN_FLIGHT: usize = 64;

/// Ranges of whole rows of one tensor, `STEP_ELEMENTS` elements at a time.
pub fn row_steps(n_rows: usize, ne0: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let per_step = (STEP_ELEMENTS / ne0.max(1)).clamp(1, n_rows.max(1));
    (0..n_rows)
        .step_by(per_step)
        .map(move |r0| r0..(r0 + per_step).min(n_rows))
}

/// `f` over `data` (whole rows of `row_bytes` bytes, `ne0` elements each) in tasks of about
/// 64 Ki elements on all cores; `f` gets a task's bytes and element count and returns its
/// output bytes. The outputs come back in order.
pub fn map_rows<F>(data: &[u8], row_bytes: usize, ne0: usize, f: F) -> Result<Vec<Vec<u8>>, String>
where
    F: Fn(&[u8], usize) -> Result<Vec<u8>, String> + Sync,
{
    let rows_per_task = (65_536 / ne0.max(1)).max(1);
    data.par_chunks(rows_per_task * row_bytes.max(1))
        .map(|chunk| f(chunk, chunk.len() / row_bytes.max(1) * ne0))
        .collect()
}

/// Run `produce`, which hands parts to its `emit` in file order (`emit` returns false once
/// the writer has failed: stop then), while a writer thread appends them to `w`; then finish
/// the file (fsync, rename).
pub fn write_streamed<P>(mut w: GgufWriter, produce: P) -> Result<(), Error>
where
    P: FnOnce(&mut dyn FnMut(Vec<u8>) -> bool) -> Result<(), Error>,
{
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        let writer = scope.spawn(move || -> Result<GgufWriter, Error> {
            for part in rx {
                w.write_data(&part)?;
            }
            Ok(w)
        });
        let produced = produce(&mut |part| tx.send(part).is_ok());
        drop(tx);
        let w = writer.join().expect("the writer thread does not panic")?;
        produced?;
        w.finish()?;
        Ok(())
    })
}

/// `bytes` as parts of at most 1 MiB (a copied tensor).
pub fn copy_parts(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.chunks(1 << 20).map(<[u8]>::to_vec).collect()
}
