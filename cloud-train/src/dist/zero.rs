//! The model's parameters in a fixed order (HF order, the same on every rank whatever the
//! parameter ids); ZeRO stage 1: AdamW state for this rank's 1/N of every parameter;
//! ZeRO stage 2: the gradient kept as this rank's 1/N too, reduce-scattered as the backward
//! pass produces it ([`ShardGrads`]); and ZeRO stage 3: the parameters themselves kept as this
//! rank's 1/N ([`ShardedAdamW::shard_params`]), gathered as passes need them
//! (`super::zero3::Gatherer`).
//!
//! Each parameter is cut into `world` equal parts (the last padded): rank `r` owns part `r` of
//! every parameter, so the shards are balanced to one element per parameter, and every
//! collective moves one parameter at a time (host memory is bounded by the largest
//! parameter, not the model). Each rank updates its parts with the same element-wise AdamW
//! arithmetic as the unsharded optimizer (`train::optim::adamw_update`), so the result does
//! not depend on where the cuts fall.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;

use super::{Collective, CommError, Stepped, Update};
use crate::checkpoint::safetensors::{self, Dtype};
use crate::checkpoint::StateFile;
use crate::error::CheckpointError;
use crate::model::params::{named_id_params, IdParam, ParamValue};
use crate::model::Llama;
use crate::train::optim::{adamw_update, both_moments, AdamWSettings, Moments, STATE_SUFFIXES};

/// One parameter, and this layout's cut of it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub id: ParamId,
    pub numel: usize,
    pub dims: Vec<usize>,
    /// Weight decay applies (matrices; norms only with `decay_norms`).
    pub decay: bool,
    /// Elements per rank: `numel.div_ceil(world)`.
    pub part: usize,
    /// Outside the decoder layers: the embedding, the final norm, the head.
    pub root: bool,
}

impl Slot {
    /// Rank `r`'s range of the parameter (empty past the end).
    pub fn range(&self, r: usize) -> std::ops::Range<usize> {
        crate::checkpoint::shards::part_range(self.numel, self.part, r)
    }
}

/// Every parameter's slot, in HF order.
#[derive(Debug, Clone)]
pub struct Layout {
    pub slots: Vec<Slot>,
    pub world: usize,
    by_id: HashMap<ParamId, usize>,
}

impl Layout {
    pub fn new(model: &Llama, settings: &AdamWSettings, world: usize) -> Self {
        Self::with_shapes(model, settings, world, &HashMap::new())
    }

    /// [`Layout::new`] where `shapes` gives parameters' full shapes by HF name (a ZeRO-3
    /// shell's tensors are placeholders); the others are the tensors' own.
    pub fn with_shapes(
        model: &Llama,
        settings: &AdamWSettings,
        world: usize,
        shapes: &HashMap<String, Vec<usize>>,
    ) -> Self {
        let world = world.max(1);
        let in_layers: std::collections::HashSet<ParamId> = model
            .layers
            .iter()
            .flat_map(|b| b.params().into_iter().map(|p| p.id))
            .collect();
        let mut slots = Vec::new();
        for (name, p) in named_id_params(model) {
            let (dims, rank2) = match &p.value {
                ParamValue::D1(t) => (t.dims().to_vec(), false),
                ParamValue::D2(t) => (t.dims().to_vec(), true),
            };
            let dims = shapes.get(&name).cloned().unwrap_or(dims);
            let numel = dims.iter().product();
            slots.push(Slot {
                name,
                id: p.id,
                numel,
                dims,
                decay: settings.decay_norms || rank2,
                part: numel.div_ceil(world),
                root: !in_layers.contains(&p.id),
            });
        }
        let by_id = slots.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        Self {
            slots,
            world,
            by_id,
        }
    }

