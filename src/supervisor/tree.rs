//! The process tree below gsup, for signalling what is left of it. The walk itself lives
//! with the monitor's sampler (`monitor::procfs`), so that killing and sampling agree on
//! what the tree is.

pub use crate::monitor::procfs::{descendants, group_in_tree};
