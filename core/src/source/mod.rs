//! The lines a run works on, as the readers hand them over: interned customer, order and segment
//! texts, typed lines, rejects and the row accounting. The readers (polars in the CLI, Arrow in the
//! library API) fill them; everything after reading works on them.

pub mod parse;
pub mod quality;
pub mod rules;

use std::collections::BTreeMap;

/// Segment value of a null or empty segment field (SPEC §3).
pub const UNKNOWN_SEGMENT: &str = "__unknown__";

/// Sum of |amount| + |cost| over all lines that every money sum of the job stays within: any
/// sum the tables hold (an order, a customer, a period, a segment) adds a subset of those lines,
/// so none can overflow the i64 minor units it is kept in.
pub const MONEY_ABS_LIMIT: u128 = i64::MAX as u128;

/// Acquisition spend summed per (segment_by, segment, period position) of a frame.
pub type SpendByPeriod = rustc_hash::FxHashMap<(String, String, usize), i64>;

/// Texts stored end to end in one string (no allocation per text), read back by position.
#[derive(Debug, Default)]
pub struct Texts {
    text: String,
    /// End offset of each text (its start is the previous text's end).
    ends: Vec<usize>,
}

impl Texts {
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    /// Text number `i`.
    pub fn get(&self, i: usize) -> &str {
        &self.text[if i == 0 { 0 } else { self.ends[i - 1] }..self.ends[i]]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// String interner: dense u32 ids in first-seen order. The texts live end to end in one arena,
/// so interning allocates nothing per value (at 10M order ids the per-value `Box<str>` keys cost
/// more time in malloc/free than the hashing itself). Each table entry is (id, 32 bits of the
/// value's hash) and the table hash is derived from those 32 bits: growing the table and
/// rejecting a non-matching entry then touch no other memory (at 100M rows these tables far
/// exceed the caches, and every extra load was a cache miss).
#[derive(Default)]
pub struct Dict {
    table: hashbrown::HashTable<(u32, u32)>,
    /// Value of each id.
    values: Texts,
}

impl std::fmt::Debug for Dict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dict").field("len", &self.len()).finish()
    }
}

/// Hash of a text: FxHash, then a full 64-bit mix. FxHash alone leaves some bits weakly mixed
/// for ids that differ in one character (O000000001, O000000002, …), and hashbrown takes the
/// bucket from the low bits and a 7-bit tag from the top bits: without the mix, 100M rows spent
/// half their time probing (measured; the time grew 22× from 10M to 100M rows).
pub fn text_hash(s: &str) -> u64 {
    use std::hash::BuildHasher;
    mix(rustc_hash::FxBuildHasher.hash_one(s))
}

/// The murmur3 64-bit finalizer: every output bit depends on every input bit.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Dict {
    pub fn intern(&mut self, s: &str) -> u32 {
        self.intern_hashed(s, text_hash(s))
    }

    /// Interns `s` whose `text_hash` is already known (the customer path hashes once for both
    /// the shard and the table).
    pub fn intern_hashed(&mut self, s: &str, hash: u64) -> u32 {
        // The customer shard is taken from the top bits of `hash` (constant within a shard):
        // the table uses its low 32 bits.
        let h32 = hash as u32;
        let table_hash = |h32: u32| mix(h32 as u64);
        let Dict { table, values } = self;
        match table.entry(
            table_hash(h32),
            |&(id, h)| h == h32 && values.get(id as usize) == s,
            |&(_, h)| table_hash(h),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => e.get().0,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let id = values.len() as u32;
                v.insert((id, h32));
                values.push(s);
                id
            }
        }
    }

    pub fn get(&self, id: u32) -> &str {
        self.values.get(id as usize)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Values in id order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len() as u32).map(|id| self.get(id))
    }

    /// `rank[id]` = position of value `id` when the values are sorted as text: ids are given
    /// in order of first appearance, ranks depend on the values only.
    pub fn rank(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.len() as u32).collect();
        ids.sort_unstable_by(|&a, &b| self.get(a).cmp(self.get(b)));
        let mut rank = vec![0; ids.len()];
        for (r, id) in ids.into_iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        rank
    }
}

