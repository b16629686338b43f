//! [`Session`]: one conversation's KV cache, and generation as a streaming iterator.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_spec::chat::Message;

use crate::error::{Error, Result};
use crate::forward::{Engine, KvCache, LogitsMode, RopeTable, Scratch};
use crate::kernels::pool::ThreadPool;
use crate::kernels::Isa;
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
use crate::speculative::{self, top_probability, Speculation};
use crate::text::TextStream;

/// Options for [`Session::new`].
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Context size in tokens (KV cache length). Capped at the model's training context.
    pub n_ctx: usize,
    /// Threads for the forward pass (the calling thread included).
    pub n_threads: usize,
    /// Tokens evaluated per forward call during prefill.
    pub n_batch: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            n_ctx: 2048,
            n_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            n_batch: 128,
        }
    }
}

/// Cancels a running generation from any thread; checked before every token.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    /// Clear a cancellation so the token can serve the next generation.
    pub fn reset(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Options for [`Session::generate`] and [`Session::chat`].
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation stops before any of these strings; they are not emitted.
    pub stop: Vec<String>,
    pub cancel: CancelToken,
    /// Guess tokens ahead and check them in one pass; the text is the same as without.
    pub speculation: Speculation,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            cancel: CancelToken::new(),
            speculation: Speculation::None,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token (EOS/EOT/EOM from the GGUF).
    StopToken,
    StopString,
    MaxTokens,
    Cancelled,
    /// The KV cache is full (`n_ctx` reached); the session keeps its state.
    ContextFull,
}

impl std::fmt::Display for FinishReason {
    /// In words, for people: "end of generation", "stop string", ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::StopToken => "end of generation",
            Self::StopString => "stop string",
            Self::MaxTokens => "token limit",
            Self::Cancelled => "cancelled",
            Self::ContextFull => "context full",
        })
    }
}

/// Timing of one generation.
#[derive(Debug, Clone, Default)]
pub struct GenerationStats {
    /// Prompt tokens evaluated (after reusing the cached prefix).
    pub prompt_tokens: usize,
    /// Prompt tokens found already in the KV cache.
    pub reused_tokens: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    pub generation_time: Duration,
    /// Speculation: tokens guessed, and how many of them the model accepted.
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
}

impl GenerationStats {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }
    pub fn tokens_per_second(&self) -> f64 {
        self.generated_tokens as f64 / self.generation_time.as_secs_f64().max(1e-9)
    }
    /// Share of guessed tokens the model accepted (0 when nothing was guessed).
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted_tokens as f64 / self.drafted_tokens.max(1) as f64
    }
}

/// One conversation: the KV cache, scratch buffers and thread pool. Reusing a session across
/// turns prefills only the tokens after the longest prefix already in its cache.
pub struct Session {
    model: Arc<Model>,
    opts: SessionOptions,
    kv: KvCache,
    scratch: Scratch,
    pool: ThreadPool,
    isa: Isa,
    rope: RopeTable,
    tokens: Vec<u32>,
    has_logits: bool,
    /// The draft model's session, for [`Speculation::DraftModel`].
    draft: Option<Box<Session>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The pool's workers may be reading weights ahead (`ThreadPool::prefetch_after`):
        // stop them before the model can be released.
        self.pool.clear_ahead();
    }
}

impl Session {
    pub fn new(model: Arc<Model>, mut opts: SessionOptions) -> Result<Self> {
        let c = &model.config;
        opts.n_ctx = opts.n_ctx.clamp(1, c.max_position_embeddings as usize);
        opts.n_threads = opts.n_threads.max(1);
        opts.n_batch = opts.n_batch.clamp(1, opts.n_ctx);
        let kv = KvCache::new(
            c.num_hidden_layers as usize,
            opts.n_ctx,
            c.n_kv_heads() as usize,
            c.head_dim() as usize,
        );
        let scratch = Scratch::new(&model, opts.n_batch, opts.n_ctx, opts.n_threads);
        let rope = RopeTable::for_model(&model, opts.n_ctx);
        Ok(Self {
            // Reserved up front: the token list never reallocates during generation.
            tokens: Vec::with_capacity(opts.n_ctx),
            pool: ThreadPool::new(opts.n_threads),
            isa: Isa::detect(),
            model,
            opts,
            kv,
            scratch,
            rope,
            has_logits: false,
            draft: None,
        })
    }

    /// Attach a smaller model with the same vocabulary for [`Speculation::DraftModel`]; it
    /// gets its own cache of this session's size, threads and batch.
    pub fn attach_draft_model(&mut self, draft: Arc<Model>) -> Result<()> {
        speculative::check_vocabularies(&self.model, &draft)?;
        self.draft = Some(Box::new(Session::new(draft, self.opts.clone())?));
        Ok(())
    }

