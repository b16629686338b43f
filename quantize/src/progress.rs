//! A progress bar over bytes processed, naming the current tensor, its type and the rate.

use indicatif::{ProgressBar, ProgressStyle};
use llama_spec::GgmlType;

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `total` bytes of f32 input; hidden when `show` is false (tests, `--quiet`).
    pub fn new(what: &str, total: u64, show: bool) -> Self {
        let bar = show.then(|| {
            let style = ProgressStyle::with_template(&format!(
                "{what} {{bar:30}} {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(total).with_style(style)
        });
        Self { bar }
    }

    pub fn advance(&mut self, tensor: &str, ty: GgmlType, bytes: u64) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{tensor} -> {ty}"));
            b.inc(bytes);
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
