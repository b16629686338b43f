//! cloud-train: the burn-based continual pre-training, SFT and DPO trainer.
//!
//! Not implemented yet: this crate only reserves its place in the workspace. The model core
//! (issue 5), `cpt` (issue 6), `sft`/`dpo` (issue 7), the sweep and frontier (issue 8), the
//! evaluation harness (issue 9) and multi-node training (issue 11) land here.
