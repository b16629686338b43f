//! [`LanguageModel`] over a GGUF file with edge-runtime (mmap'd, quantized kernels).

use std::path::Path;
use std::sync::Arc;

use edge_runtime::{GenerateOptions, LoadOptions, Model, SamplerConfig, Session, SessionOptions};
use llama_spec::chat::Message;

use crate::backend::{score_rows, GenOutput, GenRequest, LanguageModel, Loglik, LoglikRequest};
use crate::error::{EvalError, Result};

pub struct EdgeModel {
    model: Arc<Model>,
    session: Session,
    name: String,
}

impl EdgeModel {
    /// Load `path` with a context of `n_ctx` tokens (capped at the model's) and `n_threads`.
    pub fn load(path: &Path, n_ctx: usize, n_threads: usize) -> Result<Self> {
        let model = Arc::new(
            Model::load(path, LoadOptions::default())
                .map_err(|e| EvalError::Model(format!("{}: {e}", path.display())))?,
        );
        let session = Session::new(
            model.clone(),
            SessionOptions {
                n_ctx,
                n_threads,
                ..SessionOptions::default()
            },
        )?;
        let name = path.file_name().map_or_else(
            || model.name().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            model,
            session,
            name,
        })
    }
}

impl LanguageModel for EdgeModel {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.model.tokenize(text, false)?)
    }

    fn bos(&self) -> Option<u32> {
        // `tokenize(.., true)` adds BOS exactly when the file asks for it.
        let with = self.model.tokenize("", true).ok()?;
        with.first().copied()
    }

    fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.model.token_bytes(id).to_vec()
    }

    fn chat_prompt(&self, messages: &[Message]) -> Result<String> {
        Ok(self.model.apply_chat_template(messages, true)?)
    }

    fn max_len(&self) -> usize {
        self.session.n_ctx()
    }

    fn loglikelihood(&mut self, reqs: &[LoglikRequest]) -> Result<Vec<Loglik>> {
        let vocab = self.model.config.vocab_size as usize;
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            let r = crate::backend::fit(r, self.max_len());
            if r.context.is_empty() || r.continuation.is_empty() {
                return Err(EvalError::Model(
                    "a log-likelihood request needs a context (BOS at least) and a continuation"
                        .into(),
                ));
            }
            let mut seq = r.context.clone();
            seq.extend_from_slice(&r.continuation[..r.continuation.len() - 1]);
            let logits = self.session.eval_logits_from(&seq, r.context.len() - 1)?;
            out.push(score_rows(&logits, vocab, &r.continuation));
        }
        Ok(out)
    }

    fn generate(&mut self, req: &GenRequest) -> Result<GenOutput> {
        let opts = GenerateOptions {
            max_tokens: req.max_tokens,
            sampler: SamplerConfig {
                temperature: 0.0,
                ..SamplerConfig::default()
            },
            stop: req.stop.clone(),
            ..GenerateOptions::default()
        };
        let mut prompt = req.prompt.clone();
        let room = self
            .max_len()
            .saturating_sub(req.max_tokens.min(self.max_len() / 2));
        if prompt.len() > room {
            prompt.drain(..prompt.len() - room);
        }
        let mut g = self.session.generate(&prompt, opts)?;
        let mut text = String::new();
        for p in g.by_ref() {
            text.push_str(&p?.text);
        }
        let tokens = g.tokens().to_vec();
        Ok(GenOutput { text, tokens })
    }
}
