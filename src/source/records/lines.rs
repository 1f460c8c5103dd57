//! The fast check of a CSV whose records are its lines (quoted newlines not allowed): blocks
//! read while the previous one is judged, the lines of a block judged in parallel pieces.

use std::io::Read;

use rayon::prelude::*;

use super::{csv_fields, header_names, is_blank, strip_cr, CsvLines, Mark, Params, Records, BLOCK};
use super::{FEWER_FIELDS, MORE_FIELDS, UNBALANCED};

/// Checks a CSV whose records are its lines (quoted newlines not allowed), the lines of each
/// block judged in parallel pieces while the next block is read.
pub(super) fn check_csv_lines(
    input: &mut (dyn Read + Send),
    p: &Params,
    header: bool,
) -> std::io::Result<CsvLines> {
    let mut out = Records::default();
    let mut expected: Option<usize> = None;
    let mut names = None;
    let mut need_header = header;
    // Two buffers: the next block is read while the lines of this one are judged.
    let mut this: Vec<u8> = Vec::with_capacity(BLOCK);
    let mut next: Vec<u8> = Vec::with_capacity(BLOCK);
    let mut eof = fill(input, &mut this)?;
    loop {
        // Whole lines only (the rest moves to the next block), all of it at the end.
        let end = if eof {
            this.len()
        } else {
            memchr::memrchr(b'\n', &this).map_or(0, |i| i + 1)
        };
        next.clear();
        next.extend_from_slice(&this[end..]);
        let mut body = &this[..end];
        if need_header && (end > 0 || eof) {
            let nl = memchr::memchr(b'\n', body).map_or(body.len(), |i| i + 1);
            let line = body[..nl].strip_suffix(b"\n").unwrap_or(&body[..nl]);
            out.not_utf8 |= std::str::from_utf8(line).is_err();
            let n = header_names(line, p);
            expected = Some(n.len());
            names = Some(n);
            body = &body[nl..];
            need_header = false;
        }
        if expected.is_none() {
            // Without a header, the first whole line that is not blank sets the field count.
            expected = body.split(|&b| b == b'\n').find_map(|line| {
                let line = strip_cr(line);
                let (fields, balanced) = csv_fields(line, p);
                (!is_blank(line) && balanced).then_some(fields)
            });
        }
        let want = expected.unwrap_or(1);
        let (judged, read) = rayon::join(
            || judge_block(body, p, want),
            || {
                if eof {
                    Ok(true)
                } else {
                    fill(input, &mut next)
                }
            },
        );
        for Piece { lines, marks, utf8 } in judged {
            out.not_utf8 |= !utf8;
            out.marks
                .extend(marks.into_iter().map(|(l, m)| (out.records + l, m)));
            out.records += lines;
        }
        if eof {
            break;
        }
        eof = read?;
        std::mem::swap(&mut this, &mut next);
    }
    Ok(CsvLines {
        records: out,
        expected,
        names,
    })
}

/// Appends to `buf` until it holds `BLOCK` bytes or the input ends; true at the end.
fn fill(input: &mut (dyn Read + Send), buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let want = buf.len() + BLOCK;
    while buf.len() < want {
        let len = buf.len();
        buf.reserve(want - len);
        // `take` + `read_to_end` read into the spare capacity without zeroing it first.
        match input.take((want - len) as u64).read_to_end(buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// What the lines of one piece of a block are.
struct Piece {
    lines: u64,
    /// Marks by 1-based line within the piece.
    marks: Vec<(u64, Mark)>,
    utf8: bool,
}

/// The lines of a block of whole lines, judged in pieces of about equal size in parallel, in
/// order.
fn judge_block(body: &[u8], p: &Params, want: usize) -> Vec<Piece> {
    let pieces = rayon::current_num_threads().max(1) * 4;
    let mut cuts = vec![0];
    for k in 1..pieces {
        let target = body.len() * k / pieces;
        if target <= *cuts.last().unwrap_or(&0) {
            continue;
        }
        match memchr::memchr(b'\n', &body[target..]) {
            Some(i) => cuts.push(target + i + 1),
            None => break,
        }
    }
    cuts.push(body.len());
    cuts.dedup();
    let ranges: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
    ranges
        .par_iter()
        .map(|&(a, b)| {
            let (lines, marks) = scan_csv_lines(&body[a..b], p, want);
            // Pieces are whole lines and a newline is never part of a multi-byte character,
            // so the pieces are valid UTF-8 exactly when the block is.
            let utf8 = std::str::from_utf8(&body[a..b]).is_ok();
            Piece { lines, marks, utf8 }
        })
        .collect()
}

/// Judges every line of `chunk` (whole lines; the last one may lack its newline at the end of
/// the file) in one pass over its bytes: (lines, marks by 1-based line
/// within the chunk). The same judgement as `check`'s record by record.
pub(super) fn scan_csv_lines(chunk: &[u8], p: &Params, want: usize) -> (u64, Vec<(u64, Mark)>) {
    let mut marks = Vec::new();
    let mut lines = 0u64;
    let judge = |line: &[u8], fields: usize, in_quotes: bool| -> Option<Mark> {
        let line = strip_cr(line);
        if fields == 1 && !in_quotes && is_blank(line) {
            Some(Mark::Blank)
        } else if in_quotes {
            Some(Mark::Reject(UNBALANCED))
        } else if fields > want {
            Some(Mark::Reject(MORE_FIELDS))
        } else if fields < want {
            Some(Mark::Reject(FEWER_FIELDS))
        } else {
            None
        }
    };
    let (mut start, mut fields, mut in_quotes) = (0, 1, false);
    // A byte loop over a class table: delimiters come every few bytes, so a search for the
    // next one (memchr3) stops too often to pay for its setup.
    let mut class = [0u8; 256];
    class[p.delimiter as usize] = 1;
    if let Some(q) = p.quote {
        class[q as usize] = 2;
    }
    class[b'\n' as usize] = 3;
    for (i, &byte) in chunk.iter().enumerate() {
        let c = class[byte as usize];
        if c == 0 {
            continue;
        }
        if c == 3 {
            lines += 1;
            if let Some(m) = judge(&chunk[start..i], fields, in_quotes) {
                marks.push((lines, m));
            }
            (start, fields, in_quotes) = (i + 1, 1, false);
        } else if c == 1 {
            fields += usize::from(!in_quotes);
        } else {
            in_quotes = !in_quotes;
        }
    }
    if start < chunk.len() {
        lines += 1;
        if let Some(m) = judge(&chunk[start..], fields, in_quotes) {
            marks.push((lines, m));
        }
    }
    (lines, marks)
}
