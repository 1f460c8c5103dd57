//! Where customer-value's tables go, shared by the CLI and the Python package (a Spark driver
//! publishes with it): object store URLs, credentials and redaction (`storage`), the Parquet
//! writer, the atomic publish with its journal, the lock lease and the run manifest (`sink`),
//! and the hold points the kill tests stop a run at (`testhook`).

#![warn(unreachable_pub)]

pub mod sink;
pub mod storage;
pub mod testhook;

use customer_value_core::{config, schema, source};
