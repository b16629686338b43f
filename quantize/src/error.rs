//! The quantizer's errors; each names the file and what is wrong.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Hf(#[from] llama_spec::hf::HfError),
    #[error(transparent)]
    Gguf(#[from] llama_spec::gguf::GgufError),
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }
}
