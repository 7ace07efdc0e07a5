//! Configuration: defaults < file < environment < flags, validated into `Config`.
pub mod model;
pub use model::*;
