//! rejects table (SPEC §1): every input row that could not be used, with its reason and source.

use arrow::array::{Int64Array, RecordBatch, StringArray};

use crate::schema::Table;
use crate::source::Reject;

use super::arc;

/// Builds the rejects table in (source_file, source_row) order.
pub fn table(rejects: &[Reject]) -> RecordBatch {
    let mut rows: Vec<&Reject> = rejects.iter().collect();
    rows.sort_by(|a, b| (a.file.as_str(), a.row).cmp(&(b.file.as_str(), b.row)));
    let cols = vec![
        (
            "source_file",
            arc(StringArray::from_iter_values(
                rows.iter().map(|r| r.file.as_str()),
            )),
        ),
        (
            "source_row",
            arc(Int64Array::from_iter_values(
                rows.iter().map(|r| r.row as i64),
            )),
        ),
        (
            "reason",
            arc(StringArray::from_iter_values(
                rows.iter().map(|r| r.reason.as_str()),
            )),
        ),
        (
            "customer_id",
            arc(StringArray::from(
                rows.iter()
                    .map(|r| r.customer_id.as_deref())
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "ts",
            arc(StringArray::from(
                rows.iter().map(|r| r.ts.as_deref()).collect::<Vec<_>>(),
            )),
        ),
        (
            "amount",
            arc(StringArray::from(
                rows.iter().map(|r| r.amount.as_deref()).collect::<Vec<_>>(),
            )),
        ),
    ];
    Table::Rejects.batch(&[], cols)
}
