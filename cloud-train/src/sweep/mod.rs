//! The (ALMR, LR) grid of CPT runs and the paper's frontiers over it (issue 8).

pub mod frontier;
pub mod grid;
pub mod report;
