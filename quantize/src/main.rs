//! `quantize`: GGUF export and inspection.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod inspect;

#[derive(Parser)]
#[command(
    name = "quantize",
    version,
    about = "Export Llama checkpoints to GGUF and inspect GGUF files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a GGUF file's metadata and tensor table (like gguf-py's gguf-dump).
    Inspect {
        /// The GGUF file.
        file: PathBuf,
        /// Only the metadata, no tensor table.
        #[arg(long)]
        no_tensors: bool,
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Array items shown per metadata value.
        #[arg(long, default_value_t = 6)]
        max_items: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect {
            file,
            no_tensors,
            json,
            max_items,
        } => inspect::run(&file, !no_tensors, json, max_items),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `quantize inspect F | head` closes the pipe early: not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
