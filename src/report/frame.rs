//! Typed access to a published table's columns by name: a column the report needs that is
//! missing or of another type is an error naming the table and column (a partition written by
//! another version, or not by this job), never a panic.

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use chrono::NaiveDate;

use super::ReportError;

/// One table's rows.
pub(crate) struct Frame<'a> {
    table: &'static str,
    batch: &'a RecordBatch,
}

impl<'a> Frame<'a> {
    pub(crate) fn new(table: &'static str, batch: &'a RecordBatch) -> Self {
        Frame { table, batch }
    }

    pub(crate) fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.batch.schema().index_of(name).is_ok()
    }

    fn column(&self, name: &str, want: &DataType) -> Result<&'a dyn Array, ReportError> {
        let col = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| self.wrong(name, "is missing"))?;
        if col.data_type() != want {
            return Err(self.wrong(name, &format!("is {}, expected {want}", col.data_type())));
        }
        Ok(col.as_ref())
    }

    fn wrong(&self, name: &str, what: &str) -> ReportError {
        ReportError::Column {
            table: self.table,
            column: name.to_string(),
            message: what.to_string(),
        }
    }

    pub(crate) fn str(&self, name: &str) -> Result<&'a StringArray, ReportError> {
        Ok(self.column(name, &DataType::Utf8)?.as_string::<i32>())
    }

    pub(crate) fn int(&self, name: &str) -> Result<&'a Int64Array, ReportError> {
        Ok(self
            .column(name, &DataType::Int64)?
            .as_primitive::<Int64Type>())
    }

    pub(crate) fn float(&self, name: &str) -> Result<&'a Float64Array, ReportError> {
        Ok(self
            .column(name, &DataType::Float64)?
            .as_primitive::<Float64Type>())
    }

    pub(crate) fn date(&self, name: &str) -> Result<&'a Date32Array, ReportError> {
        Ok(self
            .column(name, &DataType::Date32)?
            .as_primitive::<Date32Type>())
    }

    pub(crate) fn bool(&self, name: &str) -> Result<&'a BooleanArray, ReportError> {
        Ok(self.column(name, &DataType::Boolean)?.as_boolean())
    }
}

/// The value at `i`, None when null.
pub(crate) fn opt_f64(a: &Float64Array, i: usize) -> Option<f64> {
    a.is_valid(i).then(|| a.value(i))
}

pub(crate) fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}

pub(crate) fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

pub(crate) fn opt_date(a: &Date32Array, i: usize) -> Option<NaiveDate> {
    a.is_valid(i).then(|| a.value_as_date(i)).flatten()
}
