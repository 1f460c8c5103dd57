//! Planning and reading: how much memory the run may use, how many customer partitions that
//! means (1 = everything in memory, more = lines spilled to disk), and reading every input once
//! for all the run's as_of dates.

use std::path::Path;

use tracing::info;

use super::{Prepared, Timings};
use crate::config::Validated;
use crate::sink;
use crate::source::{self, IngestOptions};
use crate::storage;
use crate::time::Zone;
use crate::{orders, Result};

/// Input bytes → bytes of memory a run holding every line needs, by input format (measured on
/// the benchmark input at 10M and 100M rows: Parquet ×12, CSV ×2.2), with some headroom.
pub(super) fn memory_per_input_byte(f: &source::InputFile) -> u64 {
    let base = match f.format {
        crate::config::InputFormat::Parquet => 13,
        crate::config::InputFormat::Ndjson => 2,
        _ => 3,
    };
    if source::files::is_compressed(&f.path) {
        base * 5
    } else {
        base
    }
}

/// The machine's physical memory in bytes (8 GiB when it cannot be read).
pub(super) fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns −1 for an unknown name.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        8 << 30
    }
}

/// Memory the job plans to stay within: `engine.memory_limit_mib`, or three quarters of the
/// machine's.
pub(super) fn memory_limit(cfg: &Validated) -> u64 {
    let e = &cfg.config.engine;
    if e.memory_limit_mib > 0 {
        e.memory_limit_mib << 20
    } else {
        physical_memory() / 4 * 3
    }
}

/// How many customer partitions to spill the lines to (1 = keep them in memory): the
/// configured number, or enough that one partition needs at most a quarter of the memory
/// limit (the dictionaries, the read-ahead partition and the reader's buffers take the rest).
pub(super) fn plan_partitions(cfg: &Validated, files: &[source::InputFile]) -> usize {
    let e = &cfg.config.engine;
    if e.partitions > 0 {
        return e.partitions;
    }
    let limit = memory_limit(cfg);
    let need: u64 = files
        .iter()
        .map(|f| f.size.saturating_mul(memory_per_input_byte(f)))
        .sum();
    if need <= limit {
        1
    } else {
        (need.div_ceil((limit / 4).max(1)) as usize).clamp(2, crate::config::MAX_PARTITIONS)
    }
}

/// Makes polars read local files with buffered reads (its object-store path, 32 MiB chunks) instead
/// of memory-mapping them whole. Mapped pages of a file larger than memory count in the process'
/// resident memory (a 28 GB CSV reached 8.4 GB of mapped pages after two minutes) although the
/// kernel can drop them; a spilled run is meant to stay within its memory limit as measured.
pub(super) fn read_without_memory_map() {
    const FORCE_ASYNC: &str = "POLARS_FORCE_ASYNC";
    if std::env::var_os(FORCE_ASYNC).is_none() {
        // Set before polars reads its settings (at the first scan, which comes after this), from
        // the only thread of the job that touches the environment.
        std::env::set_var(FORCE_ASYNC, "1");
    }
}

/// Reads every input (into a spill of `partitions` partitions when there is more than one).
pub(super) fn read_all(
    cfg: &Validated,
    files: &[source::InputFile],
    cutoffs: &[i64],
    partitions: usize,
    opts: IngestOptions,
) -> Result<(source::Ingested, Option<source::spill::Spill>), source::SourceError> {
    let spill_dir = (partitions > 1).then(|| {
        let dir = match cfg.config.engine.spill_dir.as_str() {
            "" => std::env::temp_dir(),
            d => std::path::PathBuf::from(d),
        };
        info!(partitions, spill_dir = %dir.display(), "The input is larger than the memory limit: spilling lines to disk.");
        dir
    });
    let spill = spill_dir
        .as_ref()
        .map(|dir| source::spill::Spill::new(dir, partitions, cutoffs.to_vec()))
        .transpose()
        .map_err(source::SourceError::Spill)?;
    source::ingest(files, cfg, opts, spill)
}