/// Shards of the customer interner. Customers are split by a hash of their id, so each shard
/// can intern its rows in parallel; a customer id is `local id × SHARDS + shard`. Ids are then
/// nearly dense (shards fill evenly); the few unused ids have no orders and produce no rows.
pub const SHARDS: usize = 16;

/// Which shard a customer id belongs to, from its `text_hash`.
pub fn shard_of_hash(h: u64) -> usize {
    (h >> 56) as usize % SHARDS
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
        let h = text_hash(s);
        let k = shard_of_hash(h);
        self.shards[k].intern_hashed(s, h) * SHARDS as u32 + k as u32
    }

    pub fn get(&self, id: u32) -> &str {
        self.shards[id as usize % SHARDS].get(id / SHARDS as u32)
    }

    /// Whether `id` names an interned customer (ids are nearly, not fully, dense).
    pub fn contains(&self, id: u32) -> bool {
        ((id / SHARDS as u32) as usize) < self.shards[id as usize % SHARDS].len()
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

/// Normalized transaction lines (struct of arrays). Only lines before the cutoff are kept.
#[derive(Debug, Default)]
pub struct Lines {
    /// Customer id (index into `Ingested::customers`).
    pub cust: Vec<u32>,
    /// Order key: the `text_hash` of the order_id, or `ROW_ORDER_BASE + line number` when the
    /// line has none. Keys may collide; `order_ids` settles it (see `order_id`).
    pub order: Vec<u64>,
    /// Every line's order_id text (empty when it has none). Empty when no order_id column is
    /// mapped: the keys are then exact.
    pub order_ids: Texts,
    /// Input file of the lines, as runs: lines from `.1` on come from file `.0` (an index into
    /// `IngestStats::files`) up to the next run's start. Files are read one after another, so
    /// this is one entry per file instead of 4 bytes per line.
    pub file_runs: Vec<(u32, usize)>,
    /// UTC instant of each line; empty when the configured timezone is UTC, where it equals
    /// `ts_local` (8 bytes per line saved). Read it with `utc(i)`.
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
    /// Line `i`'s order_id text ("" when it has none or none are recorded). Two lines belong to
    /// the same order exactly when their customer, key and text are equal.
    pub fn order_id(&self, i: usize) -> &str {
        if self.order_ids.is_empty() {
            ""
        } else {
            self.order_ids.get(i)
        }
    }

    /// UTC instant (µs) of line `i`.
    pub fn utc(&self, i: usize) -> i64 {
        if self.ts_utc.is_empty() {
            self.ts_local[i]
        } else {
            self.ts_utc[i]
        }
    }

    pub fn len(&self) -> usize {
        self.cust.len()
    }
    pub fn is_empty(&self) -> bool {
        self.cust.is_empty()
    }

    /// Room for `n` more lines in every array the reading fills (`utc`: UTC instants are kept
    /// apart; `cost`, `order_ids`: those columns are mapped), so the arrays never grow by
    /// reallocation while batches are appended. Only reserved, not touched: capacity a file's
    /// rows after as_of leave unused costs no memory. A reservation the system refuses (a
    /// footer claiming more rows than memory could hold) is skipped: the arrays then grow as
    /// they are filled, as without one.
    pub fn reserve(&mut self, n: usize, n_dims: usize, utc: bool, cost: bool, order_ids: bool) {
        let _ = self.cust.try_reserve(n);
        let _ = self.order.try_reserve(n);
        if order_ids {
            let _ = self.order_ids.ends.try_reserve(n);
        }
        if utc {
            let _ = self.ts_utc.try_reserve(n);
        }
        let _ = self.ts_local.try_reserve(n);
        let _ = self.amount.try_reserve(n);
        if cost {
            let _ = self.cost.try_reserve(n);
        }
        let _ = self.seg.try_reserve(n.saturating_mul(n_dims));
    }

    /// Adds to `used[file][k]` the lines of each file counted first at date k: before cutoff k
    /// and not before cutoff k − 1 (`cutoffs` ascending; lines after the last are not counted),
    /// and keeps in `newest[k]` the latest local time among those lines.
    pub fn count_by_date(
        &self,
        cutoffs: &[i64],
        used: &mut [Vec<u64>],
        newest: &mut [Option<i64>],
    ) {
        let runs = &self.file_runs;
        for (r, &(f, start)) in runs.iter().enumerate() {
            let end = runs.get(r + 1).map_or(self.len(), |next| next.1);
            for &ts in &self.ts_local[start..end] {
                let k = cutoffs.partition_point(|&c| c <= ts);
                if k < cutoffs.len() {
                    used[f as usize][k] += 1;
                    newest[k] = Some(newest[k].map_or(ts, |n| n.max(ts)));
                }
            }
        }
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
    /// Blank lines of a CSV or NDJSON file: skipped, and not rows (not in `rows_read`).
    #[serde(default)]
    pub blank_lines: u64,
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
    /// Customers in customer_id text order (see `customer_order`).
    pub order: std::sync::OnceLock<CustomerOrder>,
    /// Every customer_id text in text order, as one Arrow array (see `sorted_customer_ids`).
    pub sorted_ids: std::sync::OnceLock<arrow::array::StringArray>,
    /// The lines went to disk as they were read (the input is larger than memory; `lines` is
    /// then empty, and the reader keeps them).
    pub spilled: bool,
    /// Σ |amount| + |cost| of the lines, in minor units (see `normalize::MONEY_ABS_LIMIT`).
    pub money_abs: u128,
    /// The file and row at which `money_abs` passed the limit, if it did.
    pub money_overflow_at: Option<(String, u64)>,
}

impl Ingested {
    /// Per segment column, the text-order rank of each value id (see `Dict::rank`).
    pub fn segment_ranks(&self) -> Vec<Vec<u32>> {
        self.segments.iter().map(Dict::rank).collect()
    }

    /// `rank[id]` = position of customer `id` when all customer ids are sorted as text (ids
    /// that name no customer rank last). Computed on first use and kept, so every as_of date of
    /// a backfill shares one sort.
    pub fn customer_rank(&self) -> &[u32] {
        &self.customer_order().rank
    }

    /// The customers sorted by customer_id text, computed on first use and kept.
    pub fn customer_order(&self) -> &CustomerOrder {
        self.order.get_or_init(|| {
            use rayon::prelude::*;
            let dict = &self.customers;
            // Sorted by the texts' first 16 bytes as a number (big-endian, zero-padded: the
            // same order as the bytes), and by the whole texts only where those are equal:
            // most comparisons are then one integer compare, not two lookups and a memcmp.
            let mut keyed: Vec<(u128, u32)> = (0..dict.len() as u32)
                .into_par_iter()
                .filter(|&id| dict.contains(id))
                .map(|id| (text_prefix(dict.get(id)), id))
                .collect();
            keyed.par_sort_unstable_by(|a, b| {
                a.0.cmp(&b.0).then_with(|| dict.get(a.1).cmp(dict.get(b.1)))
            });
            let ids: Vec<u32> = keyed.into_iter().map(|(_, id)| id).collect();
            let mut rank = vec![u32::MAX; dict.len()];
            for (pos, &id) in ids.iter().enumerate() {
                rank[id as usize] = pos as u32;
            }
            CustomerOrder { rank, ids }
        })
    }

    /// The customer_id text of every customer, at its rank. Built on first use and kept: the
    /// customers table of any date takes its ids from it in order, instead of looking each
    /// one up in the dictionary, whose texts lie in hash order.
    pub fn sorted_customer_ids(&self) -> &arrow::array::StringArray {
        self.sorted_ids.get_or_init(|| {
            let ids = &self.customer_order().ids;
            arrow::array::StringArray::from_iter_values(
                ids.iter().map(|&id| self.customers.get(id)),
            )
        })
    }
}

/// The first 16 bytes of `s` as a big-endian number, zero-padded: `a < b` as texts implies
/// `text_prefix(a) <= text_prefix(b)`.
fn text_prefix(s: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// Customers in customer_id text order.
#[derive(Debug, Default)]
pub struct CustomerOrder {
    /// `rank[id]`: position of customer `id` (`u32::MAX` for ids that name no customer).
    pub rank: Vec<u32>,
    /// `ids[position]`: the customer at a position.
    pub ids: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reserve_what_is_asked_and_skip_what_cannot_be_had() {
        let mut l = Lines::default();
        // 1000 lines, 2 segment dimensions, UTC kept apart, cost and order ids mapped.
        l.reserve(1000, 2, true, true, true);
        assert!(l.cust.capacity() >= 1000 && l.order.capacity() >= 1000);
        assert!(l.ts_utc.capacity() >= 1000 && l.cost.capacity() >= 1000);
        assert!(l.order_ids.ends.capacity() >= 1000 && l.seg.capacity() >= 2000);
        // Without UTC instants or cost: those arrays stay unallocated.
        let mut bare = Lines::default();
        bare.reserve(1000, 0, false, false, false);
        assert_eq!((bare.ts_utc.capacity(), bare.cost.capacity()), (0, 0));
        // More than any memory (usize::MAX / 4 lines of 8 bytes overflow the address space):
        // skipped, no panic, and the arrays still take lines.
        let mut huge = Lines::default();
        huge.reserve(usize::MAX / 4, 2, true, true, true);
        huge.amount.push(1);
        assert_eq!(huge.amount, vec![1]);
    }

    #[test]
    fn interner_is_exact_even_when_hashes_collide() {
        let mut d = Dict::default();
        // 100k distinct ids: dense ids in first-seen order, and each text reads back.
        let texts: Vec<String> = (0..100_000).map(|i| format!("O{i:09}")).collect();
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(d.intern(t), i as u32);
        }
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(d.intern(t), i as u32, "second intern of {t}");
            assert_eq!(d.get(i as u32), t);
        }
        assert_eq!(d.len(), 100_000);
        // Different texts given the same hash still get different ids (the text decides).
        let mut c = Dict::default();
        let (a, b, e) = (
            c.intern_hashed("a", 7),
            c.intern_hashed("b", 7),
            c.intern_hashed("", 7),
        );
        assert_eq!((a, b, e), (0, 1, 2));
        assert_eq!(c.intern_hashed("b", 7), 1);
        assert_eq!((c.get(0), c.get(1), c.get(2)), ("a", "b", ""));
        assert_eq!(c.iter().collect::<Vec<_>>(), vec!["a", "b", ""]);
    }

    #[test]
    fn customer_rank_follows_text_order() {
        let mut ing = Ingested::default();
        let ids: Vec<u32> = ["c10", "a", "c2", "b"]
            .iter()
            .map(|s| ing.customers.intern(s))
            .collect();
        let rank = ing.customer_rank();
        // Text order: a < b < c10 < c2.
        let got: Vec<u32> = ids.iter().map(|&id| rank[id as usize]).collect();
        assert_eq!(got, vec![2, 0, 3, 1]);
    }

    proptest::proptest! {
        /// The customers come in plain text order, also when texts share a 16-byte prefix,
        /// are shorter than it, or hold NUL bytes (which the zero padding also produces).
        #[test]
        fn customer_order_is_text_order(
            texts in proptest::collection::hash_set("(customer_prefix_)?[ab\\x00]{0,20}", 1..80)
        ) {
            let mut ing = Ingested::default();
            for t in &texts {
                ing.customers.intern(t);
            }
            let got: Vec<&str> = ing
                .customer_order()
                .ids
                .iter()
                .map(|&id| ing.customers.get(id))
                .collect();
            let mut want: Vec<&str> = texts.iter().map(String::as_str).collect();
            want.sort();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
