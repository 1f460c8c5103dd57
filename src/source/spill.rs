//! Spilling lines to disk for inputs larger than memory. While reading, the normalized lines are
//! handed over in chunks; each chunk is split by customer into `n` partitions (customer id
//! `c` goes to partition `c % n`, where it is known as `c / n`) and appended to that
//! partition's file as one zstd-compressed record. A partition is later read back whole: all of
//! a customer's lines, in input order, and nothing else, which is all the orders stage and the
//! fold need. Row accounting per input file and as_of date, and the earliest line, are taken
//! from each chunk before it leaves memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Lines;

/// zstd level of the spill records: the fastest, since they are read back once or twice.
const LEVEL: i32 = 1;

/// What every record of a spill holds (fixed for a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    n_dims: usize,
    utc: bool,
    cost: bool,
    order_ids: bool,
}

/// Lines spilled to one file per customer partition.
#[derive(Debug)]
pub(crate) struct Spill {
    dir: tempfile::TempDir,
    writers: Vec<BufWriter<File>>,
    layout: Option<Layout>,
    /// As_of cutoffs (local µs, ascending) the accounting is kept for.
    cutoffs: Vec<i64>,
    /// `used[file][k]`: lines of `file` first counted at date k (before cutoff k, not before
    /// cutoff k − 1). See [`Lines::count_by_date`].
    pub used: Vec<Vec<u64>>,
    /// Earliest local time of any line spilled.
    pub earliest: Option<i64>,
    /// `newest[k]`: the latest local time of the lines first counted at date k.
    pub newest: Vec<Option<i64>>,
    /// Lines spilled so far (the next line's number is this plus the lines in memory).
    pub lines: u64,
    /// Compressed bytes written.
    pub bytes: u64,
}

/// The file of partition `p` in the spill folder `dir`.
fn part_path(dir: &Path, p: usize) -> PathBuf {
    dir.join(format!("part-{p:05}.lines"))
}

/// Writing or reading a spill file failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpillError {
    #[error("spill file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("spill file {path}: a record is truncated")]
    Truncated { path: String },
    #[error("internal: spilled chunks differ in their columns")]
    Layout,
}

