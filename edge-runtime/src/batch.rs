//! [`BatchDecoder`]: many generations at once, one pass over the weights per step.
//!
//! Decoding reads every weight once per step whatever the number of rows, so running the
//! next token of several conversations through the same matrix products multiplies
//! throughput. Each request holds a slot (its own KV cache); requests join and leave between
//! steps; prompts are prefilled in chunks beside the running decodes. A new request starts from
//! the longest prefix of its prompt already computed in any slot (a shared system prompt or
//! persona is computed once, then copied). Each request's tokens are those a [`Session`] would
//! produce for it alone.
//!
//! [`Session`]: crate::Session

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::forward::{Engine, KvCache, LogitsMode, RopeTable, Scratch, Seq};
use crate::kernels::pool::ThreadPool;
use crate::kernels::Isa;
use crate::model::Model;
use crate::sampler::Sampler;
use crate::session::{FinishReason, GenerateOptions, GenerationStats};
use crate::speculative::Speculation;
use crate::text::TextStream;

/// Options for [`BatchDecoder::new`].
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Requests decoded together (each has its own KV cache of `n_ctx` tokens).
    pub n_slots: usize,
    /// Context size of each slot, in tokens. Capped at the model's training context.
    pub n_ctx: usize,
    pub n_threads: usize,
    /// Tokens evaluated per step, all slots together (prompt chunks fill what decoding leaves).
    pub n_batch: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            n_slots: 4,
            n_ctx: 2048,
            n_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            n_batch: 128,
        }
    }
}

/// Identifies a request submitted to a [`BatchDecoder`].
pub type RequestId = u64;

/// What a step produced for one request.
#[derive(Debug, Clone)]
pub enum BatchEvent {
    /// Reply text (never half a UTF-8 character, never part of a stop string).
    Text { id: RequestId, text: String },
    /// The request ended; its slot is free for the next.
    Done {
        id: RequestId,
        reason: FinishReason,
        /// Token ids generated (a stop token is not included).
        tokens: Vec<u32>,
        stats: GenerationStats,
    },
}

struct Job {
    id: RequestId,
    prompt: Vec<u32>,
    opts: GenerateOptions,
    sampler: Sampler,
    stream: TextStream,
    generated: Vec<u32>,
    /// The last sampled token, to be evaluated in the next step.
    next: Option<u32>,
    stats: GenerationStats,
    submitted: Instant,
    first_token: Option<Instant>,
}

struct Slot {
    kv: KvCache,
    /// Tokens in the cache (the prompt prefix evaluated so far, then the reply).
    tokens: Vec<u32>,
    job: Option<Job>,
    /// Step counter when the slot was last given a request (least recently used goes first).
    last_used: u64,
}

impl Slot {
    /// Tokens this slot feeds in the next step: the rest of its prompt, or its last sample.
    fn wants(&self) -> usize {
        match &self.job {
            Some(j) if self.tokens.len() < j.prompt.len() => j.prompt.len() - self.tokens.len(),
            Some(j) if j.next.is_some() => 1,
            _ => 0,
        }
    }
}

/// Continuous batching over a fixed set of slots. Drive it with [`step`](Self::step) in a
/// loop; submit and cancel between steps.
pub struct BatchDecoder {
    model: Arc<Model>,
    opts: BatchOptions,
    slots: Vec<Slot>,
    scratch: Scratch,
    pool: ThreadPool,
    isa: Isa,
    rope: RopeTable,
    /// Per step: (slot, tokens fed); reused.
    plan: Vec<(usize, usize)>,
    /// Per step: (request id, slot) of the prompts still prefilling, oldest first; reused.
    prefilling: Vec<(RequestId, usize)>,
    batch_tokens: Vec<u32>,
    next_id: RequestId,
    steps: u64,
}

impl Drop for BatchDecoder {
    fn drop(&mut self) {
        // The pool's workers may be reading weights ahead (`ThreadPool::prefetch_after`):
        // stop them before the model can be released.
        self.pool.clear_ahead();
    }
}

