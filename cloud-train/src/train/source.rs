//! Where a pass reads the model's parameters: from the model itself, or, under ZeRO-3, from
//! every rank's 1/N shards, gathered one decoder layer at a time just before it is used.
//!
//! A pass asks for the root parameters (embedding, final norm, head) once, then for each layer
//! as it reaches it (forward, and again in backward when layers are recomputed). Under ZeRO-3
//! each request is a collective, so every rank must make the same requests in the same order:
//! passes that a rank has no data for still run with `None` ([`super::step::position_nll_from`]).

use std::borrow::Cow;

use crate::dist::CommError;
use crate::model::{Block, Llama};

/// A source of whole parameters for one pass.
pub trait ParamSource {
    /// `model` with its embedding, final norm and head whole (its layers may be shells).
    fn root<'m>(&self, model: &'m Llama) -> Result<Cow<'m, Llama>, CommError>;
    /// Decoder layer `block` whole, its parameters keeping their ids and autodiff settings.
    fn layer<'m>(&self, block: &'m Block) -> Result<Cow<'m, Block>, CommError>;
    /// Whether layers must be recomputed in backward rather than kept whole for the whole pass
    /// (ZeRO-3: a pass never holds more than one gathered layer).
    fn layer_by_layer(&self) -> bool {
        false
    }
}

/// The parameters are the model's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl ParamSource for Local {
    fn root<'m>(&self, model: &'m Llama) -> Result<Cow<'m, Llama>, CommError> {
        Ok(Cow::Borrowed(model))
    }
    fn layer<'m>(&self, block: &'m Block) -> Result<Cow<'m, Block>, CommError> {
        Ok(Cow::Borrowed(block))
    }
}
