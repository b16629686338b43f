//! `edge-run`: the command-line front end of edge-runtime (generation for now; `bench` and
//! `perplexity` follow).

fn main() {
    eprintln!("edge-run: not implemented yet (issue 3)");
    std::process::exit(2);
}
