//! Source stage: finds the input files, reads them with polars (lazy scan, streaming engine,
//! only the mapped columns), and normalizes every row into typed transaction lines — or into a
//! reject with a reason, or counts it as after as_of. Nothing is dropped silently.

pub mod files;
pub mod normalize;
pub mod parse;
pub mod read;
pub mod spend;

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

pub use files::{discover, InputFile};
pub use normalize::{ingest, IngestOptions};

/// Segment value of a null or empty segment field (SPEC §3).
pub const UNKNOWN_SEGMENT: &str = "__unknown__";

/// Errors reading inputs. Each names the file (and column where it applies).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("input {path}: {message}")]
    Path { path: String, message: String },
    #[error("input file {file}: column '{column}' (input.columns.{key}) not found; columns are: {available}")]
    MissingColumn {
        file: String,
        column: String,
        key: String,
        available: String,
    },
    #[error(
        "input file {file}: column '{column}' has type {dtype}, which cannot be read as {expected}"
    )]
    ColumnType {
        file: String,
        column: String,
        dtype: String,
        expected: String,
    },
    #[error("input file {file}: {message}")]
    Read { file: String, message: String },
    #[error("input {0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// String interner: dense u32 ids in first-seen order.
#[derive(Debug, Default)]
pub struct Dict {
    map: FxHashMap<Box<str>, u32>,
    values: Vec<Box<str>>,
}

impl Dict {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.map.get(s) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(s.into());
        self.map.insert(s.into(), id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        &self.values[id as usize]
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[Box<str>] {
        &self.values
    }
}

/// Shards of the customer interner. Customers are split by a hash of their id, so each shard
/// can intern its rows in parallel; a customer id is `local id × SHARDS + shard`. Ids are then
/// nearly dense (shards fill evenly); the few unused ids have no orders and produce no rows.
pub const SHARDS: usize = 16;

/// Which shard a customer id (text) belongs to.
pub fn shard_of(s: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    s.hash(&mut h);
    // The high bits of FxHash mix best.
    (h.finish() >> 56) as usize % SHARDS
}

/// Customer-id interner, sharded so batches are interned in parallel.
#[derive(Debug)]
pub struct ShardedDict {
    pub shards: Vec<Dict>,
}

impl Default for ShardedDict {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Dict::default()).collect(),
        }
    }
}

impl ShardedDict {
    /// Interns one value (sequential path, for tests and small inputs).
    pub fn intern(&mut self, s: &str) -> u32 {
        let k = shard_of(s);
        self.shards[k].intern(s) * SHARDS as u32 + k as u32
    }

    pub fn get(&self, id: u32) -> &str {
        self.shards[id as usize % SHARDS].get(id / SHARDS as u32)
    }

    /// Size of the id space (ids are below this).
    pub fn len(&self) -> usize {
        self.shards.iter().map(Dict::len).max().unwrap_or(0) * SHARDS
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(Dict::is_empty)
    }

    /// Number of distinct customers interned.
    pub fn count(&self) -> usize {
        self.shards.iter().map(Dict::len).sum()
    }
}

/// Interner for keys that are only compared, never printed (order ids): no copy of the text
/// is kept besides the map's.
#[derive(Debug, Default)]
pub struct KeyDict {
    map: FxHashMap<Box<str>, u32>,
}

impl KeyDict {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.map.get(s) {
            return id;
        }
        let id = self.map.len() as u32;
        self.map.insert(s.into(), id);
        id
    }
}

/// Normalized transaction lines (struct of arrays). Only lines before the cutoff are kept.
#[derive(Debug, Default)]
pub struct Lines {
    /// Customer id (index into `Ingested::customers`).
    pub cust: Vec<u32>,
    /// Order key: an interned order_id, or `ROW_ORDER_BASE + line number` when the line has none.
    pub order: Vec<u64>,
    /// Input file index (into `IngestStats::files`).
    pub file: Vec<u32>,
    pub ts_utc: Vec<i64>,
    pub ts_local: Vec<i64>,
    /// Amount in minor units.
    pub amount: Vec<i64>,
    /// Cost in minor units (empty when no cost column is mapped).
    pub cost: Vec<i64>,
    /// Segment value ids, `n_dims` per line.
    pub seg: Vec<u32>,
}

/// Order keys at or above this are single-line orders without an order_id.
pub const ROW_ORDER_BASE: u64 = 1 << 40;

impl Lines {
    pub fn len(&self) -> usize {
        self.cust.len()
    }
    pub fn is_empty(&self) -> bool {
        self.cust.is_empty()
    }
}

/// A rejected input row, kept for the rejects table.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub file: String,
    /// 1-based data row within the file (header excluded).
    pub row: u64,
    pub reason: String,
    pub customer_id: Option<String>,
    pub ts: Option<String>,
    pub amount: Option<String>,
    /// Local wall-clock time of the row when its ts was readable (not written out).
    pub ts_local: Option<i64>,
}

/// Per-file accounting, as recorded in the manifest's `inputs`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileStats {
    pub url: String,
    pub format: String,
    pub size: u64,
    pub mtime: Option<String>,
    /// Entity tag of an object-store input.
    pub etag: Option<String>,
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
    pub rows_after_as_of: u64,
}

/// Row accounting (SPEC §4): read = used + rejected + after as_of.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestStats {
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
    pub rows_after_as_of: u64,
    pub rejects_by_reason: BTreeMap<String, u64>,
    pub files: Vec<FileStats>,
}

/// Everything the source stage hands on.
#[derive(Debug, Default)]
pub struct Ingested {
    pub lines: Lines,
    pub customers: ShardedDict,
    /// One dictionary per configured segment column, in config order.
    pub segments: Vec<Dict>,
    pub has_cost: bool,
    pub rejects: Vec<Reject>,
    pub stats: IngestStats,
}