    /// The slot of parameter `id`.
    pub fn slot_of(&self, id: ParamId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// Elements of all parameters.
    pub fn elements(&self) -> usize {
        self.slots.iter().map(|s| s.numel).sum()
    }

    /// One parameter's gradient as f32 values, if it has one.
    pub fn grad_values(&self, grads: &GradientsParams, i: usize) -> Option<Vec<f32>> {
        let s = &self.slots[i];
        let data = if s.dims.len() == 1 {
            grads.get::<1>(s.id).map(|g| g.into_data())
        } else {
            grads.get::<2>(s.id).map(|g| g.into_data())
        };
        data.and_then(|d| d.convert::<f32>().try_into_vec::<f32>().ok())
    }

    /// Whether parameter `i` has a gradient in `grads`.
    pub fn has_grad(&self, grads: &GradientsParams, i: usize) -> bool {
        let s = &self.slots[i];
        if s.dims.len() == 1 {
            grads.get::<1>(s.id).is_some()
        } else {
            grads.get::<2>(s.id).is_some()
        }
    }

    /// Register `values` as parameter `i`'s gradient.
    pub fn register_grad(
        &self,
        grads: &mut GradientsParams,
        i: usize,
        values: Vec<f32>,
        device: &Device,
    ) {
        let s = &self.slots[i];
        if s.dims.len() == 1 {
            grads.register::<1>(
                s.id,
                Tensor::from_data(TensorData::new(values, [s.numel]), device),
            );
        } else {
            let d = [s.dims[0], s.dims[1]];
            grads.register::<2>(s.id, Tensor::from_data(TensorData::new(values, d), device));
        }
    }

    /// Replace parameters by new values, one at a time in the module's visiting order (the
    /// same on every rank): `values(slot index)` gives a parameter's full new values, or
    /// `None` to keep it. The first error stops further replacements and is returned.
    pub fn write_params<M: Module, E>(
        &self,
        model: M,
        values: impl FnMut(usize) -> Result<Option<Vec<f32>>, E>,
    ) -> Result<M, E> {
        let mut mapper = SetParams {
            layout: self,
            values,
            error: None,
        };
        let model = model.map(&mut mapper);
        match mapper.error {
            Some(e) => Err(e),
            None => Ok(model),
        }
    }
}

struct SetParams<'l, F, E> {
    layout: &'l Layout,
    values: F,
    error: Option<E>,
}

impl<F, E> ModuleMapper for SetParams<'_, F, E>
where
    F: FnMut(usize) -> Result<Option<Vec<f32>>, E>,
{
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(i) = self.layout.slot_of(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        if self.error.is_some() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let v = match (self.values)(i) {
            Ok(Some(v)) => v,
            Ok(None) => return Param::from_mapped_value(id, tensor, mapper),
            Err(e) => {
                self.error = Some(e);
                return Param::from_mapped_value(id, tensor, mapper);
            }
        };
        // The slot's shape, not the tensor's: a ZeRO-3 shell's placeholder becomes whole.
        let dims = self.layout.slots[i].dims.clone();
        Param::from_mapped_value(id, replaced(tensor, TensorData::new(v, dims)), mapper)
    }
}

/// A tensor with `data` in place of `tensor`'s values, keeping its dtype, device and autodiff
/// settings.
fn replaced<const D: usize>(tensor: Tensor<D>, data: TensorData) -> Tensor<D> {
    let require_grad = tensor.is_require_grad();
    let checkpointing = tensor.gradient_checkpointing_strategy();
    let inner = tensor.inner();
    let master = inner.dtype();
    let device = inner.device();
    drop(inner);
    let value: Tensor<D> = Tensor::from_data(data, &device);
    let mut t = Tensor::from_inner(value.cast(master));
    if let Some(strategy) = checkpointing {
        t = t.with_gradient_checkpointing_strategy(strategy);
    }
    if require_grad {
        t = t.require_grad();
    }
    t
}

/// Every parameter of a module replaced by a placeholder of one element per row (1-D: one
/// element), keeping its id and autodiff settings: the shell of a ZeRO-3 model, whose row
/// counts (the vocabulary) still read true.
pub(super) struct Hollow;

impl ModuleMapper for Hollow {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let mut shape = [1usize; D];
        if D > 1 {
            shape[0] = tensor.dims()[0];
        }
        let n = shape.iter().product();
        let data = TensorData::new(vec![0f32; n], shape.to_vec());
        Param::from_mapped_value(id, replaced(tensor, data), mapper)
    }
}

/// A rank's part of a sharded checkpoint ([`ShardedAdamW::shard_parts`]).
pub struct ShardParts {
    /// (name, this rank's values) of every parameter and optimizer tensor.
    pub parts: Vec<(String, Vec<f32>)>,
    /// Every tensor's full shape.
    pub shapes: std::collections::BTreeMap<String, Vec<usize>>,
}