impl BatchDecoder {
    pub fn new(model: Arc<Model>, mut opts: BatchOptions) -> Result<Self> {
        let c = &model.config;
        opts.n_slots = opts.n_slots.max(1);
        opts.n_ctx = opts.n_ctx.clamp(1, c.max_position_embeddings as usize);
        opts.n_threads = opts.n_threads.max(1);
        // Every slot must be able to decode in the same step.
        opts.n_batch = opts.n_batch.max(opts.n_slots);
        let slots = (0..opts.n_slots)
            .map(|_| Slot {
                kv: KvCache::new(
                    c.num_hidden_layers as usize,
                    opts.n_ctx,
                    c.n_kv_heads() as usize,
                    c.head_dim() as usize,
                ),
                tokens: Vec::with_capacity(opts.n_ctx),
                job: None,
                last_used: 0,
            })
            .collect();
        let mut scratch = Scratch::new(&model, opts.n_batch, opts.n_ctx, opts.n_threads);
        // One logits row per slot, allocated once.
        scratch
            .logits
            .resize(opts.n_slots * c.vocab_size as usize, 0.0);
        Ok(Self {
            rope: RopeTable::for_model(&model, opts.n_ctx),
            pool: ThreadPool::new(opts.n_threads),
            isa: Isa::detect(),
            plan: Vec::with_capacity(opts.n_slots),
            prefilling: Vec::with_capacity(opts.n_slots),
            batch_tokens: Vec::with_capacity(opts.n_batch),
            model,
            opts,
            slots,
            scratch,
            next_id: 0,
            steps: 0,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn options(&self) -> &BatchOptions {
        &self.opts
    }

    /// Use only the scalar reference kernels (for tests and comparisons).
    pub fn force_scalar(&mut self) {
        self.isa = Isa::scalar();
    }

    /// Requests running (prefilling or decoding).
    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.job.is_some()).count()
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(|s| s.job.is_none())
    }

    /// Start generating a continuation of `prompt` in a free slot. Errors: no free slot, an
    /// empty prompt or one that leaves no room to generate in `n_ctx`, a token outside the
    /// vocabulary, speculation (not supported in batches). `opts.cancel` is checked every step.
    pub fn submit(&mut self, prompt: &[u32], opts: GenerateOptions) -> Result<RequestId> {
        if prompt.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        if prompt.len() >= self.opts.n_ctx {
            return Err(Error::ContextFull {
                needed: prompt.len() + 1,
                n_ctx: self.opts.n_ctx,
            });
        }
        let vocab = self.model.config.vocab_size;
        if let Some(&t) = prompt.iter().find(|&&t| t >= vocab) {
            return Err(Error::BadToken(t));
        }
        if !matches!(opts.speculation, Speculation::None) {
            return Err(Error::Invalid(
                "speculation is not supported in a batch; use a Session".into(),
            ));
        }
        // Reuse: the free slot whose cache shares the longest prefix with the prompt (least
        // recently used on ties); if another slot holds a longer one, copy it over. At least the
        // last prompt token is evaluated so that its logits are fresh.
        let common = |s: &Slot| {
            s.tokens
                .iter()
                .zip(&prompt[..prompt.len() - 1])
                .take_while(|(a, b)| a == b)
                .count()
        };
        let target = (0..self.slots.len())
            .filter(|&i| self.slots[i].job.is_none())
            .max_by_key(|&i| (common(&self.slots[i]), u64::MAX - self.slots[i].last_used))
            .ok_or_else(|| Error::Invalid("every slot is busy".into()))?;
        let own = common(&self.slots[target]);
        let (source, shared) = (0..self.slots.len())
            .map(|i| (i, common(&self.slots[i])))
            .max_by_key(|&(_, c)| c)
            .expect("at least one slot");
        let reused = if shared > own {
            let (dst, src) = pair_mut(&mut self.slots, target, source);
            dst.kv.copy_prefix_from(&src.kv, shared);
            dst.tokens.clear();
            dst.tokens.extend_from_slice(&src.tokens[..shared]);
            shared
        } else {
            self.slots[target].tokens.truncate(own);
            own
        };
        let id = self.next_id;
        self.next_id += 1;
        let slot = &mut self.slots[target];
        slot.last_used = self.steps;
        slot.job = Some(Job {
            id,
            prompt: prompt.to_vec(),
            sampler: Sampler::new(opts.sampler.clone()),
            stream: TextStream::new(opts.stop.clone()),
            opts,
            generated: Vec::new(),
            next: None,
            stats: GenerationStats {
                prompt_tokens: prompt.len() - reused,
                reused_tokens: reused,
                ..GenerationStats::default()
            },
            submitted: Instant::now(),
            first_token: None,
        });
        Ok(id)
    }

    /// Cancel a request now; its `Done` event comes from the next step. Unknown ids are ignored.
    pub fn cancel(&mut self, id: RequestId) {
        if let Some(j) = self
            .slots
            .iter_mut()
            .filter_map(|s| s.job.as_mut())
            .find(|j| j.id == id)
        {
            j.opts.cancel.cancel();
        }
    }

    /// One pass over the weights: every decoding request advances one token, prompts are
    /// evaluated in chunks with the rest of the step's `n_batch`. Appends what happened to
    /// `events`. Returns how many tokens were sampled (one per request that decoded or
    /// finished its prompt; 0 when no request is running).
    pub fn step(&mut self, events: &mut Vec<BatchEvent>) -> usize {
        self.steps += 1;
        let n_ctx = self.opts.n_ctx;
        // 1. Requests that end before computing: cancelled, or nowhere to put the next token.
        for slot in &mut self.slots {
            let Some(job) = &slot.job else { continue };
            let reason = if job.opts.cancel.is_cancelled() {
                Some(FinishReason::Cancelled)
            } else if job.next.is_some() && slot.tokens.len() >= n_ctx {
                Some(FinishReason::ContextFull)
            } else {
                None
            };
            if let Some(reason) = reason {
                finish(slot, reason, true, events);
            }
        }

        // 2. Plan: decoding requests first (one token each), then prompt chunks, oldest first.
        self.plan.clear();
        self.batch_tokens.clear();
        let mut budget = self.opts.n_batch;
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.job.as_ref().is_some_and(|j| j.next.is_some()) {
                self.plan.push((i, 1));
                budget -= 1;
            }
        }
        self.prefilling.clear();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(j) = &slot.job {
                if j.next.is_none() && slot.wants() > 0 {
                    self.prefilling.push((j.id, i));
                }
            }
        }
        self.prefilling.sort_unstable();
        for &(_, i) in &self.prefilling {
            if budget == 0 {
                break;
            }
            let n = self.slots[i].wants().min(budget);
            self.plan.push((i, n));
            budget -= n;
        }
        if self.plan.is_empty() {
            return 0;
        }
        // Rows in slot order, so that each sequence's rows are contiguous.
        self.plan.sort_unstable();
        for &(i, n) in &self.plan {
            let slot = &self.slots[i];
            let job = slot.job.as_ref().expect("planned slots run a job");
            match job.next {
                Some(t) => self.batch_tokens.push(t),
                None => {
                    let at = slot.tokens.len();
                    self.batch_tokens.extend_from_slice(&job.prompt[at..at + n]);
                }
            }
        }

