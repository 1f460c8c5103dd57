//! Writing generated lines as CSV (optionally gzip or zstd) or Parquet.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::{werr, GenFormat, GenerateError, GenerateOptions, Line};

pub(super) enum Sink {
    Csv {
        path: PathBuf,
        out: Box<dyn Write>,
    },
    Parquet {
        path: PathBuf,
        writer: Box<parquet::arrow::ArrowWriter<File>>,
        schema: Arc<Schema>,
    },
}

impl Sink {
    pub(super) fn open(opts: &GenerateOptions) -> Result<Sink, GenerateError> {
        let path = opts.output.clone();
        let file = File::create(&path).map_err(|e| werr(&path, e))?;
        match opts.format {
            GenFormat::Csv => {
                let name = path.to_string_lossy().to_ascii_lowercase();
                let mut out: Box<dyn Write> = if name.ends_with(".gz") {
                    Box::new(flate2::write::GzEncoder::new(
                        BufWriter::new(file),
                        flate2::Compression::new(6),
                    ))
                } else if name.ends_with(".zst") {
                    Box::new(
                        zstd::Encoder::new(BufWriter::new(file), 3)
                            .map_err(|e| werr(&path, e))?
                            .auto_finish(),
                    )
                } else {
                    Box::new(BufWriter::with_capacity(1 << 20, file))
                };
                let mut header = String::from("customer_id,order_id,ts,amount");
                if opts.cost {
                    header.push_str(",cost");
                }
                for s in &opts.segments {
                    header.push(',');
                    header.push_str(s);
                }
                writeln!(out, "{header}").map_err(|e| werr(&path, e))?;
                Ok(Sink::Csv { path, out })
            }
            GenFormat::Parquet => {
                let mut fields = vec![
                    Field::new("customer_id", DataType::Utf8, false),
                    Field::new("order_id", DataType::Utf8, false),
                    Field::new(
                        "ts",
                        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                        false,
                    ),
                    Field::new("amount", DataType::Float64, false),
                ];
                if opts.cost {
                    fields.push(Field::new("cost", DataType::Float64, false));
                }
                for s in &opts.segments {
                    fields.push(Field::new(s.as_str(), DataType::Utf8, true));
                }
                let schema = Arc::new(Schema::new(fields));
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                    .build();
                let writer =
                    parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
                        .map_err(|e| werr(&path, e))?;
                Ok(Sink::Parquet {
                    path,
                    writer: Box::new(writer),
                    schema,
                })
            }
        }
    }

    pub(super) fn write(
        &mut self,
        lines: &[Line],
        opts: &GenerateOptions,
    ) -> Result<(), GenerateError> {
        match self {
            Sink::Csv { path, out } => {
                let mut s = String::with_capacity(lines.len() * 80);
                for l in lines {
                    use std::fmt::Write as _;
                    let ts = chrono::DateTime::from_timestamp_micros(l.ts_us)
                        .unwrap_or_default()
                        .format("%Y-%m-%dT%H:%M:%SZ");
                    let _ = write!(
                        s,
                        "C{:07},O{:09},{},{}",
                        l.customer,
                        l.order,
                        ts,
                        cents(l.amount_cents)
                    );
                    if opts.cost {
                        let _ = write!(s, ",{}", cents(l.cost_cents));
                    }
                    for i in 0..opts.segments.len().min(3) {
                        s.push(',');
                        if let Some(v) = l.segs[i] {
                            s.push_str(v);
                        }
                    }
                    s.push('\n');
                }
                out.write_all(s.as_bytes()).map_err(|e| werr(path, e))
            }
            Sink::Parquet {
                path,
                writer,
                schema,
            } => {
                if lines.is_empty() {
                    return Ok(());
                }
                let mut cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(
                        lines.iter().map(|l| format!("C{:07}", l.customer)),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        lines.iter().map(|l| format!("O{:09}", l.order)),
                    )),
                    Arc::new(
                        TimestampMicrosecondArray::from_iter_values(lines.iter().map(|l| l.ts_us))
                            .with_timezone("UTC"),
                    ),
                    Arc::new(Float64Array::from_iter_values(
                        lines.iter().map(|l| l.amount_cents as f64 / 100.0),
                    )),
                ];
                if opts.cost {
                    cols.push(Arc::new(Float64Array::from_iter_values(
                        lines.iter().map(|l| l.cost_cents as f64 / 100.0),
                    )));
                }
                for i in 0..opts.segments.len().min(3) {
                    cols.push(Arc::new(StringArray::from(
                        lines.iter().map(|l| l.segs[i]).collect::<Vec<_>>(),
                    )));
                }
                let batch =
                    RecordBatch::try_new(schema.clone(), cols).map_err(|e| werr(path, e))?;
                writer.write(&batch).map_err(|e| werr(path, e))
            }
        }
    }

    pub(super) fn finish(self) -> Result<u64, GenerateError> {
        let path = match self {
            Sink::Csv { path, mut out } => {
                out.flush().map_err(|e| werr(&path, e))?;
                drop(out);
                path
            }
            Sink::Parquet { path, writer, .. } => {
                writer.close().map_err(|e| werr(&path, e))?;
                path
            }
        };
        Ok(std::fs::metadata(&path).map_err(|e| werr(&path, e))?.len())
    }
}

/// Minor units → decimal text with two places.
fn cents(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", v.abs() / 100, v.abs() % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_format() {
        assert_eq!(cents(1234), "12.34");
        assert_eq!(cents(-5), "-0.05");
        assert_eq!(cents(0), "0.00");
    }
}
