//! Print the top logits after a token sequence: `cargo run --example logits -- MODEL 1 2 3`.
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = Arc::new(edge_runtime::Model::load(&args[1], Default::default())?);
    let toks: Vec<u32> = args[2..]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let mut s = edge_runtime::Session::new(
        model,
        edge_runtime::SessionOptions {
            n_threads: 1,
            ..Default::default()
        },
    )?;
    s.prefill(&toks)?;
    let l = s.logits();
    let mut idx: Vec<usize> = (0..l.len()).collect();
    idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
    for &i in &idx[..5] {
        println!("{i} {:.4}", l[i]);
    }
    Ok(())
}
