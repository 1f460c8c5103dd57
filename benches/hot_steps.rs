//! criterion benches of the hot steps: field parsing, order building and the per-customer fold.
//! `cargo bench --bench hot_steps`. Whole-run comparisons live in benches/compare.sh.

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use customer_value::compute;
use customer_value::config::Config;
use customer_value::metrics::{self, Ctx};
use customer_value::orders;
use customer_value::source::parse::{parse_money, parse_ts_iso};
use customer_value::source::{Dict, Ingested, Lines};
use customer_value::time::MICROS_PER_DAY;

const N: usize = 200_000;

fn synthetic() -> Ingested {
    let mut ing = Ingested {
        segments: vec![Dict::default()],
        ..Default::default()
    };
    let mut lines = Lines::default();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let base = 19_358 * MICROS_PER_DAY; // 2023-01-01
    for i in 0..N {
        let c = next() % 20_000;
        lines.cust.push(ing.customers.intern(&format!("C{c}")));
        lines.order.push(i as u64 / 2);
        let ts = base + (next() % (700 * MICROS_PER_DAY as u64)) as i64;
        lines.ts_utc.push(ts);
        lines.ts_local.push(ts);
        lines.amount.push((next() % 10_000) as i64 - 500);
        lines
            .seg
            .push(ing.segments[0].intern(["web", "app", "store"][(next() % 3) as usize]));
    }
    ing.lines = lines;
    ing
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

    let ing = synthetic();
    let cfg = Config::from_toml(
        "[input]\npaths=[\"x\"]\n[input.columns]\ncustomer_id=\"c\"\nts=\"t\"\namount=\"a\"\nsegments=[\"channel\"]\n",
    )
    .unwrap()
    .validate()
    .unwrap();
    let as_of = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("orders_build", |b| {
        b.iter(|| orders::build(black_box(&ing.lines), ing.customers.len(), 1))
    });
    let built = orders::build(&ing.lines, ing.customers.len(), 1);
    let ord = built.at(i64::MAX);
    let ctx = Ctx::new(&cfg, as_of, &ing, &ord);
    g.bench_function("customer_fold", |b| {
        b.iter(|| metrics::fold_all(black_box(&ord), &ctx))
    });
    g.bench_function("all_tables", |b| {
        b.iter(|| {
            let mut batch = None;
            let merged = compute::compute_dates(
                &compute::InMemory(&built),
                std::slice::from_ref(&ctx),
                &[i64::MAX],
                true,
                &mut |_, _, rows| {
                    batch = Some(metrics::customers::table(rows, &ing, &ctx));
                    Ok(())
                },
            )
            .unwrap();
            let customers = batch.unwrap();
            merged
                .into_iter()
                .map(|m| m.tables(&ctx, &[], customers.clone()))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
