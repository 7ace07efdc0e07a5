//! Monitoring (DESIGN §7): reading the child's process tree from /proc. The thresholds,
//! their sustain windows and the inbound-connection counter join this module later; the
//! supervisor owns the timer that calls the sampler, and this module never acts on a
//! process.
#![allow(dead_code)] // wired by /process and the monitor

pub mod procfs;

#[allow(unused_imports)] // the supervisor and /process take these from here
pub use procfs::{ProcessInfo, Root, Sampler, Totals, TreeSample, cgroup_memory};
