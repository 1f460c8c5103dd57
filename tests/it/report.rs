//! The HTML report in a real headless browser (the system's Chromium through Playwright): it
//! loads without a console error or any network request, every chart of a segment block has
//! marks, the segment select switches blocks, and the values read from the DOM are the tables'
//! (every heat-map cell of the whole base, the ltv, the key figures, the rejects).

use std::process::Command;

use crate::util::{ok, script_json, Workspace};

const AS_OF: &str = "2024-12-31";

/// A run of generated data (segments, refunds, multi-line orders, one rejected row) with the
/// holdout backtest and `output.report` on.
fn published() -> Workspace {
    let ws = Workspace::new();
    let config = ws.generated_with_a_reject();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("report = true\n[predict]\nholdout_days = 90\n");
    std::fs::write(&config, text).unwrap();
    ok(&ws.run_as_of(AS_OF, &[]));
    ws
}

#[test]
fn report_opens_in_chromium_with_every_chart_filled_and_the_tables_values() {
    let ws = published();
    let o = ws.run(&[
        "report",
        "--config",
        "config.toml",
        "--output",
        "report.html",
    ]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("as of {AS_OF}")));
    let html = std::fs::read(ws.path("report.html")).unwrap();
    // The run wrote the same page next to its tables (output.report = true).
    let published = std::fs::read(ws.path(&format!("out/_reports/as_of={AS_OF}.html"))).unwrap();
    assert!(
        html == published,
        "the run's report differs from `report`'s"
    );
    assert!(html.len() < 5 << 20, "{} bytes", html.len());

    let Some((python, chromium)) = crate::tools::browser() else {
        return;
    };
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/report_page.py");
    let page = script_json(
        Command::new(python)
            .arg(script)
            .arg(chromium)
            .arg(ws.path("report.html"))
            .arg(&screenshot),
    );

    assert_eq!(page["console"], serde_json::json!([]), "console messages");
    assert_eq!(page["page_errors"], serde_json::json!([]));
    let requests = page["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "network requests: {requests:?}");
    assert!(requests[0].as_str().unwrap().starts_with("file://"));
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 20_000);
    eprintln!("report screenshot: {}", screenshot.display());

    // Blocks: the whole base first; after the select, another one; six filled charts each
    // (CRR and churn, new customers, survival, LTV to date, p_alive, predicted CLV).
    let options = page["options"].as_array().unwrap();
    assert_eq!(options[0], "all=__all__");
    assert!(options.len() > 5, "{options:?}");
    for (when, key) in [
        ("initial", "all=__all__"),
        ("after_select", options.last().unwrap().as_str().unwrap()),
    ] {
        let blocks = page["blocks"][when].as_array().unwrap();
        assert_eq!(blocks.len(), 1, "{when}: visible blocks");
        assert_eq!(blocks[0]["key"], key);
        let charts = blocks[0]["charts"].as_array().unwrap();
        assert_eq!(charts.len(), 6, "{when}: {charts:?}");
        for c in charts {
            assert!(c["marks"].as_u64().unwrap() > 0, "{when}: empty chart {c}");
            assert!(c["width"].as_f64().unwrap() > 100.0, "{when}: {c}");
        }
    }

    // Every heat-map cell of the whole base is the cohorts table's retention_rate.
    let cohorts = ws.table("cohorts", AS_OF);
    let all_rows = cohorts.filter(&[("segment_by", "all")]);
    let cells: Vec<&serde_json::Value> = page["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[0] == "all=__all__")
        .collect();
    assert_eq!(cells.len(), all_rows.len());
    for c in cells {
        let (cohort, offset) = (c[1].as_str().unwrap(), c[2].as_str().unwrap());
        let i = cohorts.find(&[
            ("segment_by", "all"),
            ("cohort", cohort),
            ("period_offset", offset),
        ]);
        let want = cohorts.f64("retention_rate", i).unwrap();
        let got: f64 = c[3].as_str().unwrap().parse().unwrap();
        assert_eq!(got, want, "cohort {cohort} +{offset}");
        assert_eq!(c[4].as_str().unwrap(), format!("{want:.1}%"));
    }

    // Key figures and the ltv row of the whole base.
    let manifest = ws.manifest(AS_OF);
    let customers = manifest["customers"].as_u64().unwrap();
    let kpi = page["kpi"]["kpi-customers"]
        .as_str()
        .unwrap()
        .replace(',', "");
    assert_eq!(kpi, customers.to_string());
    let ltv = ws.table("ltv", AS_OF);
    let i = (0..ltv.rows())
        .find(|&i| {
            ltv.str("segment_by", i).as_deref() == Some("all") && ltv.date("cohort", i).is_none()
        })
        .unwrap();
    let got: f64 = page["ltv_all"].as_str().unwrap().parse().unwrap();
    assert_eq!(got, ltv.f64("ltv", i).unwrap());

    // The one rejected row: its reason, count 1, and the row itself as a sample.
    let rejects = page["rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0][1], "1");
    assert!(
        rejects[0][2].as_str().unwrap().contains("“c-bad”"),
        "{rejects:?}"
    );
    let reason = manifest["rejects_by_reason"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    assert_eq!(rejects[0][0].as_str().unwrap(), reason);
}

#[test]
fn a_report_of_nothing_published_is_a_usage_error_and_writes_nothing() {
    let ws = Workspace::new();
    ws.write("tx.csv", "customer_id,ts,amount\n");
    ws.config(
        &["tx.csv"],
        "customer_id = \"customer_id\"\nts = \"ts\"\namount = \"amount\"",
        "",
        "",
    );
    let o = ws.run(&["report", "--config", "config.toml", "--output", "r.html"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no published run"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!ws.path("r.html").exists());
    let o = ws.run(&[
        "report",
        "--config",
        "config.toml",
        "--as-of",
        "2024-01-31",
        "--output",
        "r.html",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("for as_of 2024-01-31"));
}
