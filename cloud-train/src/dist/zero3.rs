//! ZeRO stage 3's parameter source: whole parameters all-gathered from every rank's part
//! ([`ShardedAdamW::shard_params`]) when a pass reaches them, one parameter per collective,
//! and dropped with the pass's copy (the root for the pass, a layer for its forward or its
//! recomputed backward).

use std::borrow::Cow;
use std::cell::Cell;

use burn::module::Module;

use super::zero::{Layout, ShardedAdamW};
use super::{Collective, CommError};
use crate::model::{Block, Llama};
use crate::train::ParamSource;

/// Gathers whole parameters from the ranks' parts; counts the most whole values a pass held.
pub struct Gatherer<'a> {
    pub(super) comm: &'a dyn Collective,
    pub(super) opt: &'a ShardedAdamW,
    /// Values of the root gathered for the current pass.
    pub(super) root: &'a Cell<usize>,
    /// The most whole values held at once (root + one layer).
    pub(super) peak: &'a Cell<usize>,
}

impl Gatherer<'_> {
    /// `module` with the parameters `pick` selects (by slot) gathered whole; returns it and
    /// the values gathered.
    fn gather<M: Module>(
        &self,
        module: M,
        pick: impl Fn(usize) -> bool,
    ) -> Result<(M, usize), CommError> {
        let layout: &Layout = &self.opt.layout;
        let world = layout.world;
        let mut count = 0;
        let module = layout.write_params(module, |i| -> Result<_, CommError> {
            if !pick(i) {
                return Ok(None);
            }
            let slot = &layout.slots[i];
            let mut send = self.opt.part(i).to_vec();
            send.resize(slot.part, 0.0);
            let mut full = vec![0f32; world * slot.part];
            self.comm.all_gather(&send, &mut full)?;
            full.truncate(slot.numel);
            count += slot.numel;
            Ok(Some(full))
        })?;
        Ok((module, count))
    }

    /// The whole model (every parameter gathered): for saving a checkpoint.
    pub fn whole(&self, shell: &Llama) -> Result<Llama, CommError> {
        Ok(self.gather(shell.clone(), |_| true)?.0)
    }
}

impl ParamSource for Gatherer<'_> {
    fn root<'m>(&self, model: &'m Llama) -> Result<Cow<'m, Llama>, CommError> {
        let slots = &self.opt.layout.slots;
        let (root, n) = self.gather(model.clone(), |i| slots[i].root)?;
        self.root.set(n);
        self.peak.set(self.peak.get().max(n));
        Ok(Cow::Owned(root))
    }

    fn layer<'m>(&self, block: &'m Block) -> Result<Cow<'m, Block>, CommError> {
        let (layer, n) = self.gather(block.clone(), |_| true)?;
        self.peak.set(self.peak.get().max(self.root.get() + n));
        Ok(Cow::Owned(layer))
    }

    fn layer_by_layer(&self) -> bool {
        true
    }
}
