use std::path::PathBuf;

/// Everything that can go wrong loading a model or generating with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] llama_spec::gguf::GgufError),
    #[error(transparent)]
    Config(#[from] llama_spec::config::ConfigError),
    #[error(transparent)]
    Tokenizer(#[from] llama_spec::tokenizer::TokenizerError),
    #[error(transparent)]
    ChatTemplate(#[from] llama_spec::chat::ChatTemplateError),
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("tokenizing the prompt failed: {0}")]
    Tokenize(String),
    #[error("the context is full: {needed} tokens needed, the session holds {n_ctx} (start a new session, reset, or raise n_ctx)")]
    ContextFull { needed: usize, n_ctx: usize },
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    #[error("{origin}: {message}")]
    Persona { origin: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
