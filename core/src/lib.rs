//! customer-value's computation, without I/O: normalized transaction lines in, every table
//! (customers, retention, cohorts, ltv, rejects, models) out as Arrow, with the exact partials
//! that let any engine split customers into partitions and merge the results. The CLI
//! (`customer-value`, which reads and writes files) and the Python package build on it.
//!
//! The public surface is [`api`]. The other modules are the pipeline's stages, public for the
//! CLI and the Python package of this workspace, not a stable interface:
//! config → source (the lines and the input rules) → orders → metrics (one file per table) →
//! compute (partitions, partials, merging).

#![warn(unreachable_pub)]

pub mod api;
#[doc(hidden)]
pub mod compute;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod orders;
#[doc(hidden)]
pub mod schema;
#[doc(hidden)]
pub mod source;
#[cfg(test)]
mod tests;
#[doc(hidden)]
pub mod time;

pub use api::{ApiError, Computation, Config, ConfigError, Partial, PartialBatches, Table, Tables};
