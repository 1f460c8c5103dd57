//! Publishing one date: its tables staged and swapped in (or uploaded), then its manifest,
//! while this run's lock lease holds.

use chrono::{NaiveDate, Utc};
use tracing::info;

use super::accounting::DateView;
use super::tables::{compute_dates, Computed};
use super::{publish_options, Prepared, RunSummary, TableSet};
use crate::config::Validated;
use crate::schema::Table;
use crate::sink::manifest::Manifest;
use crate::sink::{self, lock, TableData};
use crate::time::Zone;
use crate::Result;

/// Computes every table for one date and publishes it with its manifest.
#[allow(clippy::too_many_arguments)]
pub(super) fn publish_date(
    cfg: &Validated,
    prep: &Prepared,
    lock: &lock::LockGuard,
    as_of: NaiveDate,
    as_of_source: &str,
    run_id: &str,
    view: DateView,
    selected: TableSet,
) -> Result<RunSummary> {
    let computed = compute_dates(cfg, prep, vec![(as_of, view)], run_id, selected)?.remove(0);
    publish_computed(cfg, prep, lock, computed, as_of_source, run_id)
}

/// Writes one date's tables and then its manifest, while this run's lock lease holds.
pub(super) fn publish_computed(
    cfg: &Validated,
    prep: &Prepared,
    lock: &lock::LockGuard,
    computed: Computed,
    as_of_source: &str,
    run_id: &str,
) -> Result<RunSummary> {
    crate::cancel::check()?;
    lock.check()?;
    let Computed {
        as_of,
        view,
        tables,
        selected,
        customer_files,
        mut timings,
        started,
        t0,
    } = computed;
    let ing = &prep.ingested;
    let as_of_s = as_of.format("%Y-%m-%d").to_string();
    let data: Vec<(Table, TableData)> = tables
        .iter()
        .into_iter()
        .filter(|(name, _)| selected.has(*name))
        .map(|(name, batch)| match (&customer_files, name) {
            (Some(files), Table::Customers) => (name, TableData::Files(files)),
            _ => (name, TableData::Batch(batch)),
        })
        .collect();
    // Tables left out keep their partition of this date as the previous manifest lists it.
    let kept = if selected == TableSet::ALL {
        Vec::new()
    } else {
        sink::kept_tables(&prep.output, &as_of_s, |name| {
            Table::from_name(name).is_some_and(|t| !selected.has(t))
        })
    };
    // A selected table without rows here (models with predictions off) loses the partition an
    // earlier run of this date wrote, so no reader finds fits the manifest does not list.
    let retired: Vec<Table> = Table::ALL
        .into_iter()
        .filter(|t| selected.has(*t) && !data.iter().any(|(name, _)| name == t))
        .collect();
    let staged = timings.time("write", || {
        sink::stage(
            &prep.output,
            &publish_options(cfg, &as_of_s, run_id),
            &data,
            &retired,
        )
    })?;
    timings
        .0
        .push(("date_total".into(), t0.elapsed().as_millis() as u64));
    let manifest = Manifest {
        run_id: run_id.to_string(),
        job: "customer-value".into(),
        job_version: env!("CARGO_PKG_VERSION").into(),
        config_hash: cfg.hash.clone(),
        as_of: as_of_s.clone(),
        as_of_source: as_of_source.into(),
        status: "complete".into(),
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        settings: cfg.manifest_settings(ing.has_cost),
        inputs: view.files,
        rows_read: view.rows_read,
        rows_used: view.rows_used,
        rows_rejected: view.rows_rejected,
        rows_after_as_of: view.rows_after_as_of,
        reject_ratio: view.reject_ratio,
        rejects_by_reason: view.rejects_by_reason,
        warnings: prep.warnings.clone(),
        newest_transaction_at: view.newest.map(|local| {
            let utc = Zone::new(cfg.tz).local_to_utc(local);
            chrono::DateTime::from_timestamp_micros(utc)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        }),
        customers: tables.n_customers,
        orders: tables.orders,
        tables: staged.tables().iter().cloned().chain(kept).collect(),
        timings_ms: timings.0.clone(),
    };
    if let Err(e) = lock.check() {
        staged.abandon();
        return Err(e.into());
    }
    let manifest_path = staged.finish(&as_of_s, run_id, &manifest)?;
    info!(manifest = %manifest_path, "Partition published.");
    if cfg.config.output.report {
        // Drawn from what was just published, as `customer-value report` would; a failure
        // here fails the run (exit 1) with the partition published.
        let report = crate::report::publish(&prep.output, &as_of_s)?;
        info!(report = %report, "Report written.");
    }
    Ok(RunSummary {
        manifest_path,
        manifest,
    })
}
