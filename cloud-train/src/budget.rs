//! Per-device memory and expected throughput of a training run, from the model's shape and the
//! `[train]` settings alone, before any weight is loaded: what `cloud-train plan` prints for
//! every ZeRO stage, and what `cpt`, `sft` and `dpo` check at start-up.
//!
//! Every term is written out, with the 8B and 70B numbers by hand, in docs/distributed.md
//! ("Memory plan"). The activation terms count the tensors this trainer's autodiff graph keeps
//! (`train::step`); `cloud-train/tests/budget.rs` compares them with the measured peak of real
//! CPU steps.

use llama_spec::LlamaConfig;

use crate::device::Backend;
use crate::train::config::TrainSection;

/// Bytes in a GiB.
pub const GIB: f64 = (1u64 << 30) as f64;

/// The ZeRO stages the plan covers: 0 replicated, 1 AdamW state sharded, 2 gradients too,
/// 3 parameters too.
pub const STAGES: [u8; 4] = [0, 1, 2, 3];

/// What a GPU holds beside the model: the CUDA context, cuBLAS workspaces, NCCL's own buffers
/// and the allocator's slack.
pub const GPU_RESERVE_BYTES: u64 = 2 << 30;

/// Parameter counts of a Llama model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamCounts {
    pub total: u64,
    /// One decoder layer (attention, MLP, two norms).
    pub per_layer: u64,
    /// The largest single tensor (the embedding for every Llama-3 size).
    pub largest: u64,
}

impl ParamCounts {
    pub fn of(c: &LlamaConfig) -> Self {
        let h = u64::from(c.hidden_size);
        let q = u64::from(c.num_attention_heads) * u64::from(c.head_dim());
        let kv = u64::from(c.n_kv_heads()) * u64::from(c.head_dim());
        let i = u64::from(c.intermediate_size);
        let v = u64::from(c.vocab_size);
        // q_proj, o_proj; k_proj, v_proj; gate, up, down; input and post-attention norms.
        let per_layer = 2 * q * h + 2 * kv * h + 3 * i * h + 2 * h;
        let heads = if c.tie_word_embeddings { 1 } else { 2 };
        Self {
            total: u64::from(c.num_hidden_layers) * per_layer + heads * v * h + h,
            per_layer,
            largest: (v * h).max(i * h),
        }
    }
}

/// The batch geometry and memory savers of a run (a `[train]` section, resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunShape {
    /// Examples per forward pass.
    pub mbs: usize,
    /// Examples per optimizer step over all ranks.
    pub gbs: usize,
    /// Sequences per example: 1, or 2 for DPO (chosen and rejected).
    pub rows_per_example: usize,
    pub seq_len: usize,
    /// BF16 activations (f32 master weights, gradients and AdamW state either way).
    pub bf16: bool,
    pub checkpoint_layers: bool,
    pub attention_block: Option<usize>,
    pub ce_chunk: Option<usize>,
    /// Compensated AdamW updates: a third f32 tensor per parameter.
    pub compensated: bool,
}

impl RunShape {
    /// The shape of a `[train]` section whose examples are `rows_per_example` sequences of at
    /// most `seq_len` tokens.
    pub fn of(train: &TrainSection, rows_per_example: usize, seq_len: usize) -> Self {
        Self {
            mbs: train.mbs,
            gbs: train.gbs,
            rows_per_example,
            seq_len,
            bf16: train.precision == "bf16",
            checkpoint_layers: train.recomputes_layers(),
            attention_block: train.attention_block,
            ce_chunk: train.ce_chunk,
            compensated: train.adamw().compensated,
        }
    }

    /// Tokens in one forward pass.
    pub fn micro_tokens(&self) -> u64 {
        (self.mbs * self.rows_per_example * self.seq_len) as u64
    }
}

/// Bytes per device, by what holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// f32 master weights (1/N of them under ZeRO-3).
    pub weights: u64,
    /// f32 gradients (1/N under ZeRO-2 and 3).
    pub gradients: u64,
    /// AdamW moments and compensations (1/N from ZeRO-1 on).
    pub optimizer: u64,
    /// The activations autodiff keeps for one micro-batch, at the step's peak.
    pub activations: u64,
    /// Collective staging, gathered layers, and the update's temporaries.
    pub buffers: u64,
    /// Context, workspaces and allocator slack ([`GPU_RESERVE_BYTES`] on a GPU).
    pub reserve: u64,
}

