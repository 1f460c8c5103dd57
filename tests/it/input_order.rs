//! Results depend on the content of the input only: shuffling the lines, splitting them into
//! files listed in another order and folding the customers in 1, 3 or 8 partitions give the same
//! tables, also where lines and orders tie on time (the tie-break rule is in the README).

use crate::util::{assert_same, by_customer, read_partition, Workspace, ACCOUNTING_KEYS};

/// The tables compared (rejects name rows by file and line, which shuffling changes).
const COMPARED: [&str; 4] = ["customers", "retention", "cohorts", "ltv"];
const HEADER: &str = "customer_id,order_id,ts,amount,channel,region";

/// A small deterministic generator (64-bit LCG, top bits), so the test needs no seed file.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.next(i as u64 + 1) as usize);
        }
    }
}

/// 400 customers over 2024, with ties everywhere: every order starts at 10:00:00 on one of a
/// customer's few days, so a customer's orders often share their instant; multi-line orders
/// have lines at the same instant in different channels and regions; some lines have no
/// order_id (each its own order, tied with others at the same instant); some orders get a
/// refund line a few days later (netted into the order, restating it for earlier dates).
pub(crate) fn lines() -> Vec<String> {
    let mut rng = Lcg(7);
    let channels = ["web", "app", "store"];
    let regions = ["emea", "na", "apac", "latam"];
    let mut out = Vec::new();
    let mut order = 0;
    for c in 0..400 {
        let days: Vec<u64> = (0..1 + rng.next(3)).map(|_| rng.next(360)).collect();
        for _ in 0..1 + rng.next(6) {
            let day = days[rng.next(days.len() as u64) as usize];
            let date = chrono::NaiveDate::from_yo_opt(2024, 1 + day as u32).unwrap();
            let ts = format!("{date}T10:00:00Z");
            let id = if rng.next(4) == 0 {
                String::new()
            } else {
                order += 1;
                format!("O{order:05}")
            };
            for _ in 0..1 + rng.next(3) {
                let amount = 1 + rng.next(20000);
                out.push(format!(
                    "C{c:04},{id},{ts},{}.{:02},{},{}",
                    amount / 100,
                    amount % 100,
                    channels[rng.next(3) as usize],
                    regions[rng.next(4) as usize],
                ));
                if id.is_empty() {
                    break;
                }
            }
            if !id.is_empty() && rng.next(5) == 0 {
                let later = date + chrono::Duration::days(1 + rng.next(40) as i64);
                out.push(format!(
                    "C{c:04},{id},{later}T09:00:00Z,-{}.00,web,emea",
                    1 + rng.next(30)
                ));
            }
        }
    }
    out
}

/// Writes the lines into `files` CSV files (round robin) under `name/`, returns their paths in
/// the order the config lists them.
fn write_files(ws: &Workspace, name: &str, lines: &[String], files: usize) -> Vec<String> {
    let mut parts = vec![vec![HEADER.to_string()]; files];
    for (i, l) in lines.iter().enumerate() {
        parts[i % files].push(l.clone());
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(k, p)| {
            let path = ws.write(&format!("{name}/part{k}.csv"), p.join("\n") + "\n");
            path.display().to_string()
        })
        .collect()
}

/// Runs a backfill of three month ends (the refunds restate orders between them) with these
/// inputs, segment assignment and partitions, into `out`.
fn backfill(ws: &Workspace, out: &str, inputs: &[String], assignment: &str, partitions: usize) {
    let paths: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let cfg = crate::util::config(
        &paths,
        &ws.path(out).display().to_string(),
        crate::util::DEFAULT_COLUMNS
            .replace("[\"channel\"]", "[\"channel\", \"region\"]")
            .as_str(),
        &format!("period = \"month\"\nsegment_assignment = \"{assignment}\""),
        "",
    );
    let config = format!("{out}.toml");
    ws.write(
        &config,
        format!("{cfg}[engine]\npartitions = {partitions}\n"),
    );
    let o = ws.run(&[
        "backfill",
        "--config",
        &config,
        "--from",
        "2024-10-01",
        "--to",
        "2024-12-31",
        "--every",
        "month",
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn assert_same_outputs(ws: &Workspace, a: &str, b: &str) {
    for as_of in ["2024-10-31", "2024-11-30", "2024-12-31"] {
        for t in COMPARED {
            let mut x = read_partition(&ws.path(&format!("{a}/{t}/as_of={as_of}"))).0;
            let mut y = read_partition(&ws.path(&format!("{b}/{t}/as_of={as_of}"))).0;
            if t == "customers" {
                (x, y) = (by_customer(x), by_customer(y));
            }
            assert_same(&x, &y, &format!("{b} against {a}: {t} as of {as_of}"));
        }
        let (ma, mb) = (ws.manifest_in(a, as_of), ws.manifest_in(b, as_of));
        // Per-file accounting differs with the files; the totals may not.
        for k in ACCOUNTING_KEYS.into_iter().filter(|&k| k != "inputs") {
            assert_eq!(ma[k], mb[k], "{b} against {a}: manifest {k} as of {as_of}");
        }
    }
}

#[test]
fn tables_do_not_depend_on_line_order_file_order_or_partitions() {
    let ws = Workspace::new();
    let original = lines();
    let mut rng = Lcg(11);
    for assignment in ["first", "last", "most_frequent"] {
        let base = format!("{assignment}_base");
        let files = write_files(&ws, &base, &original, 1);
        backfill(&ws, &base, &files, assignment, 1);
        for (k, (n_files, partitions)) in [(3, 1), (4, 3), (5, 8)].into_iter().enumerate() {
            let mut shuffled = original.clone();
            rng.shuffle(&mut shuffled);
            let name = format!("{assignment}_{k}");
            let mut files = write_files(&ws, &name, &shuffled, n_files);
            // Files listed in another order than their names.
            files.reverse();
            rng.shuffle(&mut files);
            backfill(&ws, &name, &files, assignment, partitions);
            assert_same_outputs(&ws, &base, &name);
        }
    }
    // The data has the ties it is meant to have: customers whose first orders share an
    // instant (or there would be nothing to break), checked on the lines.
    let mut first: std::collections::HashMap<&str, (&str, std::collections::HashSet<&str>)> =
        Default::default();
    for l in &original {
        let f: Vec<&str> = l.split(',').collect();
        let e = first.entry(f[0]).or_insert((f[2], Default::default()));
        if f[2] < e.0 {
            *e = (f[2], Default::default());
        }
        if f[2] == e.0 {
            e.1.insert(f[4]);
        }
    }
    let tied = first.values().filter(|(_, ch)| ch.len() > 1).count();
    assert!(
        tied > 20,
        "only {tied} customers with tied first lines in different channels"
    );
}
