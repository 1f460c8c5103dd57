//! customer-value: transaction exports in, customer-value tables (customers, retention, cohorts,
//! ltv, rejects) and a run manifest out. The modules follow the pipeline:
//! config → source (read + normalize) → orders → metrics (one file per table) → sink.

pub mod alloc;
pub mod api;
pub mod cancel;
pub mod cli;
pub mod compute;
pub mod config;
pub mod error;
pub mod generate;
pub mod job;
pub mod metrics;
pub mod orders;
pub mod progress;
pub mod schema;
pub mod signals;
pub mod sink;
pub mod source;
pub mod storage;
pub(crate) mod testhook;
pub mod time;

pub use api::{ApiError, Computation, Partial, PartialBatches, Table, Tables};
pub use error::{Error, Result};