impl Budget {
    pub fn total(&self) -> u64 {
        self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.buffers
            + self.reserve
    }
}

/// The per-device budget at ZeRO `stage` over `world` ranks, with `reserve` bytes set aside.
pub fn budget(c: &LlamaConfig, shape: &RunShape, stage: u8, world: usize, reserve: u64) -> Budget {
    let p = ParamCounts::of(c);
    let n = world.max(1) as u64;
    let shard = |x: u64| x.div_ceil(n);
    let f32b = 4u64;
    let states = if shape.compensated { 3 } else { 2 };
    let weights = f32b * if stage >= 3 { shard(p.total) } else { p.total };
    let gradients = f32b * if stage >= 2 { shard(p.total) } else { p.total };
    let optimizer = states * f32b * if stage >= 1 { shard(p.total) } else { p.total };
    // The update works on one parameter (or shard) at a time: about three f32 temporaries of it.
    let largest_owned = if stage >= 1 {
        shard(p.largest)
    } else {
        p.largest
    };
    let update = 3 * f32b * largest_owned;
    // Stages 0-2: the collective engine stages the largest parameter twice (send and receive).
    // ZeRO-2 also holds a pass's gradients until they are reduce-scattered: with
    // `checkpoint_layers` one layer's, then the embedding's, head's and final norm's together;
    // without, the whole model's. ZeRO-3: the gathered f32 weights of two layers (this one and
    // the next), or of the embedding, and one layer's gradients; the collectives run in those
    // buffers. One rank has no collectives.
    let outside_layers = p.total - u64::from(c.num_hidden_layers) * p.per_layer;
    let pass_grads = if shape.checkpoint_layers {
        p.per_layer.max(outside_layers)
    } else {
        p.total
    };
    let collective = match stage {
        _ if n == 1 => 0,
        0 | 1 => 2 * f32b * p.largest,
        2 => 2 * f32b * p.largest + f32b * pass_grads,
        _ => f32b * (2 * p.per_layer.max(p.largest) + p.per_layer),
    };
    Budget {
        weights,
        gradients,
        optimizer,
        activations: activations(c, shape),
        buffers: update + collective,
        reserve,
    }
}

/// Peak bytes of activations for one micro-batch under `shape`'s memory savers.
///
/// Per layer, autodiff keeps (T tokens, `a` bytes per activation): the residual input, both
/// norms' outputs, the merged heads and the attention residual (5 h); Q before and after RoPE
/// and the attention output (3 q); K before and after RoPE, V, and V's grouped view (4 kv);
/// gate, up, silu(gate) and their product (4 i); the norms' f32 copies under BF16; and, per
/// attention score, the masked f32 scores, the f32 probabilities and the probabilities in
/// `a` (the softmax is in f32 whatever the compute dtype). With `checkpoint_layers` only the
/// layer inputs stay, and one layer is rebuilt at a time (its attention one block of queries
/// at a time with `attention_block`). The loss head holds the f32 logits, probabilities and
/// logit gradients of `ce_chunk` positions, and the top hidden states with their gradient.
/// Backward adds gradient temporaries of about one layer's size.
pub fn activations(c: &LlamaConfig, s: &RunShape) -> u64 {
    let a: u64 = if s.bf16 { 2 } else { 4 };
    let rows = (s.mbs * s.rows_per_example) as u64;
    let seq = s.seq_len as u64;
    let t = rows * seq;
    let h = u64::from(c.hidden_size);
    let nh = u64::from(c.num_attention_heads);
    let q = nh * u64::from(c.head_dim());
    let kv = u64::from(c.n_kv_heads()) * u64::from(c.head_dim());
    let i = u64::from(c.intermediate_size);
    let v = u64::from(c.vocab_size);
    let l = u64::from(c.num_hidden_layers);
    let norm_copies = if s.bf16 { 2 * t * h * 4 } else { 0 };
    let dense = t * (5 * h + 3 * q + 4 * kv + 4 * i) * a + norm_copies;
    let scores = |query_rows: u64| rows * nh * query_rows * seq * (8 + a);
    let grad_temps = t * (2 * h + q + 2 * kv + 2 * i) * a;
    let body = if s.checkpoint_layers {
        let attn = match s.attention_block {
            // One block's scores and probabilities, forward and backward.
            Some(b) => 2 * scores((b as u64).min(seq)),
            None => scores(seq),
        };
        l * t * h * a + dense + attn + grad_temps
    } else {
        l * (dense + scores(seq)) + grad_temps
    };
    let chunk = s.ce_chunk.map_or(t, |c| (c as u64).min(t));
    let head = 3 * chunk * v * 4 + 3 * t * h * a;
    body + head + t * h * a
}

