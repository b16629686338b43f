//! `quantize`: GGUF export and inspection.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use llama_spec::hf::safetensors::Dtype;
use quantize::convert::{convert, ConvertOptions, Summary};
use quantize::policy::{FileType, Override};

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
    /// HF checkpoint directory -> GGUF (like convert_hf_to_gguf.py followed by llama-quantize).
    Convert {
        /// HF checkpoint directory (config.json, tokenizer.json, safetensors).
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k.
        #[arg(long = "type", default_value = "q4_k_m")]
        ty: String,
        /// Per-tensor type override, PATTERN=TYPE with `*` wildcards on GGUF names
        /// (e.g. `blk.*.attn_v.weight=q8_0`); repeatable.
        #[arg(long)]
        keep: Vec<String>,
        /// general.name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        quiet: bool,
    },
    /// GGUF -> GGUF of another type (like llama-quantize --allow-requantize).
    Requantize {
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long = "type")]
        ty: String,
        #[arg(long)]
        keep: Vec<String>,
        #[arg(long)]
        quiet: bool,
    },
    /// GGUF -> HF checkpoint directory (dequantized, for fine-tuning).
    ToHf {
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// f32 or bf16.
        #[arg(long, default_value = "f32")]
        dtype: String,
        #[arg(long)]
        quiet: bool,
    },
}

fn file_type(s: &str) -> anyhow::Result<FileType> {
    FileType::parse(s).with_context(|| {
        let all: Vec<&str> = FileType::ALL.iter().map(|t| t.name()).collect();
        format!("--type {s:?}: expected one of {}", all.join(", "))
    })
}

fn overrides(keep: &[String]) -> anyhow::Result<Vec<Override>> {
    keep.iter()
        .map(|k| Override::parse(k).map_err(anyhow::Error::msg))
        .collect()
}

fn report(what: &str, out: &std::path::Path, s: &Summary) {
    println!(
        "{what}: {} tensors, {:.1} MiB -> {} in {:.1}s",
        s.tensors,
        s.bytes as f64 / (1 << 20) as f64,
        out.display(),
        s.seconds
    );
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
        Command::Convert {
            input,
            out,
            ty,
            keep,
            name,
            quiet,
        } => (|| {
            let opts = ConvertOptions {
                ftype: file_type(&ty)?,
                overrides: overrides(&keep)?,
                name,
                progress: !quiet,
            };
            let s = convert(&input, &out, &opts)?;
            report("convert", &out, &s);
            Ok(())
        })(),
        Command::Requantize {
            input,
            out,
            ty,
            keep,
            quiet,
        } => (|| {
            let s = quantize::requantize::requantize(
                &input,
                &out,
                file_type(&ty)?,
                &overrides(&keep)?,
                !quiet,
            )?;
            report("requantize", &out, &s);
            Ok(())
        })(),
        Command::ToHf {
            input,
            out,
            dtype,
            quiet,
        } => (|| {
            let dtype = match Dtype::parse(&dtype) {
                Some(d @ (Dtype::F32 | Dtype::BF16)) => d,
                _ => anyhow::bail!("--dtype {dtype:?}: expected f32 or bf16"),
            };
            let c = quantize::to_hf::to_hf(&input, &out, dtype, !quiet)?;
            println!(
                "to-hf: {} layers, hidden {} -> {} ({})",
                c.num_hidden_layers,
                c.hidden_size,
                out.display(),
                dtype.name()
            );
            Ok(())
        })(),
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