    /// The attached draft model, if any.
    pub fn draft_model(&self) -> Option<&Arc<Model>> {
        self.draft.as_ref().map(|d| &d.model)
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }

    /// The instruction set the kernels use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Use only the scalar reference kernels (for tests and comparisons).
    pub fn force_scalar(&mut self) {
        self.isa = Isa::scalar();
    }

    /// Use at most the AVX2 kernels (for tests and comparisons on AVX-512 machines).
    pub fn limit_to_avx2(&mut self) {
        self.isa = self.isa.without_avx512();
    }

    /// Tokens currently in the KV cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn n_ctx(&self) -> usize {
        self.opts.n_ctx
    }

    pub fn kv_cache_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Forget the conversation (the cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.has_logits = false;
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let v = self.model.config.vocab_size;
        match tokens.iter().find(|&&t| t >= v) {
            Some(&t) => Err(Error::BadToken(t)),
            None => Ok(()),
        }
    }

    /// Append `tokens` to the cache; afterwards [`logits`](Self::logits) are those of the last.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        self.append(tokens, LogitsMode::Last, |_| {})?;
        self.has_logits = true;
        Ok(())
    }

    /// Check `tokens` fit, then run them through the model in `n_batch` chunks, appending to the
    /// cache; `on_chunk` sees each chunk's logits (the last token's, or every token's).
    fn append(
        &mut self,
        tokens: &[u32],
        mode: LogitsMode,
        mut on_chunk: impl FnMut(&[f32]),
    ) -> Result<()> {
        self.check_tokens(tokens)?;
        let needed = self.tokens.len() + tokens.len();
        if needed > self.opts.n_ctx {
            return Err(Error::ContextFull {
                needed,
                n_ctx: self.opts.n_ctx,
            });
        }
        let vocab = self.model.config.vocab_size as usize;
        for chunk in tokens.chunks(self.opts.n_batch) {
            let pos0 = self.tokens.len();
            // Disjoint field borrows: the engine reads, forward writes the cache and scratch.
            let engine = Engine {
                model: &self.model,
                pool: &self.pool,
                isa: &self.isa,
                rope: &self.rope,
            };
            engine.forward(&mut self.kv, &mut self.scratch, chunk, pos0, mode);
            let rows = if mode == LogitsMode::All {
                chunk.len()
            } else {
                1
            };
            on_chunk(&self.scratch.logits[..rows * vocab]);
            self.tokens.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Make the cache hold exactly `prompt`, reusing the longest common prefix already cached;
    /// returns how many tokens were reused. At least the last token is always evaluated so that
    /// logits are fresh.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<usize> {
        if prompt.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.tokens.truncate(common);
        self.has_logits = false;
        self.eval(&prompt[common..])?;
        Ok(common)
    }

    /// As a draft model: greedy guesses after `seq` into `out`: up to `max_draft`, stopping where
    /// its top probability is below `min_p`. This session's cache is brought to `seq` first,
    /// reusing what it already holds.
    pub(crate) fn draft_greedy(
        &mut self,
        seq: &[u32],
        max_draft: usize,
        min_p: f32,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        let room = self.n_ctx().saturating_sub(seq.len());
        let max_draft = max_draft.min(room + 1);
        if max_draft == 0 {
            return Ok(());
        }
        self.prefill(seq)?;
        for i in 0..max_draft {
            let (tok, p) = top_probability(self.logits());
            if p < min_p {
                break;
            }
            out.push(tok);
            if i + 1 < max_draft {
                self.eval(&[tok])?;
            }
        }
        Ok(())
    }

    /// Logits after the last evaluated token (`vocab_size` values).
    pub fn logits(&self) -> &[f32] {
        &self.scratch.logits[..self.model.config.vocab_size as usize]
    }

    /// Evaluate `tokens` from an empty cache and return the logits of every position
    /// (`tokens.len() * vocab_size` values): what perplexity needs.
    pub fn eval_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.reset();
        let vocab = self.model.config.vocab_size as usize;
        let mut out = Vec::with_capacity(tokens.len() * vocab);
        self.append(tokens, LogitsMode::All, |logits| {
            out.extend_from_slice(logits)
        })?;
        self.has_logits = false;
        Ok(out)
    }

    /// Logits of every position from `from` on: the cache is made to hold `tokens[..from]`
    /// (reusing the longest prefix already cached), then `tokens[from..]` are evaluated and
    /// their logits returned (`(tokens.len() - from) * vocab_size` values). What scoring many
    /// continuations of one context needs: the shared context is evaluated once.
    pub fn eval_logits_from(&mut self, tokens: &[u32], from: usize) -> Result<Vec<f32>> {
        if from >= tokens.len() {
            return Err(Error::Invalid(format!(
                "eval_logits_from: from = {from} but only {} tokens",
                tokens.len()
            )));
        }
        let common = self
            .tokens
            .iter()
            .zip(&tokens[..from])
            .take_while(|(a, b)| a == b)
            .count();
        self.tokens.truncate(common);
        self.has_logits = false;
        if common < from {
            self.append(&tokens[common..from], LogitsMode::Last, |_| {})?;
        }
        let vocab = self.model.config.vocab_size as usize;
        let mut out = Vec::with_capacity((tokens.len() - from) * vocab);
        self.append(&tokens[from..], LogitsMode::All, |logits| {
            out.extend_from_slice(logits)
        })?;
        Ok(out)
    }

    /// Generate a continuation of `prompt` (token ids). The returned iterator yields text
    /// pieces as they are produced.
    pub fn generate(&mut self, prompt: &[u32], opts: GenerateOptions) -> Result<Generation<'_>> {
        let start = Instant::now();
        if opts.speculation.max_draft() > 0
            && matches!(opts.speculation, Speculation::DraftModel { .. })
            && self.draft.is_none()
        {
            return Err(Error::Invalid(
                "draft-model speculation needs a draft model (Session::attach_draft_model)".into(),
            ));
        }
        let reused = self.prefill(prompt)?;
        let stats = GenerationStats {
            prompt_tokens: prompt.len() - reused,
            reused_tokens: reused,
            prompt_time: start.elapsed(),
            ..GenerationStats::default()
        };
        let max_draft = opts.speculation.max_draft().min(self.opts.n_batch - 1);
        Ok(Generation {
            sampler: Sampler::new(opts.sampler.clone()),
            stream: TextStream::new(opts.stop.clone()),
            opts,
            prompt_len: prompt.len(),
            session: self,
            pending: None,
            decided: VecDeque::with_capacity(max_draft + 1),
            draft: Vec::with_capacity(max_draft + 1),
            draft_budget: max_draft.div_ceil(2),
            generated: Vec::new(),
            finish: None,
            stats,
        })
    }

    /// Render `messages` with the model's chat template (adding the assistant header) and
    /// generate the reply.
    pub fn chat(&mut self, messages: &[Message], opts: GenerateOptions) -> Result<Generation<'_>> {
        let text = self.model.apply_chat_template(messages, true)?;
        let prompt = self.model.tokenize(&text, false)?;
        self.generate(&prompt, opts)
    }

    /// Generate from plain text (BOS added when the model asks for it).
    pub fn complete(&mut self, text: &str, opts: GenerateOptions) -> Result<Generation<'_>> {
        let prompt = self.model.tokenize(text, true)?;
        self.generate(&prompt, opts)
    }
}

