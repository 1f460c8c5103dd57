//! Streams each input file through polars in batches and turns every row into a typed line, a
//! reject with its reason, or an "after as_of" count. Parsing runs in parallel (rayon) within a
//! batch, customer ids are interned in parallel per hash shard, and order ids are hashed (their
//! text is kept per line for the orders stage); appending the lines and interning the few
//! segment values are the sequential steps.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use polars::prelude::*;
use rayon::prelude::*;
use tracing::{debug, info, info_span};

use crate::config::{InputFormat, Validated};
use crate::progress::Progress;

use super::read::{self, Scan};
use super::row::{At, Ctx, IngestOptions, Kinds, Outcome, Piece, Used};
use super::rules::trim;
use super::{
    read_err, spill::Spill, Cause, Dict, FileStats, Ingested, InputFile, Lines, Reject,
    SourceError, ROW_ORDER_BASE, UNKNOWN_SEGMENT,
};

/// Lines held in memory before they are moved to the spill (about 60 bytes each).
pub(crate) const SPILL_CHUNK: usize = 1 << 22;

/// Rows of a local Parquet file, from its footer; None for other files, and when the footer
/// cannot be read (the scan then reports the file's problem).
fn parquet_rows(file: &InputFile) -> Option<usize> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    if file.remote || file.format != InputFormat::Parquet {
        return None;
    }
    let reader = SerializedFileReader::new(std::fs::File::open(&file.path).ok()?).ok()?;
    usize::try_from(reader.metadata().file_metadata().num_rows()).ok()
}

/// Reads every file and returns the normalized lines, rejects and accounting, and the spill.
///
/// With a `spill`, lines are moved to it in chunks of [`SPILL_CHUNK`] as they are read, so
/// memory holds one chunk besides the dictionaries; the returned `lines` are then empty.
pub(crate) fn ingest(
    files: &[InputFile],
    cfg: &Validated,
    opts: IngestOptions,
    spill: Option<Spill>,
) -> Result<(Ingested, Option<Spill>), SourceError> {
    let n_dims = cfg.config.input.columns.segments.len();
    let n_files = files.len();
    let state = Arc::new(Mutex::new(State {
        out: Ingested {
            segments: (0..n_dims).map(|_| Dict::default()).collect(),
            has_cost: cfg.config.input.columns.cost.is_some(),
            spilled: spill.is_some(),
            ..Default::default()
        },
        spill,
        error: None,
    }));
    {
        // Room for the lines of the local Parquet inputs, whose footers give their row counts.
        // Grown batch by batch instead, each array was copied into fresh memory as it
        // outgrew its block (100M lines: a quarter of the read stage's page faults were such
        // copies).
        let mut st = state.lock().expect("ingest state");
        if st.spill.is_none() {
            let rows: usize = files.iter().filter_map(parquet_rows).sum();
            let columns = &cfg.config.input.columns;
            st.out.lines.reserve(
                rows,
                n_dims,
                !opts.zone.is_utc(),
                columns.cost.is_some(),
                columns.order_id.is_some(),
            );
        }
    }
    let bar = Progress::reading(opts.progress, files.iter().map(|f| f.size).sum());
    for (fi, file) in files.iter().enumerate() {
        read_file(fi, file, cfg, opts, &state, &bar, n_files)?;
    }
    bar.finish();
    let st = Arc::try_unwrap(state)
        .map_err(|_| SourceError::Read {
            file: "(all)".into(),
            source: "internal: reader still holds the state".into(),
        })?
        .into_inner()
        .expect("ingest state");
    let (mut out, mut spill) = (st.out, st.spill);
    if let Some(spill) = spill.as_mut() {
        spill
            .flush(&mut out.lines, n_files, n_dims)
            .and_then(|_| spill.finish())
            .map_err(SourceError::Spill)?;
        info!(
            lines = spill.lines,
            partitions = spill.partitions(),
            mib = spill.bytes >> 20,
            "Spilled the lines to disk."
        );
    }
    let s = &mut out.stats;
    s.rows_read = s.files.iter().map(|f| f.rows_read).sum();
    s.rows_used = s.files.iter().map(|f| f.rows_used).sum();
    s.rows_rejected = s.files.iter().map(|f| f.rows_rejected).sum();
    s.rows_after_as_of = s.files.iter().map(|f| f.rows_after_as_of).sum();
    debug_assert_eq!(
        s.rows_read,
        s.rows_used + s.rows_rejected + s.rows_after_as_of
    );
    Ok((out, spill))
}

