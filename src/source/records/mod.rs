//! Record structure of text inputs (CSV, NDJSON), checked on the raw bytes before polars parses
//! them. Left to polars, a stray quote merges the lines up to the next quote into one record (their
//! money vanishes into a text field while the accounting still closes), one ragged or non-JSON
//! line fails the whole file, and a blank line becomes a row of nulls. Here every physical line
//! is one record (unless `input.csv.allow_quoted_newlines`), and a record that is blank, has
//! unbalanced quotes, another field count than the header, or (NDJSON) is not a JSON object is
//! marked. When a file has marked records, polars reads a copy in which each of them is replaced
//! by an empty record, so the reader's row numbers stay the file's data record numbers and the
//! marked rows become rejects (or skipped blank lines) with their line numbers.

use std::io::{Read, Write};

use rayon::prelude::*;

use crate::config::{InputFormat, Validated};

use super::{read_err, InputFile, SourceError};

mod lines;
mod open;

use lines::check_csv_lines;
use open::open;

/// Bytes read at a time.
const BLOCK: usize = 16 << 20;

/// Why a record is not read as a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Nothing but whitespace: skipped, and counted as a blank line (not a row).
    Blank,
    /// A row rejected for this reason.
    Reject(&'static str),
}

pub(crate) const UNBALANCED: &str =
    "csv: unbalanced quotes (a quoted value may not span lines unless input.csv.allow_quoted_newlines)";
pub(crate) const UNCLOSED: &str = "csv: a quote opened here never closes";
pub(crate) const MORE_FIELDS: &str = "csv: more fields than the header";
pub(crate) const FEWER_FIELDS: &str = "csv: fewer fields than the header";
pub(crate) const NOT_JSON: &str = "ndjson: not valid JSON";
pub(crate) const NOT_OBJECT: &str = "ndjson: not a JSON object";

/// What the check found in one file.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// Marked records by data row number (1-based, header excluded), ascending.
    pub marks: Vec<(u64, Mark)>,
    /// Where records span several lines (quoted newlines allowed): (first row, lines added
    /// before it), ascending, so a row's line can be named.
    shifts: Vec<(u64, u64)>,
    /// Data records (rows and blank lines).
    pub records: u64,
    /// A copy to read instead of the file: marked records replaced by empty ones.
    pub copy: Option<tempfile::TempPath>,
    /// Some CSV record (or the header) is not valid UTF-8: the file is decoded lossily.
    pub not_utf8: bool,
}

impl Records {
    /// The mark of data row `row`, if any.
    pub(crate) fn mark(&self, row: u64) -> Option<Mark> {
        if self.marks.is_empty() {
            return None;
        }
        self.marks
            .binary_search_by_key(&row, |m| m.0)
            .ok()
            .map(|i| self.marks[i].1)
    }

    /// The data line (1-based, header excluded) where data row `row` starts.
    pub(crate) fn line_of(&self, row: u64) -> u64 {
        let i = self.shifts.partition_point(|s| s.0 <= row);
        row + if i == 0 { 0 } else { self.shifts[i - 1].1 }
    }
}

/// How records are split and judged.
#[derive(Debug, Clone, Copy)]
struct Params {
    ndjson: bool,
    delimiter: u8,
    quote: Option<u8>,
    /// A quoted value may hold newlines (CSV): records end at newlines outside quotes.
    multiline: bool,
}

