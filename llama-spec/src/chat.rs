//! Chat templates: the Jinja `chat_template` of a GGUF file or `tokenizer_config.json`, rendered
//! with minijinja configured like HF transformers' `apply_chat_template` (trim_blocks,
//! lstrip_blocks, loop controls, `raise_exception`, Python string methods).

use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::gguf::{GgufFile, MetadataValue};
use crate::tokenizer::{keys, GgufVocab};

/// Meta-Llama-3-8B-Instruct's template (tokenizer_config.json), the default for our models.
pub const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// Plain ChatML (`<|im_start|>role\n...<|im_end|>\n`).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("{origin}: chat template does not compile: {source}")]
    Compile {
        origin: String,
        source: minijinja::Error,
    },
    #[error("{origin}: rendering the chat template failed: {source}")]
    Render {
        origin: String,
        source: minijinja::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A compiled chat template with the BOS/EOS texts it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    pub bos_token: String,
    pub eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

fn raise_exception(msg: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compile `source`; `origin` names where it came from in error messages.
    pub fn new(
        source: &str,
        bos_token: &str,
        eos_token: &str,
        origin: &str,
    ) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        // jinja2 as transformers configures it.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.to_string())
            .map_err(|source| ChatTemplateError::Compile {
                origin: origin.to_string(),
                source,
            })?;
        Ok(Self {
            env,
            source: source.to_string(),
            origin: origin.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The template stored in a GGUF file (`tokenizer.chat_template`), with BOS/EOS texts from
    /// its vocabulary; `None` when the file has no template.
    pub fn from_gguf(file: &GgufFile) -> Result<Option<Self>, ChatTemplateError> {
        let invalid = |message: String| ChatTemplateError::Invalid {
            path: file.path().to_path_buf(),
            message,
        };
        let source = match file.get(keys::CHAT_TEMPLATE) {
            None => return Ok(None),
            Some(MetadataValue::String(s)) => s.clone(),
            Some(v) => {
                return Err(invalid(format!(
                    "{} has type {}, expected STRING",
                    keys::CHAT_TEMPLATE,
                    v.value_type()
                )))
            }
        };
        let vocab = GgufVocab::from_gguf(file).map_err(|e| invalid(e.to_string()))?;
        let text = |id: Option<u32>| {
            id.and_then(|i| vocab.tokens.get(i as usize).cloned())
                .unwrap_or_default()
        };
        let origin = format!("{} ({})", file.path().display(), keys::CHAT_TEMPLATE);
        Self::new(
            &source,
            &text(vocab.special.bos),
            &text(vocab.special.eos),
            &origin,
        )
        .map(Some)
    }

    /// The template of an HF `tokenizer_config.json` (`chat_template` as a string, or the
    /// `default` entry of a list of named templates), with its `bos_token`/`eos_token`.
    pub fn from_tokenizer_config(
        path: impl AsRef<Path>,
    ) -> Result<Option<Self>, ChatTemplateError> {
        let path = path.as_ref();
        let invalid = |message: String| ChatTemplateError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let source = match &json["chat_template"] {
            serde_json::Value::Null => return Ok(None),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .ok_or_else(|| invalid("chat_template list has no \"default\" entry".into()))?
                .to_string(),
            _ => {
                return Err(invalid(
                    "chat_template is neither a string nor a list".into(),
                ))
            }
        };
        // bos_token is a string or an AddedToken object with "content".
        let token = |k: &str| match &json[k] {
            serde_json::Value::String(s) => s.clone(),
            v => v["content"].as_str().unwrap_or_default().to_string(),
        };
        let origin = format!("{} (chat_template)", path.display());
        Self::new(&source, &token("bos_token"), &token("eos_token"), &origin).map(Some)
    }

    /// Render a conversation exactly as `tokenizer.apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|source| ChatTemplateError::Render {
                origin: self.origin.clone(),
                source,
            })?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|source| ChatTemplateError::Render {
            origin: self.origin.clone(),
            source,
        })
    }
}
