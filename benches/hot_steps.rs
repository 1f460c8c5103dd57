//! criterion benches of the hot steps: field parsing, and a partition's fold and finish
//! through the library API (ingest, orders, the per-customer fold; then scores and tables).
//! `cargo bench --bench hot_steps`. Whole-run comparisons live in benches/compare.sh.

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use customer_value::bench::{parse_money, parse_ts_iso};
use customer_value::Computation;

const N: usize = 200_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// N lines of 20 000 customers over 700 days from 2023-01-01, two lines per order, one
/// segment column.
fn synthetic(job: &Computation) -> RecordBatch {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let base = 19_358 * MICROS_PER_DAY; // 2023-01-01
    let (mut cust, mut order, mut ts, mut amount, mut channel) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..N {
        cust.push(format!("C{}", next() % 20_000));
        order.push(format!("O{}", i / 2));
        ts.push(base + (next() % (700 * MICROS_PER_DAY as u64)) as i64);
        amount.push((next() % 10_000) as i64 - 500);
        channel.push(["web", "app", "store"][(next() % 3) as usize]);
    }
    RecordBatch::try_new(
        job.lines_schema(),
        vec![
            Arc::new(StringArray::from(cust)),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Int64Array::from(amount)),
            Arc::new(StringArray::from(order)),
            Arc::new(StringArray::from(channel)),
        ],
    )
    .expect("lines match the schema")
}

fn bench(c: &mut Criterion) {
    let amounts: Vec<String> = (0..N)
        .map(|i| format!("{}.{:02}", i % 5000, i % 100))
        .collect();
    let stamps: Vec<String> = (0..N)
        .map(|i| {
            format!(
                "2024-{:02}-{:02}T{:02}:15:00Z",
                i % 12 + 1,
                i % 28 + 1,
                i % 24
            )
        })
        .collect();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("money", |b| {
        b.iter(|| {
            amounts
                .iter()
                .map(|s| parse_money(s, 2).unwrap_or(0))
                .sum::<i64>()
        })
    });
    g.bench_function("ts_iso", |b| {
        b.iter(|| stamps.iter().filter(|s| parse_ts_iso(s).is_some()).count())
    });
    g.finish();

    let job = Computation::from_toml(
        "[input.columns]\ncustomer_id=\"c\"\nts=\"t\"\namount=\"a\"\norder_id=\"o\"\nsegments=[\"channel\"]\n",
        NaiveDate::from_ymd_opt(2024, 12, 31).expect("a date"),
    )
    .expect("a valid config");
    let lines = [synthetic(&job)];
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("fold", |b| {
        b.iter(|| job.fold(black_box(&lines)).expect("fold"))
    });
    let partial = job.fold(&lines).expect("fold");
    g.bench_function("finish", |b| {
        b.iter(|| job.finish(black_box(partial.clone())).expect("finish"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