/// Model FLOPs per trained token, forward and backward (PaLM's count: `6 N + 12 L h s`;
/// recomputation under `checkpoint_layers` is not counted, as MFU does not count it).
pub fn flops_per_token(c: &LlamaConfig, seq_len: usize) -> f64 {
    6.0 * ParamCounts::of(c).total as f64
        + 12.0 * f64::from(c.num_hidden_layers) * f64::from(c.hidden_size) * seq_len as f64
}

/// Whether `world` ranks can split a step of `gbs` examples into micro-batches of `mbs`.
pub fn world_divides(shape: &RunShape, world: usize) -> bool {
    world > 0 && shape.mbs > 0 && shape.gbs.is_multiple_of(shape.mbs * world)
}

/// The smallest world size (up to `max_world`) at which ZeRO `stage` fits `device_bytes` and
/// divides the global batch; `None` when no world does.
pub fn smallest_world(
    c: &LlamaConfig,
    shape: &RunShape,
    stage: u8,
    device_bytes: u64,
    reserve: u64,
    max_world: usize,
) -> Option<usize> {
    (1..=max_world).find(|&n| {
        world_divides(shape, n) && budget(c, shape, stage, n, reserve).total() <= device_bytes
    })
}

/// The largest micro-batch (dividing the global batch over `world` ranks) at which ZeRO
/// `stage` fits `device_bytes`; `None` when not even one example does.
pub fn largest_mbs(
    c: &LlamaConfig,
    shape: &RunShape,
    stage: u8,
    world: usize,
    device_bytes: u64,
    reserve: u64,
) -> Option<usize> {
    let per_rank = shape.gbs / world.max(1);
    (1..=per_rank).rev().find(|&mbs| {
        let s = RunShape {
            mbs,
            ..shape.clone()
        };
        world_divides(&s, world) && budget(c, &s, stage, world, reserve).total() <= device_bytes
    })
}

/// The expected speed of a step at `mfu` of `peak_tflops` on each of `world` devices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub tokens_per_s: f64,
    pub step_s: f64,
}

pub fn throughput(
    c: &LlamaConfig,
    shape: &RunShape,
    world: usize,
    peak_tflops: f64,
    mfu: f64,
) -> Throughput {
    let tokens_per_s = world as f64 * peak_tflops * 1e12 * mfu / flops_per_token(c, shape.seq_len);
    let step_tokens = (shape.gbs * shape.rows_per_example * shape.seq_len) as f64;
    Throughput {
        tokens_per_s,
        step_s: step_tokens / tokens_per_s,
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / GIB)
}

/// The plan as a Markdown table: one row per ZeRO stage at `world` ranks of `device_bytes`
/// each, with the largest micro-batch that fits there and the smallest world (up to
/// `max_world`) that fits the config's micro-batch. "no: gbs" marks a world that cannot split
/// the global batch into micro-batches (`gbs` is not a multiple of `mbs x world`).
pub fn table(
    c: &LlamaConfig,
    shape: &RunShape,
    world: usize,
    device_bytes: u64,
    reserve: u64,
    max_world: usize,
) -> String {
    let mut out = format!(
        "per device, GiB, at {world} ranks of {} GiB; micro-batch {} x {} x {} tokens ({}{}{}):\n\n\
         | ZeRO | weights | gradients | optimizer | activations | buffers | reserve | total | fits | largest mbs here | smallest world |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |\n",
        gib(device_bytes),
        shape.mbs,
        shape.rows_per_example,
        shape.seq_len,
        if shape.bf16 { "bf16" } else { "f32" },
        if shape.checkpoint_layers {
            ", layers checkpointed"
        } else {
            ""
        },
        if shape.compensated {
            ", compensated AdamW"
        } else {
            ""
        },
    );
    for stage in STAGES {
        let b = budget(c, shape, stage, world, reserve);
        let fits = match (world_divides(shape, world), b.total() <= device_bytes) {
            (false, _) => "no: gbs",
            (true, true) => "yes",
            (true, false) => "no",
        };
        let mbs = largest_mbs(c, shape, stage, world, device_bytes, reserve)
            .map_or("none".into(), |m| m.to_string());
        let smallest = smallest_world(c, shape, stage, device_bytes, reserve, max_world)
            .map_or(format!("> {max_world}"), |n| n.to_string());
        out.push_str(&format!(
            "| {stage} | {} | {} | {} | {} | {} | {} | {} | {} | {mbs} | {smallest} |\n",
            gib(b.weights),
            gib(b.gradients),
            gib(b.optimizer),
            gib(b.activations),
            gib(b.buffers),
            gib(b.reserve),
            gib(b.total()),
            fits,
        ));
    }
    out
}