/// Reads file number `fi` into the state, batch by batch.
fn read_file(
    fi: usize,
    file: &InputFile,
    cfg: &Validated,
    opts: IngestOptions,
    state: &Arc<Mutex<State>>,
    bar: &Progress,
    n_files: usize,
) -> Result<(), SourceError> {
    let n_dims = cfg.config.input.columns.segments.len();
    let span = info_span!("read", file = %file.display);
    let _g = span.enter();
    let started = Instant::now();
    let scan = read::scan(file, cfg)?;
    let kinds = Kinds {
        ts: scan.ts,
        amount: scan.amount,
        cost: scan.cost,
        has_order: scan.has_order,
        cid_float: scan.cid_float,
        n_dims,
        lossy: scan.lossy,
    };
    state
        .lock()
        .expect("ingest state")
        .out
        .stats
        .files
        .push(FileStats {
            url: file.display.clone(),
            format: file.format.to_string(),
            size: file.size,
            mtime: file.mtime.clone(),
            etag: file.etag.clone(),
            ..Default::default()
        });
    // `_download` and `_copy` (the local files polars reads) live until this file is read.
    let Scan {
        frame,
        _download,
        mut records,
        ..
    } = scan;
    let _copy = records.copy.take();
    let ctx = Ctx {
        opts,
        decimals: cfg.config.input.amount_decimals,
        ts_format: cfg.config.input.ts_format.clone(),
        file_name: file.display.clone(),
        file_index: fi,
        records,
    };
    let (st2, bar2) = (Arc::clone(state), bar.clone());
    let callback = PlanCallback::new(move |mut df: DataFrame| {
        // One array per column and piece: reading a row is then a load, not a walk over the
        // chunks (`split_chunks` first joins columns that are split at other rows).
        let pieces: Vec<DataFrame> = df.split_chunks().collect();
        crate::testhook::hold("read:batch");
        let mut st = st2.lock().expect("ingest state");
        Ok(!on_batch(&pieces, &kinds, &ctx, &mut st, n_files, &bar2))
    });
    let result = frame
        // Batches of 64k rows: the streaming engine's default morsels (~1k rows) would make the
        // per-batch work (locking, rayon fan-out) dominate.
        .sink_batches(callback, true, std::num::NonZeroUsize::new(1 << 16))
        .and_then(|lf| lf.collect_with_engine(Engine::Streaming));
    let mut st = state.lock().expect("ingest state");
    if let Some(e) = st.error.take() {
        return Err(e);
    }
    result.map_err(|e| read_err(file, e))?;
    bar.advance(file.size);
    let fs = st.out.stats.files.last().cloned().unwrap_or_default();
    info!(
        rows_read = fs.rows_read,
        rows_used = fs.rows_used,
        rows_rejected = fs.rows_rejected,
        rows_after_as_of = fs.rows_after_as_of,
        ms = started.elapsed().as_millis() as u64,
        "Read input file."
    );
    Ok(())
}

