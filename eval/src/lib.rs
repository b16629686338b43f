//! llm-eval: the paper's benchmarks, scored like lm-evaluation-harness and OpenCompass.
pub mod metrics;
