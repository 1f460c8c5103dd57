//! `[storage]` (SPEC §5): object-store client settings.

use serde::{Deserialize, Serialize};

/// `[storage]`: how object stores are reached. Credentials and endpoints come from the
/// environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`); `options` adds object_store keys for every store
/// (e.g. `aws_region = "eu-west-1"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Retries per request (with exponential backoff).
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Give up retrying a request after this many seconds.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout_secs: u64,
    /// Timeout of one request, seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Timeout to connect, seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Extra object_store configuration keys for every store.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            retries: default_retries(),
            retry_timeout_secs: default_retry_timeout(),
            request_timeout_secs: default_request_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            options: Default::default(),
        }
    }
}

fn default_retries() -> usize {
    3
}
fn default_retry_timeout() -> u64 {
    60
}
fn default_request_timeout() -> u64 {
    120
}
fn default_connect_timeout() -> u64 {
    5
}