/// Takes one batch into the state (and full chunks of lines to the spill); false, with the
/// error in the state, when reading must stop.
fn on_batch(
    pieces: &[DataFrame],
    kinds: &Kinds,
    ctx: &Ctx,
    st: &mut State,
    n_files: usize,
    bar: &Progress,
) -> bool {
    if let Err(stopped) = crate::cancel::check() {
        st.error = Some(stopped.into());
        return false;
    }
    if let Err(source) = process_batch(pieces, kinds, ctx, st) {
        st.error = Some(SourceError::Read {
            file: ctx.file_name.clone(),
            source,
        });
        return false;
    }
    let out = &mut st.out;
    if let Some(spill) = st.spill.as_mut() {
        if out.lines.len() >= SPILL_CHUNK {
            if let Err(e) = spill.flush(&mut out.lines, n_files, kinds.n_dims) {
                st.error = Some(SourceError::Spill(e));
                return false;
            }
        }
    }
    // The running total: every file's rows so far, this batch's included.
    bar.message(|| {
        let total: u64 = st.out.stats.files.iter().map(|f| f.rows_read).sum();
        format!("{total} rows")
    });
    true
}

struct State {
    out: Ingested,
    spill: Option<Spill>,
    error: Option<SourceError>,
}

fn process_batch(
    pieces: &[DataFrame],
    kinds: &Kinds,
    ctx: &Ctx,
    st: &mut State,
) -> Result<(), Cause> {
    let pieces: Vec<Piece> = pieces
        .iter()
        .filter(|df| df.height() > 0)
        .map(|df| Piece::new(df, kinds))
        .collect::<Result<_, _>>()?;
    let n: usize = pieces.iter().map(|p| p.len).sum();
    if n == 0 {
        return Ok(());
    }
    let (stretches, outcomes) = classify(&pieces, kinds, ctx);
    // Merge: rejects and counts first; customer and order ids are interned in parallel per
    // customer shard; then the appends.
    let State { out, spill, .. } = st;
    let used = account(out, &pieces, &stretches, &outcomes, ctx)?;
    // Lines already spilled count too: keys of lines without an order_id stay unique.
    let first_line = spill.as_ref().map_or(0, |s| s.lines) + out.lines.cust.len() as u64;
    let ids = intern(&mut out.customers, &pieces, &used, first_line);
    append(out, &pieces, &used, ids, kinds, ctx);
    debug!(rows = n, pieces = pieces.len(), "Normalized batch.");
    Ok(())
}

/// A run of rows of one piece: (piece, first row, end row).
type Stretch = (usize, usize, usize);

/// Every row's outcome, classified in parallel in stretches of at most `CHUNK` rows of one
/// piece; the outcomes are in row order.
fn classify(pieces: &[Piece], kinds: &Kinds, ctx: &Ctx) -> (Vec<Stretch>, Vec<Outcome>) {
    const CHUNK: usize = 8192;
    let stretches: Vec<(usize, usize, usize)> = pieces
        .iter()
        .enumerate()
        .flat_map(|(p, piece)| {
            (0..piece.len.div_ceil(CHUNK))
                .map(move |c| (p, c * CHUNK, ((c + 1) * CHUNK).min(piece.len)))
        })
        .collect();
    let outcomes: Vec<Outcome> = stretches
        .par_iter()
        .flat_map_iter(|&(p, from, to)| {
            let piece = &pieces[p];
            (from..to).map(move |j| piece.classify(j, kinds, ctx))
        })
        .collect();
    (stretches, outcomes)
}

