//! llm-eval: the paper's benchmarks, scored like lm-evaluation-harness and OpenCompass, over
//! any model behind [`LanguageModel`]: GGUF files through edge-runtime ([`EdgeModel`]) here,
//! and cloud-train's burn checkpoints there (`cloud-train eval`).
//!
//! - [`metrics`]: BLEU (sacrebleu's `13a` and `zh`), ROUGE-L (rouge-chinese, jieba or
//!   character tokens, as OpenCompass), CMRC F1/EM (the official script), TriviaQA EM,
//!   GSM8K's last number, the Chinese-token share; each equal to its reference on fixtures.
//! - [`tasks`]: data loaders and prompt formats (the table in the module docs).
//! - [`runner`]: batching, progress, scoring; [`report`]: JSON and markdown tables.

pub mod backend;
pub mod edge;
pub mod error;
pub mod http;
pub mod metrics;
pub mod report;
pub mod runner;
pub mod tables;
pub mod tasks;

pub use backend::{GenOutput, GenRequest, LanguageModel, Loglik, LoglikRequest};
pub use edge::EdgeModel;
pub use error::{EvalError, Result};
pub use http::OpenAiModel;
pub use report::TaskResult;
pub use report::{markdown, Report};
pub use runner::{evaluate, evaluate_judged, RunOptions};