/// Calls `f` with every record of `input` (without its line end) and the number of newlines
/// inside it, in order. Records end at newlines (outside quotes when `multiline`).
fn for_each_record(
    input: &mut dyn Read,
    p: &Params,
    mut f: impl FnMut(&[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
    let mut eof = false;
    while !eof {
        // Fill the buffer up to BLOCK (records left over from the last block stay in front).
        let start = buf.len();
        buf.resize(start + BLOCK, 0);
        let mut filled = start;
        while filled < buf.len() {
            match input.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        let mut pos = 0;
        let mut in_quotes = false;
        let mut inner_lines = 0u64;
        let mut scan = 0;
        loop {
            // The end of the record starting at `pos`.
            let end = if p.multiline {
                let q = p.quote.unwrap_or(b'\n');
                let mut found = None;
                for i in memchr::memchr2_iter(b'\n', q, &buf[scan..]) {
                    let i = scan + i;
                    if buf[i] == b'\n' {
                        if in_quotes {
                            inner_lines += 1;
                        } else {
                            found = Some(i);
                            break;
                        }
                    } else {
                        in_quotes = !in_quotes;
                    }
                }
                found
            } else {
                memchr::memchr(b'\n', &buf[pos..]).map(|i| pos + i)
            };
            match end {
                Some(e) => {
                    f(&buf[pos..e], inner_lines)?;
                    pos = e + 1;
                    scan = pos;
                    in_quotes = false;
                    inner_lines = 0;
                }
                None if eof => {
                    if pos < buf.len() {
                        f(&buf[pos..], inner_lines)?;
                    }
                    pos = buf.len();
                    break;
                }
                None => break,
            }
        }
        buf.drain(..pos);
    }
    Ok(())
}

/// `record` without a trailing carriage return.
fn strip_cr(record: &[u8]) -> &[u8] {
    record.strip_suffix(b"\r").unwrap_or(record)
}

fn is_blank(record: &[u8]) -> bool {
    record.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// (fields, quotes balanced) of a CSV record: delimiters outside quotes, quotes toggling.
fn csv_fields(record: &[u8], p: &Params) -> (usize, bool) {
    let mut fields = 1;
    let mut in_quotes = false;
    match p.quote {
        Some(q) => {
            for i in memchr::memchr2_iter(p.delimiter, q, record) {
                if record[i] == q {
                    in_quotes = !in_quotes;
                } else if !in_quotes {
                    fields += 1;
                }
            }
        }
        None => fields += memchr::memchr_iter(p.delimiter, record).count(),
    }
    (fields, !in_quotes)
}

/// The field names of a CSV header line (quotes and surrounding spaces removed).
fn header_names(line: &[u8], p: &Params) -> Vec<String> {
    let text = String::from_utf8_lossy(strip_cr(line));
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut names = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    for ch in text.chars() {
        if p.quote.is_some_and(|q| ch == q as char) {
            in_quotes = !in_quotes;
        } else if ch == p.delimiter as char && !in_quotes {
            names.push(std::mem::take(&mut cur).trim().to_string());
        } else {
            cur.push(ch);
        }
    }
    names.push(cur.trim().to_string());
    names
}

/// Judges one NDJSON line.
fn ndjson_mark(line: &[u8]) -> Option<Mark> {
    let line = strip_cr(line);
    if is_blank(line) {
        return Some(Mark::Blank);
    }
    let first = line.iter().find(|b| !b.is_ascii_whitespace());
    match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        Err(_) => Some(Mark::Reject(NOT_JSON)),
        Ok(_) if first != Some(&b'{') => Some(Mark::Reject(NOT_OBJECT)),
        Ok(_) => None,
    }
}

/// Checks the records of a CSV or NDJSON input at `path` (a local path, or the object's URL
/// when `remote`); other formats have nothing to check. A copy is written (to the system's
/// temporary folder) when some records are marked.
pub(crate) fn check(
    file: &InputFile,
    path: &str,
    remote: bool,
    cfg: &Validated,
) -> Result<Records, SourceError> {
    let ndjson = match file.format {
        InputFormat::Ndjson => true,
        InputFormat::Csv | InputFormat::Auto => false,
        InputFormat::Parquet => return Ok(Records::default()),
    };
    let csv = &cfg.config.input.csv;
    let p = Params {
        ndjson,
        delimiter: cfg.delimiter,
        quote: cfg.quote,
        multiline: !ndjson && csv.allow_quoted_newlines,
    };
    let header = !ndjson && csv.has_header;
    let mut input = open(path, remote, cfg).map_err(|e| read_err(file, e))?;
    let found = if !p.ndjson && !p.multiline {
        check_csv_lines(&mut *input, &p, header)
    } else {
        check_records(&mut *input, &p, header)
    };
    let CsvLines {
        records: mut out,
        expected,
        names,
    } = found.map_err(|e| read_err(file, e))?;
    if let Some(problem) = names.as_deref().and_then(duplicate_name) {
        return Err(SourceError::Header {
            file: file.display.clone(),
            message: problem,
        });
    }
    if !out.marks.is_empty() {
        out.copy = Some(
            write_copy(
                path,
                remote,
                cfg,
                &p,
                header,
                expected.unwrap_or(1),
                &out.marks,
            )
            .map_err(|source| SourceError::CheckedCopy {
                file: file.display.clone(),
                source,
            })?,
        );
    }
    Ok(out)
}

/// Checks the records one by one: NDJSON lines (judged in parallel, a block at a time), or CSV
/// records that may span lines.
fn check_records(input: &mut dyn Read, p: &Params, header: bool) -> std::io::Result<CsvLines> {
    let mut out = Records::default();
    let mut expected: Option<usize> = None;
    let mut names = None;
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let flush_json = |pending: &mut Vec<(u64, Vec<u8>)>, marks: &mut Vec<(u64, Mark)>| {
        let found: Vec<(u64, Mark)> = pending
            .par_iter()
            .filter_map(|(row, line)| ndjson_mark(line).map(|m| (*row, m)))
            .collect();
        marks.extend(found);
        pending.clear();
    };
    for_each_record(input, p, |record, inner| {
        if !p.ndjson && !out.not_utf8 && std::str::from_utf8(record).is_err() {
            out.not_utf8 = true;
        }
        if header && names.is_none() {
            let n = header_names(record, p);
            expected = Some(n.len());
            names = Some(n);
            return Ok(());
        }
        out.records += 1;
        let row = out.records;
        if inner > 0 {
            let before = out.shifts.last().map_or(0, |s| s.1);
            out.shifts.push((row + 1, before + inner));
        }
        if p.ndjson {
            pending.push((row, record.to_vec()));
            if pending.len() >= 1 << 16 {
                flush_json(&mut pending, &mut out.marks);
            }
            return Ok(());
        }
        let record = strip_cr(record);
        if is_blank(record) {
            out.marks.push((row, Mark::Blank));
            return Ok(());
        }
        let (fields, balanced) = csv_fields(record, p);
        if !balanced {
            out.marks.push((
                row,
                Mark::Reject(if p.multiline { UNCLOSED } else { UNBALANCED }),
            ));
            return Ok(());
        }
        let want = *expected.get_or_insert(fields);
        if fields != want {
            out.marks.push((
                row,
                Mark::Reject(if fields > want {
                    MORE_FIELDS
                } else {
                    FEWER_FIELDS
                }),
            ));
        }
        Ok(())
    })?;
    flush_json(&mut pending, &mut out.marks);
    out.marks.sort_unstable_by_key(|m| m.0);
    Ok(CsvLines {
        records: out,
        expected,
        names,
    })
}

/// The problem of a header naming a column twice, if it does.
fn duplicate_name(names: &[String]) -> Option<String> {
    names.iter().enumerate().find_map(|(i, n)| {
        names[..i].iter().position(|m| m == n).map(|j| {
            format!(
                "the header names column '{}' twice (columns {} and {}); rename one",
                crate::config::short(n),
                j + 1,
                i + 1
            )
        })
    })
}

/// What a check of a file's records found.
struct CsvLines {
    records: Records,
    /// The field count every CSV record must have (the header's, or the first record's).
    expected: Option<usize>,
    /// The header's column names.
    names: Option<Vec<String>>,
}

/// Writes the file again with each marked record replaced by an empty one (a line of
/// delimiters, or `{}`), uncompressed, under the same file name suffix.
fn write_copy(
    path: &str,
    remote: bool,
    cfg: &Validated,
    p: &Params,
    header: bool,
    fields: usize,
    marks: &[(u64, Mark)],
) -> std::io::Result<tempfile::TempPath> {
    let suffix = if p.ndjson { ".ndjson" } else { ".csv" };
    let tmp = tempfile::Builder::new()
        .prefix("customer-value-checked-")
        .suffix(suffix)
        .tempfile()?;
    let (file, tmp_path) = tmp.into_parts();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let empty: Vec<u8> = if p.ndjson {
        b"{}".to_vec()
    } else {
        vec![p.delimiter; fields.saturating_sub(1)]
    };
    let mut input = open(path, remote, cfg)?;
    let mut row = 0u64;
    let mut next = 0;
    let mut first = header;
    for_each_record(&mut *input, p, |record, _| {
        if first {
            first = false;
        } else {
            row += 1;
            if marks.get(next).is_some_and(|m| m.0 == row) {
                next += 1;
                w.write_all(&empty)?;
                return w.write_all(b"\n");
            }
        }
        w.write_all(record)?;
        w.write_all(b"\n")
    })?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(tmp_path)
}

#[cfg(test)]
mod tests {
    use super::lines::scan_csv_lines;
    use super::*;

    fn params(multiline: bool) -> Params {
        Params {
            ndjson: false,
            delimiter: b',',
            quote: Some(b'"'),
            multiline,
        }
    }

    fn records(text: &str, p: &Params) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for_each_record(&mut text.as_bytes(), p, |r, inner| {
            out.push((String::from_utf8_lossy(r).to_string(), inner));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn every_line_is_a_record_unless_quoted_newlines_are_allowed() {
        let text = "h1,h2\na,\"x\nb,2\nc,y\"\nd,4";
        // A stray quote on line 2: lines stay records (4 data lines, the last without newline).
        let r = records(text, &params(false));
        assert_eq!(r.len(), 5);
        assert_eq!(r[2], ("b,2".to_string(), 0));
        assert_eq!(r[4], ("d,4".to_string(), 0));
        // Allowed: the quote runs to line 4's quote, and the record spans 3 lines.
        let r = records(text, &params(true));
        assert_eq!(r.len(), 3);
        assert_eq!(r[1], ("a,\"x\nb,2\nc,y\"".to_string(), 2));
    }

    #[test]
    fn fields_count_delimiters_outside_quotes() {
        let p = params(false);
        assert_eq!(csv_fields(b"a,b,c", &p), (3, true));
        assert_eq!(csv_fields(b"a,\"b,c\",d", &p), (3, true));
        assert_eq!(csv_fields(b"a,\"b\"\"c\",d", &p), (3, true));
        assert_eq!(csv_fields(b"a,\"b,c", &p), (2, false));
        assert_eq!(csv_fields(b"", &p), (1, true));
    }

    #[test]
    fn header_names_and_ndjson_lines() {
        let p = params(false);
        assert_eq!(
            header_names(b"\xef\xbb\xbfa, \"b,c\" ,d\r", &p),
            vec!["a", "b,c", "d"]
        );
        assert_eq!(ndjson_mark(b"{\"a\": 1}"), None);
        assert_eq!(ndjson_mark(b"  \r"), Some(Mark::Blank));
        assert_eq!(ndjson_mark(b"{\"a\": 1"), Some(Mark::Reject(NOT_JSON)));
        assert_eq!(ndjson_mark(b"[1, 2]"), Some(Mark::Reject(NOT_OBJECT)));
    }

    proptest::proptest! {
        /// The one-pass judgement of whole blocks gives the marks of the record-by-record one.
        #[test]
        fn lines_judged_in_one_pass_match_records_judged_one_by_one(
            lines in proptest::collection::vec("[a\",\r ]{0,8}", 0..20),
            want in 1usize..4,
        ) {
            let p = params(false);
            let text = lines.join("\n");
            let (n, fast) = scan_csv_lines(text.as_bytes(), &p, want);
            let mut slow = Vec::new();
            let mut row = 0;
            for_each_record(&mut text.as_bytes(), &p, |r, _| {
                row += 1;
                let r = strip_cr(r);
                let (fields, balanced) = csv_fields(r, &p);
                let mark = if is_blank(r) {
                    Some(Mark::Blank)
                } else if !balanced {
                    Some(Mark::Reject(UNBALANCED))
                } else if fields != want {
                    Some(Mark::Reject(if fields > want { MORE_FIELDS } else { FEWER_FIELDS }))
                } else {
                    None
                };
                slow.extend(mark.map(|m| (row, m)));
                Ok(())
            })
            .unwrap();
            proptest::prop_assert_eq!(n, row);
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn rows_name_their_lines() {
        let r = Records {
            shifts: vec![(3, 2), (5, 3)],
            ..Default::default()
        };
        // Rows 1, 2 on lines 1, 2; row 2 spans 3 lines, so row 3 is on line 5; row 4 spans 2.
        assert_eq!(
            (1..=6).map(|row| r.line_of(row)).collect::<Vec<_>>(),
            vec![1, 2, 5, 6, 8, 9]
        );
    }

    #[test]
    fn records_longer_than_a_block_are_whole() {
        let long = "x".repeat(BLOCK + 10);
        let text = format!("h\n{long}\nshort\n");
        let r = records(&text, &params(false));
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].0.len(), BLOCK + 10);
        assert_eq!(r[2].0, "short");
    }
}