/// Opens the output, reads the spend file and every input up to the last cutoff (`cutoffs`
/// ascending, one per as_of date).
pub(super) fn prepare(cfg: &Validated, cutoffs: &[i64], progress: bool) -> Result<Prepared> {
    let last_cutoff = *cutoffs.last().expect("at least one as_of date");
    let mut timings = Timings::default();
    // Open the output first: a bad output URL fails before any reading.
    let output = storage::open(&cfg.config.output.path, &cfg.config.storage)
        .map_err(sink::SinkError::from)?;
    let files = timings.time("discover", || {
        source::discover(
            &cfg.config.input.paths,
            cfg.config.input.format,
            &cfg.config.storage,
        )
    })?;
    let warnings = source::files::same_content(&files);
    // Read the small spend file before the large inputs, so a bad one fails fast.
    let spend = cfg
        .config
        .spend
        .as_ref()
        .map(|sc| source::spend::read(Path::new(&sc.path), cfg.config.input.amount_decimals))
        .transpose()?;
    let partitions = plan_partitions(cfg, &files);
    if partitions > 1 {
        read_without_memory_map();
    }
    let opts = IngestOptions {
        cutoff_local: last_cutoff,
        zone: Zone::new(cfg.tz),
        progress,
    };
    let (ingested, spill) =
        timings.time("read", || read_all(cfg, &files, cutoffs, partitions, opts))?;
    let st = &ingested.stats;
    info!(
        rows_read = st.rows_read,
        rows_used = st.rows_used,
        rows_rejected = st.rows_rejected,
        rows_after_as_of = st.rows_after_as_of,
        "Read all inputs."
    );
    Ok(Prepared {
        output,
        ingested,
        spill,
        orders: orders::Orders::default(),
        spend,
        timings,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source;

    fn planned(engine: &str, files: &[(&str, crate::config::InputFormat, u64)]) -> usize {
        let text = format!(
            "[input]\npaths = [\"x\"]\n[input.columns]\ncustomer_id = \"c\"\nts = \"t\"\namount = \"a\"\n[engine]\n{engine}\n"
        );
        let cfg = crate::config::Config::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap();
        let files: Vec<source::InputFile> = files
            .iter()
            .map(|&(path, format, mib)| source::InputFile {
                path: path.into(),
                display: path.into(),
                remote: false,
                format,
                hive: Vec::new(),
                size: mib << 20,
                mtime: None,
                etag: None,
            })
            .collect();
        plan_partitions(&cfg, &files)
    }

    #[test]
    fn partitions_follow_the_input_size_and_the_memory_limit() {
        use crate::config::InputFormat::{Csv, Parquet};
        // 100 MiB of Parquet needs 100 × 13 = 1300 MiB: within a 2048 MiB limit, in memory.
        assert_eq!(
            planned("memory_limit_mib = 2048", &[("a.parquet", Parquet, 100)]),
            1
        );
        // 300 MiB of CSV + 100 MiB of Parquet need 900 + 1300 = 2200 MiB > 2048: partitions of
        // at most 2048 / 4 = 512 MiB, so ceil(2200 / 512) = 5.
        let two = [("a.csv", Csv, 300), ("b.parquet", Parquet, 100)];
        assert_eq!(planned("memory_limit_mib = 2048", &two), 5);
        // A compressed CSV needs 5 × more: 100 MiB of .csv.gz = 1500 MiB; limit 1024 → 256 MiB
        // partitions → ceil(1500 / 256) = 6.
        assert_eq!(
            planned("memory_limit_mib = 1024", &[("a.csv.gz", Csv, 100)]),
            6
        );
        // A configured number wins, whatever the sizes; 1 keeps everything in memory.
        assert_eq!(planned("partitions = 7", &[("a.csv", Csv, 1)]), 7);
        assert_eq!(planned("partitions = 1\nmemory_limit_mib = 1", &two), 1);
    }
}