/// A text piece of the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
}

/// A running generation: an iterator of UTF-8 text pieces. Dropping it early is fine; the
/// session keeps the prompt and every token emitted so far.
pub struct Generation<'s> {
    session: &'s mut Session,
    opts: GenerateOptions,
    sampler: Sampler,
    stream: TextStream,
    prompt_len: usize,
    /// The last emitted token, not yet evaluated (evaluated before the next sample).
    pending: Option<u32>,
    /// Tokens sampled but not yet emitted; all but the last are already in the cache.
    decided: VecDeque<u32>,
    /// Guessed tokens being checked (reused: the decode loop allocates nothing).
    draft: Vec<u32>,
    /// How many tokens to guess next: grows by 2 after a step whose guesses were all
    /// accepted, shrinks by 1 after one with a rejection (checking a guess costs compute,
    /// which matters on small models).
    draft_budget: usize,
    generated: Vec<u32>,
    finish: Option<FinishReason>,
    stats: GenerationStats,
}

impl Generation<'_> {
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    /// Token ids generated so far (a stop token is not included).
    pub fn tokens(&self) -> &[u32] {
        &self.generated
    }

    /// Collect the whole reply.
    pub fn text(mut self) -> Result<String> {
        let mut out = String::new();
        for p in self.by_ref() {
            out.push_str(&p?.text);
        }
        Ok(out)
    }

    fn step(&mut self) -> Result<Option<String>> {
        // A token left unevaluated at the end is evaluated by the next turn's prefill.
        if self.opts.cancel.is_cancelled() {
            return Ok(self.end(FinishReason::Cancelled));
        }
        if self.generated.len() >= self.opts.max_tokens {
            return Ok(self.end(FinishReason::MaxTokens));
        }
        if self.decided.is_empty() {
            let t0 = Instant::now();
            let full = self.decide()?;
            self.stats.generation_time += t0.elapsed();
            if full {
                return Ok(self.end(FinishReason::ContextFull));
            }
        }
        let tok = self.decided.pop_front().expect("decide samples a token");
        if self.session.model.is_stop_token(tok) {
            return Ok(self.end(FinishReason::StopToken));
        }
        self.generated.push(tok);
        self.stats.generated_tokens += 1;
        if self.decided.is_empty() {
            self.pending = Some(tok);
        }
        let (text, stopped) = self.stream.push(self.session.model.token_bytes(tok));
        if stopped {
            self.finish = Some(FinishReason::StopString);
        }
        Ok(Some(text))
    }

    /// Sample the next token, or several: evaluate the pending token together with any
    /// guesses after it and keep the guesses the model agrees with, plus its own next token.
    /// Returns true when the cache is full.
    fn decide(&mut self) -> Result<bool> {
        let s = &mut *self.session;
        let Some(p) = self.pending.take() else {
            // The first token: the prompt's logits are fresh.
            let tok = self.sampler.sample(s.logits(), &s.tokens);
            self.decided.push_back(tok);
            return Ok(false);
        };
        if s.tokens.len() >= s.opts.n_ctx {
            return Ok(true);
        }
        // Guesses past max_tokens or the cache would be wasted; the logits buffer holds one
        // batch.
        let room = (self.opts.max_tokens - self.generated.len())
            .saturating_sub(1)
            .min(self.draft_budget)
            .min(s.opts.n_ctx - s.tokens.len() - 1)
            .min(s.opts.n_batch - 1);
        self.draft.clear();
        self.draft.push(p);
        if room > 0 {
            s.tokens.push(p);
            let guessed = match self.opts.speculation {
                Speculation::None => Ok(()),
                Speculation::PromptLookup {
                    min_ngram,
                    max_ngram,
                    max_draft,
                } => {
                    let n = max_draft.min(room);
                    speculative::lookup_draft(&s.tokens, min_ngram, max_ngram, n, &mut self.draft);
                    Ok(())
                }
                Speculation::DraftModel { max_draft, min_p } => match s.draft.as_deref_mut() {
                    Some(d) => {
                        d.draft_greedy(&s.tokens, max_draft.min(room), min_p, &mut self.draft)
                    }
                    None => Ok(()),
                },
            };
            s.tokens.pop();
            guessed?;
        }
        let k = self.draft.len() - 1;
        if k == 0 {
            s.eval(&[p])?;
            let tok = self.sampler.sample(s.logits(), &s.tokens);
            self.decided.push_back(tok);
            return Ok(false);
        }
        // Check: the logits after the pending token and after each guess, in one pass.
        let base = s.tokens.len();
        s.append(&self.draft, LogitsMode::All, |_| {})?;
        s.has_logits = false;
        let vocab = s.model.config.vocab_size as usize;
        self.stats.drafted_tokens += k;
        for i in 0..=k {
            let logits = &s.scratch.logits[i * vocab..(i + 1) * vocab];
            let tok = self.sampler.sample(logits, &s.tokens[..base + 1 + i]);
            self.decided.push_back(tok);
            if i == k || tok != self.draft[i + 1] {
                // The cache keeps what the model agreed with; the rest is overwritten later.
                s.tokens.truncate(base + 1 + i);
                let max = self.opts.speculation.max_draft();
                self.draft_budget = if i == k {
                    (self.draft_budget + 2).min(max)
                } else {
                    self.draft_budget.saturating_sub(1).max(1)
                };
                break;
            }
            self.stats.accepted_tokens += 1;
        }
        Ok(false)
    }

    fn end(&mut self, reason: FinishReason) -> Option<String> {
        self.finish = Some(reason);
        let rest = self.stream.finish();
        (!rest.is_empty()).then_some(rest)
    }
}

impl Drop for Generation<'_> {
    /// Guesses the model accepted but the generation did not emit (it stopped first) leave the
    /// cache, so that it holds what plain decoding would have evaluated.
    fn drop(&mut self) {
        // Plain decoding evaluates each emitted token before sampling the next, so the last
        // one is in the cache only when a stop token was sampled after it.
        let unevaluated = self.finish != Some(FinishReason::StopToken);
        let keep = self.prompt_len + self.generated.len()
            - usize::from(unevaluated && !self.generated.is_empty());
        if self.session.tokens.len() > keep {
            self.session.tokens.truncate(keep);
            self.session.has_logits = false;
        }
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.finish.is_some() {
                return None;
            }
            match self.step() {
                Err(e) => {
                    self.finish = Some(FinishReason::Cancelled);
                    return Some(Err(e));
                }
                Ok(Some(text)) if !text.is_empty() => return Some(Ok(Piece { text })),
                Ok(_) => {}
            }
        }
    }
}