fn io_err(path: &Path, source: std::io::Error) -> SpillError {
    SpillError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Spill {
    /// Creates `n` empty partition files in a fresh folder under `parent`.
    pub(crate) fn new(parent: &Path, n: usize, cutoffs: Vec<i64>) -> Result<Spill, SpillError> {
        let dir = tempfile::Builder::new()
            .prefix("customer-value-spill-")
            .tempdir_in(parent)
            .map_err(|e| io_err(parent, e))?;
        let writers = (0..n)
            .map(|p| {
                let path = part_path(dir.path(), p);
                File::create(&path)
                    .map(|f| BufWriter::with_capacity(1 << 16, f))
                    .map_err(|e| io_err(&path, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Spill {
            dir,
            writers,
            layout: None,
            newest: vec![None; cutoffs.len()],
            cutoffs,
            used: Vec::new(),
            earliest: None,
            lines: 0,
            bytes: 0,
        })
    }

    pub(crate) fn partitions(&self) -> usize {
        self.writers.len()
    }

    /// The spill folder (also holds other temporary files of the run; removed on drop).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, p: usize) -> PathBuf {
        part_path(self.dir.path(), p)
    }

    /// Moves every line of `lines` to its partition's file and leaves `lines` empty.
    pub(crate) fn flush(
        &mut self,
        lines: &mut Lines,
        n_files: usize,
        n_dims: usize,
    ) -> Result<(), SpillError> {
        if lines.is_empty() {
            return Ok(());
        }
        let layout = Layout {
            n_dims,
            utc: !lines.ts_utc.is_empty(),
            cost: !lines.cost.is_empty(),
            order_ids: !lines.order_ids.is_empty(),
        };
        if *self.layout.get_or_insert(layout) != layout {
            return Err(SpillError::Layout);
        }
        if self.used.len() < n_files {
            self.used.resize(n_files, vec![0; self.cutoffs.len()]);
        }
        lines.count_by_date(&self.cutoffs, &mut self.used, &mut self.newest);
        if let Some(&min) = lines.ts_local.iter().min() {
            self.earliest = Some(self.earliest.map_or(min, |e| e.min(min)));
        }
        let n = self.writers.len();
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, &c) in lines.cust.iter().enumerate() {
            members[c as usize % n].push(i as u32);
        }
        let src: &Lines = lines;
        let paths: Vec<PathBuf> = (0..n).map(|p| self.path(p)).collect();
        let written = self
            .writers
            .par_iter_mut()
            .zip(members.par_iter())
            .zip(paths.par_iter())
            .map(|((w, idx), path)| -> Result<u64, SpillError> {
                if idx.is_empty() {
                    return Ok(0);
                }
                let raw = encode(src, idx, n, layout);
                let packed = zstd::bulk::compress(&raw, LEVEL).map_err(|e| io_err(path, e))?;
                let header = [idx.len() as u64, raw.len() as u64, packed.len() as u64];
                for v in header {
                    w.write_all(&v.to_le_bytes()).map_err(|e| io_err(path, e))?;
                }
                w.write_all(&packed).map_err(|e| io_err(path, e))?;
                Ok(24 + packed.len() as u64)
            })
            .collect::<Result<Vec<u64>, SpillError>>()?;
        self.bytes += written.iter().sum::<u64>();
        self.lines += lines.len() as u64;
        *lines = Lines::default();
        Ok(())
    }

    /// Flushes the files to disk: call once after the last chunk.
    pub(crate) fn finish(&mut self) -> Result<(), SpillError> {
        for p in 0..self.writers.len() {
            let path = self.path(p);
            self.writers[p].flush().map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }

    /// Every line of partition `p`, in input order, customers numbered within the partition
    /// (`c / n`).
    pub(crate) fn read(&self, p: usize) -> Result<Lines, SpillError> {
        let path = self.path(p);
        let mut out = Lines::default();
        let Some(layout) = self.layout else {
            return Ok(out);
        };
        let mut r = BufReader::new(File::open(&path).map_err(|e| io_err(&path, e))?);
        let mut header = [0u8; 24];
        loop {
            match r.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io_err(&path, e)),
            }
            let word = |k: usize| u64::from_le_bytes(header[k * 8..k * 8 + 8].try_into().unwrap());
            let (m, raw_len, packed_len) = (word(0) as usize, word(1) as usize, word(2) as usize);
            let mut packed = vec![0u8; packed_len];
            r.read_exact(&mut packed).map_err(|e| io_err(&path, e))?;
            let raw = zstd::bulk::decompress(&packed, raw_len).map_err(|e| io_err(&path, e))?;
            decode(&raw, m, layout, &mut out).ok_or_else(|| SpillError::Truncated {
                path: path.display().to_string(),
            })?;
        }
        Ok(out)
    }
}

/// One record: the lines `idx` of `src`, column after column, little-endian.
fn encode(src: &Lines, idx: &[u32], n: usize, layout: Layout) -> Vec<u8> {
    let m = idx.len();
    let mut raw = Vec::with_capacity(m * (40 + 4 * layout.n_dims));
    let each = |raw: &mut Vec<u8>, f: &dyn Fn(usize) -> u64| {
        for &i in idx {
            raw.extend_from_slice(&f(i as usize).to_le_bytes());
        }
    };
    for &i in idx {
        raw.extend_from_slice(&(src.cust[i as usize] / n as u32).to_le_bytes());
    }
    each(&mut raw, &|i| src.order[i]);
    each(&mut raw, &|i| src.ts_local[i] as u64);
    if layout.utc {
        each(&mut raw, &|i| src.ts_utc[i] as u64);
    }
    each(&mut raw, &|i| src.amount[i] as u64);
    if layout.cost {
        each(&mut raw, &|i| src.cost[i] as u64);
    }
    for &i in idx {
        let i = i as usize;
        for d in 0..layout.n_dims {
            raw.extend_from_slice(&src.seg[i * layout.n_dims + d].to_le_bytes());
        }
    }
    if layout.order_ids {
        for &i in idx {
            raw.extend_from_slice(&(src.order_ids.get(i as usize).len() as u32).to_le_bytes());
        }
        for &i in idx {
            raw.extend_from_slice(src.order_ids.get(i as usize).as_bytes());
        }
    }
    raw
}

/// Appends the `m` lines of one record to `out`; None when the record is shorter than its
/// header says.
fn decode(raw: &[u8], m: usize, layout: Layout, out: &mut Lines) -> Option<()> {
    let mut at = 0usize;
    let mut take = |bytes: usize| -> Option<&[u8]> {
        let s = raw.get(at..at + bytes)?;
        at += bytes;
        Some(s)
    };
    let u32s = |b: &[u8]| -> Vec<u32> {
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    fn u64s(b: &[u8]) -> impl Iterator<Item = u64> + '_ {
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
    }
    out.cust.extend(u32s(take(4 * m)?));
    out.order.extend(u64s(take(8 * m)?));
    out.ts_local.extend(u64s(take(8 * m)?).map(|v| v as i64));
    if layout.utc {
        out.ts_utc.extend(u64s(take(8 * m)?).map(|v| v as i64));
    }
    out.amount.extend(u64s(take(8 * m)?).map(|v| v as i64));
    if layout.cost {
        out.cost.extend(u64s(take(8 * m)?).map(|v| v as i64));
    }
    out.seg.extend(u32s(take(4 * m * layout.n_dims)?));
    if layout.order_ids {
        let lens = u32s(take(4 * m)?);
        let total: usize = lens.iter().map(|&l| l as usize).sum();
        let text = std::str::from_utf8(take(total)?).ok()?;
        let mut pos = 0;
        for l in lens {
            out.order_ids.push(text.get(pos..pos + l as usize)?);
            pos += l as usize;
        }
    }
    (at == raw.len()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Lines {
        // 7 lines of customers 0..5 from two files, with UTC times, cost, one segment and
        // order ids.
        let mut l = Lines::default();
        for i in 0..7u32 {
            l.cust.push(i % 5);
            l.order.push(100 + i as u64);
            l.order_ids.push(&format!("o{i}"));
            l.ts_local.push(10 * i as i64);
            l.ts_utc.push(10 * i as i64 - 3);
            l.amount.push(i as i64 * 100);
            l.cost.push(i as i64);
            l.seg.push(i % 2);
        }
        l.file_runs = vec![(0, 0), (1, 4)];
        l
    }

    #[test]
    fn partitions_hold_their_customers_lines_in_input_order() {
        let tmp = tempfile::tempdir().unwrap();
        // Cutoffs 25 and 45: lines at 0,10,20 count at date 0, 30,40 at date 1, 50,60 after.
        let mut s = Spill::new(tmp.path(), 2, vec![25, 45]).unwrap();
        let mut a = lines();
        s.flush(&mut a, 2, 1).unwrap();
        assert!(a.is_empty());
        // A second chunk: the same 7 lines again, as if from later in file 1.
        let mut b = lines();
        b.file_runs = vec![(1, 0)];
        s.flush(&mut b, 2, 1).unwrap();
        s.finish().unwrap();
        assert_eq!(s.lines, 14);
        assert_eq!(s.earliest, Some(0));
        // File 0 = lines 0..4 of chunk a (ts 0,10,20 → date 0; 30 → date 1).
        // File 1 = lines 4..7 of a (40 → date 1; 50, 60 after) + all of b (3 + 2).
        assert_eq!(s.used, vec![vec![3, 1], vec![3, 3]]);
        // Newest line first counted at date 0 (before 25): 20; at date 1 (25..45): 40.
        assert_eq!(s.newest, vec![Some(20), Some(40)]);
        // Partition 1 = odd customers 1, 3 → lines 1, 3, 6 (customer 6 % 5 = 1) of each chunk,
        // numbered 1 / 2 = 0 and 3 / 2 = 1.
        let p1 = s.read(1).unwrap();
        assert_eq!(p1.cust, vec![0, 1, 0, 0, 1, 0]);
        assert_eq!(p1.ts_local, vec![10, 30, 60, 10, 30, 60]);
        assert_eq!(p1.ts_utc, vec![7, 27, 57, 7, 27, 57]);
        assert_eq!(p1.amount, vec![100, 300, 600, 100, 300, 600]);
        assert_eq!(p1.cost, vec![1, 3, 6, 1, 3, 6]);
        assert_eq!(p1.seg, vec![1, 1, 0, 1, 1, 0]);
        assert_eq!(p1.order, vec![101, 103, 106, 101, 103, 106]);
        let ids: Vec<&str> = (0..6).map(|i| p1.order_id(i)).collect();
        assert_eq!(ids, vec!["o1", "o3", "o6", "o1", "o3", "o6"]);
        // Partition 0 = customers 0, 2, 4 → lines 0, 2, 4, 5 per chunk: 8 lines.
        let p0 = s.read(0).unwrap();
        assert_eq!(p0.cust, vec![0, 1, 2, 0, 0, 1, 2, 0]);
        assert_eq!(p0.len() + p1.len(), 14);
    }
}