/// Counts every row in the file's statistics and keeps its rejects, and returns the used rows
/// with their values, in row order.
fn account(
    out: &mut Ingested,
    pieces: &[Piece],
    stretches: &[Stretch],
    outcomes: &[Outcome],
    ctx: &Ctx,
) -> Result<Vec<(At, Used)>, Cause> {
    let fstats = out
        .stats
        .files
        .get_mut(ctx.file_index)
        .ok_or("internal: file stats missing")?;
    // Every used row with its values, in row order.
    let mut used: Vec<(At, Used)> = Vec::with_capacity(outcomes.len());
    let rows = stretches
        .iter()
        .flat_map(|&(p, from, to)| (from..to).map(move |j| (p, j)));
    for ((p, j), o) in rows.zip(outcomes) {
        let piece = &pieces[p];
        if matches!(o, Outcome::Blank) {
            fstats.blank_lines += 1;
            continue;
        }
        fstats.rows_read += 1;
        match o {
            Outcome::Blank => {}
            Outcome::After => fstats.rows_after_as_of += 1,
            Outcome::Rejected(reason, ts_local) => {
                fstats.rows_rejected += 1;
                *out.stats
                    .rejects_by_reason
                    .entry(reason.to_string())
                    .or_default() += 1;
                out.rejects.push(Reject {
                    file: ctx.file_name.clone(),
                    row: ctx.records.line_of(piece.row_number(j)),
                    reason: reason.to_string(),
                    customer_id: piece.cid.get(j).map(str::to_string),
                    ts: piece.ts.raw(j),
                    amount: piece.amount.raw(j),
                    ts_local: *ts_local,
                });
            }
            Outcome::Used(u) => {
                fstats.rows_used += 1;
                out.money_abs += u.amount.unsigned_abs() as u128 + u.cost.unsigned_abs() as u128;
                if out.money_abs > super::MONEY_ABS_LIMIT && out.money_overflow_at.is_none() {
                    out.money_overflow_at = Some((
                        ctx.file_name.clone(),
                        ctx.records.line_of(piece.row_number(j)),
                    ));
                }
                let at = At {
                    piece: p as u32,
                    row: j as u32,
                };
                used.push((at, *u));
            }
        }
    }
    Ok(used)
}

/// Interned customer ids and order keys of the used rows: (position in `used`, customer id,
/// order key) per customer shard, interned in parallel. A row without an order_id is its own
/// order, keyed by its line number (`first_line` = lines before this batch).
fn intern(
    customers: &mut super::ShardedDict,
    pieces: &[Piece],
    used: &[(At, Used)],
    first_line: u64,
) -> Vec<Vec<(usize, u32, u64)>> {
    let piece_of = |at: At| (&pieces[at.piece as usize], at.row as usize);
    let cid_of = |at: At| {
        let (piece, j) = piece_of(at);
        piece.customer(j)
    };
    let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); super::SHARDS];
    for (pos, (_, u)) in used.iter().enumerate() {
        by_shard[super::shard_of_hash(u.cid_hash)].push(pos);
    }
    customers
        .shards
        .par_iter_mut()
        .zip(by_shard.par_iter())
        .enumerate()
        .map(|(k, (cdict, positions))| {
            // Lines of one customer often come together: compare with the previous line's id
            // text before probing the table.
            let mut last_c: Option<(&str, u32)> = None;
            positions
                .iter()
                .map(|&pos| {
                    let (at, u) = &used[pos];
                    let text = cid_of(*at);
                    let c = match last_c {
                        Some((prev, id)) if prev == text => id,
                        _ => {
                            let id = cdict.intern_hashed(text, u.cid_hash) * super::SHARDS as u32
                                + k as u32;
                            last_c = Some((text, id));
                            id
                        }
                    };
                    // No dictionary for order ids: the key is the text's hash and the text
                    // itself is kept per line, for the orders stage to settle collisions
                    // exactly.
                    let okey = u
                        .order_hash
                        .unwrap_or(ROW_ORDER_BASE + first_line + pos as u64);
                    (pos, c, okey)
                })
                .collect()
        })
        .collect()
}

