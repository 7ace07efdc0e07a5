//! Monitoring (DESIGN §7): reading the child's process tree from /proc (`procfs`) and its
//! inbound connections from sock_diag (`connections`). The thresholds and their sustain
//! windows join this module later; the supervisor owns the timer that calls the samplers,
//! and this module never acts on a process.

pub mod connections;
pub mod history;
pub mod procfs;

pub use history::SharedHistory;
#[allow(unused_imports)] // the supervisor and /process take these from here
pub use procfs::{ProcessInfo, Root, Sampler, Totals, TreeSample, cgroup_memory};