/// Why an optimizer step made no update.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The global gradient norm is not finite (every rank sees the same norm).
    #[error("gradient norm {0}")]
    Diverged(f64),
    #[error(transparent)]
    Comm(#[from] CommError),
}

/// ZeRO-1 AdamW: moments of this rank's part of each parameter only.
pub struct ShardedAdamW {
    pub settings: AdamWSettings,
    pub step: u64,
    pub layout: Layout,
    rank: usize,
    /// Moments of this rank's part, by slot index.
    state: HashMap<usize, Moments>,
    /// Slots with optimizer state somewhere (the same set on every rank, also where this
    /// rank's part of the parameter is empty).
    stepped: std::collections::BTreeSet<usize>,
    /// ZeRO-3: this rank's part of every parameter, by slot (the f32 master values; the model
    /// is then a shell, see [`ShardedAdamW::shard_params`]).
    master: Option<Vec<Vec<f32>>>,
}

impl ShardedAdamW {
    pub fn new(settings: AdamWSettings, layout: Layout, rank: usize) -> Self {
        Self {
            settings,
            step: 0,
            layout,
            rank,
            state: HashMap::new(),
            stepped: Default::default(),
            master: None,
        }
    }

    /// ZeRO-3: keep this rank's part of every parameter of `model` and return its shell (every
    /// parameter a placeholder, ids kept). From then on the updates apply to the parts, and
    /// whole parameters exist only while a pass has gathered them ([`Gatherer`]).
    pub fn shard_params(&mut self, model: Llama) -> Result<Llama, CommError> {
        let values: HashMap<ParamId, ParamValue> = model
            .params()
            .into_iter()
            .map(|p| (p.id, p.value))
            .collect();
        let mut master = Vec::with_capacity(self.layout.slots.len());
        for slot in &self.layout.slots {
            let all = values
                .get(&slot.id)
                .ok_or_else(|| CommError::Mismatch(format!("no parameter {}", slot.name)))?
                .to_f32()
                .map_err(|e| CommError::Mismatch(format!("{}: {e}", slot.name)))?;
            master.push(all[slot.range(self.rank)].to_vec());
        }
        drop(values);
        self.master = Some(master);
        Ok(model.map(&mut Hollow))
    }

    /// ZeRO-3 from parts read directly (the model is already a shell): `part(slot, range)`
    /// gives this rank's values of each parameter.
    pub fn set_parts<E>(
        &mut self,
        mut part: impl FnMut(&Slot, std::ops::Range<usize>) -> Result<Vec<f32>, E>,
    ) -> Result<(), E> {
        let mut master = Vec::with_capacity(self.layout.slots.len());
        for slot in &self.layout.slots {
            master.push(part(slot, slot.range(self.rank))?);
        }
        self.master = Some(master);
        Ok(())
    }

    /// Parameter values this rank keeps between passes: its parts under ZeRO-3, else all.
    pub fn param_elements(&self) -> usize {
        match &self.master {
            Some(m) => m.iter().map(Vec::len).sum(),
            None => self.layout.elements(),
        }
    }

    /// This rank's part of parameter `i` (ZeRO-3; empty otherwise).
    pub fn part(&self, i: usize) -> &[f32] {
        self.master.as_ref().map_or(&[], |m| &m[i])
    }