/// Appends the used rows to the lines, each column filled by its own task (one sequential
/// loop over the rows was the largest single cost of reading a 10M-row Parquet input).
fn append(
    out: &mut Ingested,
    pieces: &[Piece],
    used: &[(At, Used)],
    ids: Vec<Vec<(usize, u32, u64)>>,
    kinds: &Kinds,
    ctx: &Ctx,
) {
    let piece_of = |at: At| (&pieces[at.piece as usize], at.row as usize);
    let lines: &mut Lines = &mut out.lines;
    if lines.file_runs.last().map(|r| r.0) != Some(ctx.file_index as u32) {
        lines
            .file_runs
            .push((ctx.file_index as u32, lines.cust.len()));
    }
    let Lines {
        cust: l_cust,
        order: l_order,
        order_ids,
        ts_utc,
        ts_local,
        amount: l_amount,
        cost: l_cost,
        seg,
        ..
    } = lines;
    let seg_dicts = &mut out.segments;
    let keep_utc = !ctx.opts.zone.is_utc();
    let has_cost = kinds.cost.is_some();
    rayon::scope(|s| {
        s.spawn(|_| {
            let base = l_cust.len();
            l_cust.resize(base + used.len(), 0);
            l_order.resize(base + used.len(), 0);
            let (cs, os) = (&mut l_cust[base..], &mut l_order[base..]);
            for (pos, c, o) in ids.into_iter().flatten() {
                cs[pos] = c;
                os[pos] = o;
            }
        });
        if kinds.has_order {
            s.spawn(move |_| {
                for &(at, _) in used {
                    let (piece, j) = piece_of(at);
                    order_ids.push(piece.order_id(j).unwrap_or(""));
                }
            });
        }
        s.spawn(move |_| {
            // Segment columns have few values, usually repeated row after row: compare with
            // the previous row's value before hashing.
            let n_dims = kinds.n_dims;
            let mut last_seg: Vec<Option<(&str, u32)>> = vec![None; n_dims];
            seg.reserve(used.len() * n_dims);
            for &(at, _) in used {
                let (piece, j) = piece_of(at);
                for (d, c) in piece.segs.iter().enumerate() {
                    let v = match c.get(j).map(trim) {
                        Some(s) if !s.is_empty() => s,
                        _ => UNKNOWN_SEGMENT,
                    };
                    let id = match last_seg[d] {
                        Some((prev, id)) if prev == v => id,
                        _ => {
                            let id = seg_dicts[d].intern(v);
                            last_seg[d] = Some((v, id));
                            id
                        }
                    };
                    seg.push(id);
                }
            }
        });
        s.spawn(move |_| {
            if keep_utc {
                ts_utc.par_extend(used.par_iter().map(|(_, u)| u.ts_utc));
            }
            ts_local.par_extend(used.par_iter().map(|(_, u)| u.ts_local));
            l_amount.par_extend(used.par_iter().map(|(_, u)| u.amount));
            if has_cost {
                l_cost.par_extend(used.par_iter().map(|(_, u)| u.cost));
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use std::sync::Arc;

    fn input(path: &str, format: InputFormat, remote: bool) -> InputFile {
        InputFile {
            path: path.to_string(),
            display: path.to_string(),
            remote,
            format,
            hive: Vec::new(),
            size: 0,
            mtime: None,
            etag: None,
        }
    }

    #[test]
    fn parquet_rows_come_from_the_footer_of_local_parquet_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        // Two row groups of 3 and 2 rows: 5 rows in the footer.
        let batch = |n: i64| {
            RecordBatch::try_from_iter([(
                "x",
                Arc::new(Int64Array::from_iter_values(0..n)) as arrow::array::ArrayRef,
            )])
            .unwrap()
        };
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch(1).schema(),
            None,
        )
        .unwrap();
        w.write(&batch(3)).unwrap();
        w.flush().unwrap();
        w.write(&batch(2)).unwrap();
        w.close().unwrap();
        let p = path.to_str().unwrap();
        assert_eq!(
            parquet_rows(&input(p, InputFormat::Parquet, false)),
            Some(5)
        );
        // Not Parquet, remote, or not readable: no count (and no reservation).
        assert_eq!(parquet_rows(&input(p, InputFormat::Csv, false)), None);
        assert_eq!(parquet_rows(&input(p, InputFormat::Parquet, true)), None);
        let missing = dir.path().join("missing.parquet");
        let m = missing.to_str().unwrap();
        assert_eq!(parquet_rows(&input(m, InputFormat::Parquet, false)), None);
    }
}