/// This device's memory in bytes, where it can be found: the host's for the CPU backend, the
/// GPU's through the CUDA driver for `cuda` (in builds with NCCL, which loads the driver).
pub fn device_memory(backend: Backend, local_rank: usize) -> Option<u64> {
    let _ = local_rank;
    match backend {
        Backend::Flex => host_memory(),
        #[cfg(feature = "nccl")]
        Backend::Cuda => cudarc::driver::CudaContext::new(local_rank)
            .and_then(|ctx| ctx.bind_to_thread())
            .and_then(|()| cudarc::driver::result::mem_get_info())
            .ok()
            .map(|(_free, total)| total as u64),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// `MemTotal` of /proc/meminfo (Linux), in bytes.
fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama3_8b() -> LlamaConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "tie_word_embeddings": false
        }))
        .expect("config")
    }

    fn shape() -> RunShape {
        RunShape {
            mbs: 1,
            gbs: 64,
            rows_per_example: 1,
            seq_len: 16,
            bf16: true,
            checkpoint_layers: true,
            attention_block: None,
            ce_chunk: None,
            compensated: false,
        }
    }

    #[test]
    fn llama3_8b_has_its_published_parameter_count() {
        // Meta-Llama-3-8B's model.safetensors.index.json: 8,030,261,248 parameters.
        let p = ParamCounts::of(&llama3_8b());
        assert_eq!(p.total, 8_030_261_248);
        assert_eq!(p.largest, 128_256 * 4096);
    }

    #[test]
    fn each_stage_shards_one_more_kind_of_state() {
        let c = llama3_8b();
        let p = ParamCounts::of(&c).total;
        let s = shape();
        let b: Vec<Budget> = STAGES.iter().map(|&z| budget(&c, &s, z, 8, 0)).collect();
        assert_eq!(
            (b[0].weights, b[0].gradients, b[0].optimizer),
            (4 * p, 4 * p, 8 * p)
        );
        assert_eq!(
            (b[1].weights, b[1].gradients, b[1].optimizer),
            (4 * p, 4 * p, 8 * p.div_ceil(8))
        );
        assert_eq!((b[2].weights, b[2].gradients), (4 * p, 4 * p.div_ceil(8)));
        assert_eq!(b[3].weights, 4 * p.div_ceil(8));
        let compensated = budget(
            &c,
            &RunShape {
                compensated: true,
                ..s
            },
            1,
            8,
            0,
        );
        assert_eq!(compensated.optimizer, 12 * p.div_ceil(8));
    }

    #[test]
    fn the_search_respects_the_global_batch() {
        let c = llama3_8b();
        let s = RunShape { gbs: 24, ..shape() };
        assert!(world_divides(&s, 8) && !world_divides(&s, 16));
        // Everything replicated never fits 80 GB: 8 B parameters x 16 bytes.
        assert_eq!(smallest_world(&c, &s, 0, 80 << 30, 0, 24), None);
        let z3 = smallest_world(&c, &s, 3, 80 << 30, 0, 24).expect("ZeRO-3 fits");
        assert!(24 % z3 == 0, "{z3}");
        assert_eq!(largest_mbs(&c, &s, 0, 8, 80 << 30, 0), None);
    }
}