        // 3. The forward pass.
        let t0 = Instant::now();
        {
            let mut planned = self.plan.iter().peekable();
            let mut seqs: Vec<Seq<'_>> = Vec::with_capacity(self.plan.len());
            for (i, slot) in self.slots.iter_mut().enumerate() {
                if let Some(&&(_, n)) = planned.peek().filter(|(j, _)| *j == i) {
                    planned.next();
                    seqs.push(Seq {
                        pos0: slot.tokens.len(),
                        kv: &mut slot.kv,
                        n,
                    });
                }
            }
            let engine = Engine {
                model: &self.model,
                pool: &self.pool,
                isa: &self.isa,
                rope: &self.rope,
            };
            engine.forward_seqs(
                &mut seqs,
                &mut self.scratch,
                &self.batch_tokens,
                LogitsMode::Last,
            );
        }
        let elapsed = t0.elapsed();

        // 4. Append what was fed; sample where a prompt is complete or a decode ran.
        let vocab = self.model.config.vocab_size as usize;
        let mut fed = 0;
        let mut sampled = 0;
        for (row, &(i, n)) in self.plan.iter().enumerate() {
            let slot = &mut self.slots[i];
            slot.tokens
                .extend_from_slice(&self.batch_tokens[fed..fed + n]);
            fed += n;
            let job = slot.job.as_mut().expect("planned slots run a job");
            let decoding = job.next.take().is_some();
            if decoding {
                job.stats.generation_time += elapsed;
            } else if slot.tokens.len() < job.prompt.len() {
                continue;
            }
            if job.generated.len() >= job.opts.max_tokens {
                finish(slot, FinishReason::MaxTokens, true, events);
                continue;
            }
            let logits = &self.scratch.logits[row * vocab..(row + 1) * vocab];
            let tok = job.sampler.sample(logits, &slot.tokens);
            sampled += 1;
            if job.first_token.is_none() {
                let now = Instant::now();
                job.first_token = Some(now);
                job.stats.prompt_time = now - job.submitted;
            }
            if self.model.is_stop_token(tok) {
                finish(slot, FinishReason::StopToken, true, events);
                continue;
            }
            job.generated.push(tok);
            job.stats.generated_tokens += 1;
            let (text, stopped) = job.stream.push(self.model.token_bytes(tok));
            if !text.is_empty() {
                events.push(BatchEvent::Text { id: job.id, text });
            }
            if stopped {
                finish(slot, FinishReason::StopString, false, events);
            } else if job.generated.len() >= job.opts.max_tokens {
                finish(slot, FinishReason::MaxTokens, true, events);
            } else {
                job.next = Some(tok);
            }
        }
        sampled
    }
}

/// End the slot's request: flush held-back text (unless a stop string was found) and report.
/// The cache keeps the prompt and the reply, for the next request's prefix reuse.
fn finish(slot: &mut Slot, reason: FinishReason, flush: bool, events: &mut Vec<BatchEvent>) {
    let Some(mut job) = slot.job.take() else {
        return;
    };
    if flush {
        let rest = job.stream.finish();
        if !rest.is_empty() {
            events.push(BatchEvent::Text {
                id: job.id,
                text: rest,
            });
        }
    }
    events.push(BatchEvent::Done {
        id: job.id,
        reason,
        tokens: job.generated,
        stats: job.stats,
    });
}

/// Mutable `a` and shared `b` from one slice (`a != b`).
fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &T) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &lo[b])
    }
}