    /// The kinds of AdamW state saved. Every rank holds the same kinds (compensations or not),
    /// also for parameters whose part on this rank is empty.
    fn suffixes(&self) -> &'static [&'static str] {
        if self.settings.compensated {
            &STATE_SUFFIXES[..]
        } else {
            &STATE_SUFFIXES[..2]
        }
    }

    /// This rank's values of moment `suffix` of parameter `i` (empty if it has none).
    fn moment_part(&self, i: usize, suffix: &str) -> Vec<f32> {
        self.state
            .get(&i)
            .and_then(|m| {
                m.named()
                    .into_iter()
                    .find(|(s, _)| *s == suffix)
                    .map(|(_, t)| to_vec(t.clone()))
            })
            .unwrap_or_default()
    }

    /// This rank's part of a sharded checkpoint: of its AdamW state and (ZeRO-3) of every
    /// parameter, by name, and every tensor's full shape (the same on every rank).
    pub fn shard_parts(&self) -> ShardParts {
        let mut parts = Vec::new();
        let mut shapes = std::collections::BTreeMap::new();
        for (i, slot) in self.layout.slots.iter().enumerate() {
            if self.master.is_some() {
                parts.push((slot.name.clone(), self.part(i).to_vec()));
                shapes.insert(slot.name.clone(), slot.dims.clone());
            }
            if !self.stepped.contains(&i) {
                continue;
            }
            for &suffix in self.suffixes() {
                let key = format!("{}.{suffix}", slot.name);
                parts.push((key.clone(), self.moment_part(i, suffix)));
                shapes.insert(key, slot.dims.clone());
            }
        }
        ShardParts { parts, shapes }
    }

    /// Whether the parameters are sharded too (ZeRO-3).
    pub fn shards_params(&self) -> bool {
        self.master.is_some()
    }

    /// Elements of AdamW state this rank holds (both moments, and compensations).
    pub fn state_elements(&self) -> usize {
        self.state.values().map(Moments::elements).sum()
    }

    /// One optimizer step from this rank's gradients (summed over its micro-batches):
    /// reduce-scatter each parameter's gradient, then [`ShardedAdamW::apply`].
    pub fn step(
        &mut self,
        comm: &dyn Collective,
        model: Llama,
        grads: GradientsParams,
        update: Update,
    ) -> Stepped {
        let world = self.layout.world;
        let n = self.layout.slots.len();
        // This rank's part of every summed gradient.
        let mut parts: Vec<Option<Vec<f32>>> = vec![None; n];
        let mut padded = Vec::new();
        for (i, part) in parts.iter_mut().enumerate() {
            let Some(g) = self.layout.grad_values(&grads, i) else {
                continue;
            };
            let slot = &self.layout.slots[i];
            padded.clear();
            padded.extend_from_slice(&g);
            padded.resize(world * slot.part, 0.0);
            let mut mine = vec![0f32; slot.part];
            comm.reduce_scatter_sum(&padded, &mut mine)?;
            mine.truncate(slot.range(self.rank).len());
            *part = Some(mine);
        }
        drop(grads);
        self.apply(comm, model, parts, update)
    }

    /// The update from this rank's part of each summed gradient (`None`: the parameter had no
    /// gradient on any rank): the global norm from the parts, clipping, the AdamW update of
    /// this rank's parts, and the parameters all-gathered again. Returns the model and the
    /// norm before clipping.
    pub fn apply(
        &mut self,
        comm: &dyn Collective,
        model: Llama,
        parts: Vec<Option<Vec<f32>>>,
        update: Update,
    ) -> Stepped {
        let Update { lr, max_norm } = update;
        let world = self.layout.world;
        let n = self.layout.slots.len();
        // 2. The global norm, as clip_grad_norm_ computes it.
        let mut sq = [parts
            .iter()
            .flatten()
            .flat_map(|v| v.iter())
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()];
        comm.all_reduce_sum_f64(&mut sq)?;
        let norm = sq[0].sqrt();
        if !norm.is_finite() {
            return Err(StepError::Diverged(norm));
        }
        let coef = crate::train::optim::clip_coefficient(norm, max_norm);
        // 3. Update this rank's parts.
        self.step += 1;
        let values: HashMap<ParamId, ParamValue> = model
            .params()
            .into_iter()
            .map(|p| (p.id, p.value))
            .collect();
        let device = model.embed_tokens.val().device();
        let mut updated: Vec<Option<Vec<f32>>> = vec![None; n];
        for (i, part) in parts.into_iter().enumerate() {
            let Some(g) = part else {
                continue;
            };
            let slot = &self.layout.slots[i];
            let range = slot.range(self.rank);
            self.stepped.insert(i);
            if range.is_empty() {
                updated[i] = Some(Vec::new());
                continue;
            }
            let p = match (&self.master, values.get(&slot.id)) {
                (Some(master), _) => Tensor::<2>::from_data(
                    TensorData::new(master[i].clone(), [1, range.len()]),
                    &device,
                ),
                (None, Some(ParamValue::D1(t))) => {
                    Tensor::<1>::from_inner(t.clone().inner()).reshape([1, slot.numel])
                }
                (None, Some(ParamValue::D2(t))) => {
                    Tensor::<2>::from_inner(t.clone().inner()).reshape([1, slot.numel])
                }
                (None, None) => continue,
            };
            let p = if self.master.is_some() {
                p
            } else {
                p.cast(DType::F32).narrow(1, range.start, range.len())
            };
            let g = Tensor::<2>::from_data(TensorData::new(g, [1, range.len()]), &device);
            let g = if coef == 1.0 { g } else { g.mul_scalar(coef) };
            let prev = self.state.remove(&i);
            let (p, m) = adamw_update(&self.settings, self.step, p, g, prev, lr, slot.decay);
            self.state.insert(i, m);
            updated[i] = Some(to_vec(p));
        }
        drop(values);
        // ZeRO-3: the parts are the parameters; passes gather them when they need them.
        if let Some(master) = &mut self.master {
            for (i, u) in updated.into_iter().enumerate() {
                if let Some(u) = u {
                    master[i] = u;
                }
            }
            return Ok((model, norm));
        }
        // 4. Every rank gets every updated parameter back.
        let model = self
            .layout
            .write_params(model, |i| -> Result<_, CommError> {
                let Some(mine) = &updated[i] else {
                    return Ok(None);
                };
                let slot = &self.layout.slots[i];
                let mut send = mine.clone();
                send.resize(slot.part, 0.0);
                let mut full = vec![0f32; world * slot.part];
                comm.all_gather(&send, &mut full)?;
                full.truncate(slot.numel);
                Ok(Some(full))
            })?;
        Ok((model, norm))
    }

    /// Write the whole state in [`crate::train::AdamW::save`]'s format (by HF name, full
    /// shapes) to `path` on the rank that passes one; every rank must call this (each moment
    /// is all-gathered, one parameter at a time).
    pub fn save(&self, comm: &dyn Collective, path: Option<&Path>) -> Result<(), CheckpointError> {
        let world = self.layout.world;
        let comm_err = |e: CommError| CheckpointError::Format {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            message: format!("gathering the optimizer state: {e}"),
        };
        let suffixes = self.suffixes();
        let keys: Vec<(String, Vec<usize>, usize, &str)> = self
            .layout
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| self.stepped.contains(i))
            .flat_map(|(i, s)| {
                suffixes
                    .iter()
                    .map(move |&suffix| (format!("{}.{suffix}", s.name), s.dims.clone(), i, suffix))
            })
            .collect();
        let gather = |i: usize, suffix: &str| -> Result<Vec<f32>, CheckpointError> {
            let slot = &self.layout.slots[i];
            let mut send = self.moment_part(i, suffix);
            send.resize(slot.part, 0.0);
            let mut full = vec![0f32; world * slot.part];
            comm.all_gather(&send, &mut full).map_err(comm_err)?;
            full.truncate(slot.numel);
            Ok(full)
        };
        match path {
            Some(p) => {
                let names: Vec<(String, Vec<usize>)> = keys
                    .iter()
                    .map(|(k, d, _, _)| (k.clone(), d.clone()))
                    .collect();
                let index: HashMap<&str, (usize, &str)> = keys
                    .iter()
                    .map(|(k, _, i, s)| (k.as_str(), (*i, *s)))
                    .collect();
                let mut buf = Vec::new();
                safetensors::write(p, Dtype::F32, &names, |key| {
                    let (i, suffix) = index[key];
                    let v = gather(i, suffix)?;
                    Dtype::F32.from_f32(&v, &mut buf);
                    Ok(std::mem::take(&mut buf))
                })
            }
            None => {
                for (_, _, i, suffix) in &keys {
                    gather(*i, suffix)?;
                }
                Ok(())
            }
        }
    }

    /// Read a state written by `AdamW::save` or [`ShardedAdamW::save`] (at any world size):
    /// this rank keeps its parts.
    pub fn load(&mut self, path: &Path, step: u64, device: &Device) -> Result<(), CheckpointError> {
        let file = StateFile::open(path)?;
        self.state.clear();
        self.stepped.clear();
        for (i, slot) in self.layout.slots.iter().enumerate() {
            let range = slot.range(self.rank);
            let read = |suffix: &str| -> Result<Option<Vec<f32>>, CheckpointError> {
                let key = format!("{}.{suffix}", slot.name);
                let Some(v) = file.read(&key)? else {
                    return Ok(None);
                };
                if v.len() != slot.numel {
                    return Err(CheckpointError::format(
                        path,
                        format!("{key}: {} values, the model has {}", v.len(), slot.numel),
                    ));
                }
                Ok(Some(v[range.clone()].to_vec()))
            };
            let tensor =
                |part: Vec<f32>| Tensor::from_data(TensorData::new(part, [1, range.len()]), device);
            let pair = both_moments(read("exp_avg")?, read("exp_avg_sq")?, path, &slot.name)?;
            let compensation = read("compensation")?;
            if let Some((exp_avg, exp_avg_sq)) = pair {
                self.stepped.insert(i);
                if !range.is_empty() {
                    let (exp_avg, exp_avg_sq) = (tensor(exp_avg), tensor(exp_avg_sq));
                    self.state.insert(
                        i,
                        Moments {
                            exp_avg,
                            exp_avg_sq,
                            compensation: compensation.map(tensor),
                        },
                    );
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

/// ZeRO-2's gradient: this rank's part of every parameter's gradient, summed over ranks and
/// over the passes of a step. Each [`ShardGrads::take`] reduce-scatters a group of parameters
/// (a layer) as soon as its gradients are final, so the whole gradient never exists at once.
pub struct ShardGrads {
    /// By slot: this rank's part, `slot.part` values (padding included).
    parts: Vec<Option<Vec<f32>>>,
    /// By slot: this rank had a gradient for it in some pass of the step.
    had: Vec<bool>,
    padded: Vec<f32>,
}

impl ShardGrads {
    pub fn new(layout: &Layout) -> Self {
        Self {
            parts: vec![None; layout.slots.len()],
            had: vec![false; layout.slots.len()],
            padded: Vec::new(),
        }
    }

    /// Elements held (this rank's parts).
    pub fn elements(&self) -> usize {
        self.parts.iter().flatten().map(Vec::len).sum()
    }

    /// Add `weight x` the gradients of `params` (taken out of `grads`; zeros where absent) to
    /// this rank's parts, each summed over ranks by one reduce-scatter.
    pub fn take(
        &mut self,
        comm: &dyn Collective,
        layout: &Layout,
        params: &[IdParam],
        grads: &mut GradientsParams,
        weight: f64,
    ) -> Result<(), CommError> {
        let world = layout.world;
        for p in params {
            let Some(i) = layout.slot_of(p.id) else {
                continue;
            };
            let slot = &layout.slots[i];
            let data = match p.value {
                ParamValue::D1(_) => grads.remove::<1>(p.id).map(|g| g.into_data()),
                ParamValue::D2(_) => grads.remove::<2>(p.id).map(|g| g.into_data()),
            };
            let values = data.and_then(|d| d.convert::<f32>().try_into_vec::<f32>().ok());
            self.padded.clear();
            match values {
                Some(v) => {
                    self.had[i] = true;
                    let w = weight as f32;
                    self.padded
                        .extend(v.iter().map(|&x| if weight == 1.0 { x } else { x * w }));
                }
                None => self.padded.resize(slot.numel, 0.0),
            }
            self.padded.resize(world * slot.part, 0.0);
            let mut mine = vec![0f32; slot.part];
            comm.reduce_scatter_sum(&self.padded, &mut mine)?;
            match &mut self.parts[i] {
                Some(acc) => acc.iter_mut().zip(&mine).for_each(|(a, b)| *a += b),
                none => *none = Some(mine),
            }
        }
        Ok(())
    }

    /// The parts for [`ShardedAdamW::apply`] (trimmed to this rank's range), `None` for the
    /// parameters no rank had a gradient for; the buffer is left empty for the next step.
    pub fn finish(
        &mut self,
        comm: &dyn Collective,
        layout: &Layout,
        rank: usize,
    ) -> Result<Vec<Option<Vec<f32>>>, CommError> {
        let mut had: Vec<f64> = self.had.iter().map(|&h| f64::from(u8::from(h))).collect();
        comm.all_reduce_sum_f64(&mut had)?;
        let parts = std::mem::replace(&mut self.parts, vec![None; layout.slots.len()]);
        self.had.iter_mut().for_each(|h| *h = false);
        Ok(parts
            .into_iter()
            .zip(had)
            .enumerate()
            .map(|(i, (part, h))| {
                let mut part = part.filter(|_| h > 0.0)?;
                part.truncate(layout.slots[i].range(rank).len());
                Some(part)
            })
            .collect())
    }
}

/// A `[1, n]` tensor's values as f32.
fn to_vec(t: Tensor<2>) -> Vec<f32> {
    let n = t.dims()[1];
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_else(|_| vec![f32::NAN; n])
}
