//! Object storage against real servers on 127.0.0.1: moto (S3), Azurite (Azure Blob) and a
//! static HTTP server. Runs through object storage must give the same tables as local runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::servers::{self, Server, AZURITE_ACCOUNT, AZURITE_KEY};
use crate::util::{ok, read_partition, Workspace, TABLES};

const AS_OF: &str = "2024-01-31";
const COLUMNS: &str = crate::util::GEN_COLUMNS;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn s3_env(server: &Server) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT".into(), server.endpoint()),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

fn s3_store(server: &Server, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1")
            .build()
            .unwrap(),
    )
}

fn azure_env(server: &Server) -> Vec<(String, String)> {
    vec![
        ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
        ("AZURITE_BLOB_STORAGE_URL".into(), server.endpoint()),
        ("AZURE_STORAGE_ACCOUNT_NAME".into(), AZURITE_ACCOUNT.into()),
        ("AZURE_STORAGE_ACCOUNT_KEY".into(), AZURITE_KEY.into()),
    ]
}

fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) {
    let s = Arc::clone(store);
    rt().block_on(async move { s.put(&ObjPath::from(key), PutPayload::from(bytes)).await })
        .unwrap();
}

/// Every object under `prefix`: (key, size).
fn list(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<(String, u64)> {
    let s = Arc::clone(store);
    let p = ObjPath::from(prefix);
    let mut v: Vec<(String, u64)> = rt()
        .block_on(async move { s.list(Some(&p)).try_collect::<Vec<_>>().await })
        .unwrap()
        .into_iter()
        .map(|m| (m.location.to_string(), m.size))
        .collect();
    v.sort();
    v
}

fn get(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    let s = Arc::clone(store);
    let k = ObjPath::from(key);
    rt().block_on(async move { s.get(&k).await.unwrap().bytes().await })
        .unwrap()
        .to_vec()
}

/// The manifest of AS_OF under `out/` in `store`.
fn manifest(store: &Arc<dyn ObjectStore>) -> serde_json::Value {
    serde_json::from_slice(&get(store, &format!("out/_manifests/as_of={AS_OF}.json"))).unwrap()
}

/// Downloads `{prefix}/{table}/as_of=D/` of every table into `dir/{table}/as_of=D/`.
fn download(store: &Arc<dyn ObjectStore>, prefix: &str, dir: &std::path::Path) {
    for (key, _) in list(store, prefix) {
        let rel = key.strip_prefix(prefix).unwrap().trim_start_matches('/');
        let target = dir.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, get(store, &key)).unwrap();
    }
}

fn generate(ws: &Workspace, file: &str, customers: &str, rows: &str) {
    ws.generate(
        file,
        &[
            "--customers",
            customers,
            "--rows",
            rows,
            "--seed",
            "5",
            "--months",
            "13",
        ],
    );
}

fn run(
    ws: &Workspace,
    input: &str,
    output: &str,
    envs: &[(String, String)],
    extra: &str,
) -> std::process::Output {
    let cfg = crate::util::config(&[input], output, COLUMNS, "", "");
    ws.write("config.toml", format!("{cfg}{extra}"));
    ws.run_env(&["run", "--config", "config.toml", "--as-of", AS_OF], envs)
}

/// The local run's tables, to compare against.
fn local_tables(ws: &Workspace, input: &str) -> Vec<arrow::array::RecordBatch> {
    ok(&run(ws, input, "local_out", &[], ""));
    TABLES
        .iter()
        .map(|t| read_partition(&ws.path(&format!("local_out/{t}/as_of={AS_OF}"))).0)
        .collect()
}

/// Uploads tx.csv to `{base}/in/`, runs `{base}/in/tx.csv` → `{base}/out`, downloads the
/// tables and compares them with the local run's.
fn round_trip(
    ws: &Workspace,
    store: &Arc<dyn ObjectStore>,
    base: &str,
    env: &[(String, String)],
    local: &[arrow::array::RecordBatch],
) {
    put(
        store,
        "in/tx.csv",
        std::fs::read(ws.path("tx.csv")).unwrap(),
    );
    let out = run(
        ws,
        &format!("{base}/in/tx.csv"),
        &format!("{base}/out"),
        env,
        "",
    );
    ok(&out);
    let dir = ws.path(&format!("from_{}", base.replace([':', '/'], "_")));
    download(store, "out", &dir);
    assert_same_tables(local, &dir);
}

/// Same columns and values (the file metadata differs: it names each run).
fn assert_same_tables(expected: &[arrow::array::RecordBatch], dir: &std::path::Path) {
    for (t, want) in TABLES.iter().zip(expected) {
        let got = read_partition(&dir.join(t).join(format!("as_of={AS_OF}"))).0;
        crate::util::assert_same(&got, want, t);
    }
}

#[test]
fn s3_to_s3_equals_local_with_globs_and_hive() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "cv-test");
    let store = s3_store(&moto, "cv-test");
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "400", "4000");
    let local = local_tables(&ws, "tx.csv");

    round_trip(&ws, &store, "s3://cv-test", &s3_env(&moto), &local);
    let manifest = manifest(&store);
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["inputs"][0]["url"], "s3://cv-test/in/tx.csv");
    assert!(manifest["inputs"][0]["etag"].is_string(), "{manifest}");
    assert_eq!(
        manifest["inputs"][0]["size"],
        std::fs::metadata(ws.path("tx.csv")).unwrap().len()
    );
    // Rerun with predictions off: the date's models files go with the publish.
    let models = format!("out/models/as_of={AS_OF}");
    assert!(!list(&store, &models).is_empty());
    ok(&run(
        &ws,
        "s3://cv-test/in/tx.csv",
        "s3://cv-test/out",
        &s3_env(&moto),
        "[predict]\nenabled = false\n",
    ));
    assert_eq!(list(&store, &models), vec![]);
    assert!(self::manifest(&store)["tables"].get("models").is_none());

    // The same rows split by region into Hive folders, read by glob and by prefix: region comes
    // from the folder names, so the all-segment tables equal the local run's.
    let text = std::fs::read_to_string(ws.path("tx.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let region_col = header.split(',').position(|c| c == "region").unwrap();
    let mut by_region: std::collections::BTreeMap<String, String> = Default::default();
    for l in lines {
        let region = l.split(',').nth(region_col).unwrap().to_string();
        let region = if region.is_empty() {
            "none".to_string()
        } else {
            region
        };
        by_region
            .entry(region)
            .or_insert_with(|| format!("{header}\n"))
            .push_str(&format!("{l}\n"));
    }
    for (r, body) in &by_region {
        put(
            &store,
            &format!("hive/region={r}/part-0.csv"),
            body.clone().into_bytes(),
        );
    }
    put(&store, "hive/_SUCCESS", vec![]);
    for input in ["s3://cv-test/hive/region=*/*.csv", "s3://cv-test/hive"] {
        ok(&run(
            &ws,
            input,
            "s3://cv-test/out_hive",
            &s3_env(&moto),
            "",
        ));
        let dir = ws.path(&format!("hive_{}", input.len()));
        download(&store, "out_hive", &dir);
        let t = read_partition(&dir.join(format!("retention/as_of={AS_OF}")));
        let l = crate::util::Table(local[1].clone());
        let all_rows = |t: &crate::util::Table| -> Vec<(Option<i64>, Option<i64>, Option<String>)> {
            t.filter(&[("segment_by", "all")])
                .into_iter()
                .map(|i| {
                    (
                        t.int("customers_end", i),
                        t.int("customers_new", i),
                        t.any("revenue", i),
                    )
                })
                .collect()
        };
        assert_eq!(all_rows(&t), all_rows(&l), "{input}");
    }
}

#[test]
fn s3_multipart_output_over_10_mib() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "big");
    let store = s3_store(&moto, "big");
    let ws = Workspace::new();
    // 250k customers make a customers table of ~15 MiB (about 60 bytes per row compressed).
    generate(&ws, "tx.csv", "250000", "300000");
    let out = run(
        &ws,
        &ws.path("tx.csv").display().to_string(),
        "s3://big/out",
        &s3_env(&moto),
        "",
    );
    ok(&out);
    let objects = list(&store, "out/customers");
    assert_eq!(objects.len(), 1);
    assert!(
        objects[0].1 > 10 << 20,
        "customers file is {} bytes",
        objects[0].1
    );
    download(&store, "out", &ws.path("dl"));
    let t = read_partition(&ws.path(&format!("dl/customers/as_of={AS_OF}")));
    let m = manifest(&store);
    assert_eq!(
        t.rows() as u64,
        m["tables"]["customers"]["rows"].as_u64().unwrap()
    );
}

/// The heat-map cells of a report page: (segment, cohort, offset, value) as written.
fn heat_map_cells(html: &str) -> Vec<String> {
    html.split("<td class=\"cell")
        .skip(1)
        .map(|cell| {
            let start = cell.find("data-segment=").unwrap();
            let end = cell.find(" title=").unwrap();
            cell[start..end].to_string()
        })
        .collect()
}

#[test]
fn s3_run_publishes_its_report_and_report_reads_the_bucket() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "rep");
    let store = s3_store(&moto, "rep");
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "300", "3000");
    let input = ws.path("tx.csv").display().to_string();
    ok(&run(&ws, &input, "local_out", &[], "report = true\n"));
    let local = std::fs::read_to_string(ws.path(&format!("local_out/_reports/as_of={AS_OF}.html")))
        .unwrap();
    ok(&run(
        &ws,
        &input,
        "s3://rep/out",
        &s3_env(&moto),
        "report = true\n",
    ));
    let key = format!("out/_reports/as_of={AS_OF}.html");
    let published = String::from_utf8(get(&store, &key)).unwrap();
    // The same numbers as the local run's page (the run ids and timings differ).
    let cells = heat_map_cells(&published);
    assert!(cells.len() > 50, "{} cells", cells.len());
    assert_eq!(cells, heat_map_cells(&local));
    // `report` reads the bucket's newest run and draws the same page as the run did.
    let o = ws.run_env(
        &[
            "report",
            "--config",
            "config.toml",
            "--output",
            "from_s3.html",
        ],
        &s3_env(&moto),
    );
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("as of {AS_OF}")));
    assert_eq!(
        std::fs::read_to_string(ws.path("from_s3.html")).unwrap(),
        published
    );
}

#[test]
fn azure_run_equals_local() {
    let Some(az) = servers::azurite() else { return };
    servers::create_container(&az, "cvtest");
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "300", "3000");
    let local = local_tables(&ws, "tx.csv");
    let store: Arc<dyn ObjectStore> = Arc::new(
        MicrosoftAzureBuilder::new()
            .with_endpoint(format!("{}/{AZURITE_ACCOUNT}", az.endpoint()))
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_container_name("cvtest")
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    round_trip(&ws, &store, "az://cvtest", &azure_env(&az), &local);
}

#[test]
fn http_input_equals_local() {
    let ws = Workspace::new();
    generate(&ws, "srv/tx.csv.gz", "300", "3000");
    let Some(http) = servers::http_static(&ws.path("srv")) else {
        return;
    };
    let local = local_tables(&ws, "srv/tx.csv.gz");
    let url = format!("{}/tx.csv.gz", http.endpoint());
    ok(&run(&ws, &url, "http_out", &[], ""));
    assert_same_tables(&local, &ws.path("http_out"));
}

#[test]
fn s3_down_during_upload_keeps_previous_partition_then_rerun_completes() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "flaky");
    let store = s3_store(&moto, "flaky");
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "60000", "120000");
    let input = ws.path("tx.csv").display().to_string();
    let fast_fail = "[storage]\nretries = 1\nretry_timeout_secs = 3\nrequest_timeout_secs = 3\nconnect_timeout_secs = 2\n";
    ok(&run(
        &ws,
        &input,
        "s3://flaky/out",
        &s3_env(&moto),
        fast_fail,
    ));
    let manifest_key = format!("out/_manifests/as_of={AS_OF}.json");
    let manifest_before = get(&store, &manifest_key);
    let files_before = list(&store, "out");

    // Start a rerun and freeze the server as soon as its first new data file has landed.
    let cfg = crate::util::config(&[&input], "s3://flaky/out", COLUMNS, "", "");
    ws.write("config.toml", format!("{cfg}{fast_fail}"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_customer-value"))
        .args(["run", "--config", "config.toml", "--as-of", AS_OF])
        .current_dir(ws.dir.path())
        .envs(s3_env(&moto))
        .env("CUSTOMER_VALUE_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let now = list(&store, "out/customers");
        if now.len() > 1 {
            moto.stop();
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the rerun never uploaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    moto.resume();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(line.contains("s3://flaky/out/"), "names the URL: {line}");
    assert!(line.contains("failed"), "names the operation: {line}");

    // The previous manifest is untouched and lists only files that exist.
    assert_eq!(get(&store, &manifest_key), manifest_before);
    let m: serde_json::Value = serde_json::from_slice(&manifest_before).unwrap();
    let now: Vec<String> = list(&store, "out").into_iter().map(|f| f.0).collect();
    for t in TABLES {
        for f in m["tables"][t]["files"].as_array().unwrap() {
            let key = format!("out/{}", f["path"].as_str().unwrap());
            assert!(
                now.contains(&key),
                "{key} of the previous manifest is still there"
            );
        }
    }
    for f in &files_before {
        assert!(now.contains(&f.0), "previous file {} kept", f.0);
    }

    // After recovery a rerun completes and leaves exactly the files its manifest lists.
    ok(&run(
        &ws,
        &input,
        "s3://flaky/out",
        &s3_env(&moto),
        fast_fail,
    ));
    let m: serde_json::Value = serde_json::from_slice(&get(&store, &manifest_key)).unwrap();
    let mut listed: Vec<String> = TABLES
        .iter()
        .map(|t| {
            format!(
                "out/{}",
                m["tables"][t]["files"][0]["path"].as_str().unwrap()
            )
        })
        .collect();
    listed.push(manifest_key.clone());
    listed.sort();
    let now: Vec<String> = list(&store, "out").into_iter().map(|f| f.0).collect();
    assert_eq!(now, listed);
}

#[test]
fn s3_clear_errors_for_unknown_bucket_and_missing_object() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "exists");
    let ws = Workspace::new();
    let fast = "[storage]\nretries = 0\n";
    // (input, URL the one error line names, what else it must say: one of these, if any)
    for (input, url, expected) in [
        (
            "s3://exists/nothing/here.csv",
            "s3://exists/nothing/here.csv",
            &["matched no input files", "not found"][..],
        ),
        ("s3://no-such-bucket/tx.csv", "s3://no-such-bucket", &[][..]),
    ] {
        let out = run(&ws, input, "out", &s3_env(&moto), fast);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(url), "{err}");
        assert!(
            expected.is_empty() || expected.iter().any(|e| lines[0].contains(e)),
            "{err}"
        );
    }
}

#[test]
fn azure_wrong_credentials_fail_clearly() {
    let Some(az) = servers::azurite() else { return };
    servers::create_container(&az, "secured");
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "50", "300");
    let mut env = azure_env(&az);
    for (k, v) in env.iter_mut() {
        if k == "AZURE_STORAGE_ACCOUNT_KEY" {
            // A well-formed key that is not the account's.
            *v = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==".into();
        }
    }
    let input = ws.path("tx.csv").display().to_string();
    let out = run(
        &ws,
        &input,
        "az://secured/out",
        &env,
        "[storage]\nretries = 0\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(line.contains("az://secured/out/"), "{line}");
    assert!(
        line.contains("403") || line.to_lowercase().contains("auth"),
        "{line}"
    );
    assert!(
        !line.contains("AAAAAAAA"),
        "the key is never printed: {line}"
    );
}

#[test]
fn s3_lock_object_blocks_a_second_writer() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "locked");
    let store = s3_store(&moto, "locked");
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "50", "300");
    let input = ws.path("tx.csv").display().to_string();
    let holder = r#"{"run_id":"20260101T000000000Z-cafe","pid":7,"host":"airflow-worker-2","started_at":"2026-01-01T00:00:00Z"}"#;
    put(&store, "out/_lock", holder.as_bytes().to_vec());
    let out = run(&ws, &input, "s3://locked/out", &s3_env(&moto), "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("locked by run 20260101T000000000Z-cafe (pid 7 on airflow-worker-2"),
        "{err}"
    );
    assert!(
        list(&store, "out/customers").is_empty(),
        "nothing published while locked"
    );

    let cfg = crate::util::config(&[&input], "s3://locked/out", COLUMNS, "", "");
    ws.write("config.toml", cfg);
    let o = ws.run_env(
        &[
            "run",
            "--config",
            "config.toml",
            "--as-of",
            AS_OF,
            "--force-unlock",
        ],
        &s3_env(&moto),
    );
    ok(&o);
    assert!(
        !list(&store, "out").iter().any(|(k, _)| k == "out/_lock"),
        "lock released"
    );

    // A lock object left by a run of this host that was killed (its pid no longer runs) is
    // taken over without --force-unlock; one of another host (above) is not.
    let dead =
        crate::util::lock_of_this_host("20260101T000000000Z-dead", crate::util::killed_pid());
    put(&store, "out/_lock", dead.into_bytes());
    let o = ws.run_env(
        &["run", "--config", "config.toml", "--as-of", AS_OF],
        &s3_env(&moto),
    );
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holder_dead=true"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !list(&store, "out").iter().any(|(k, _)| k == "out/_lock"),
        "lock released"
    );
}

#[test]
fn s3_backfill_stopped_by_sigterm_releases_its_lock_and_leaves_no_stray_files() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "stopped");
    let store = s3_store(&moto, "stopped");
    let ws = Workspace::new();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/data/transactions.csv.gz");
    let cfg = crate::util::config(
        &[sample],
        "s3://stopped/out",
        "customer_id = \"customer_id\"\nts = \"ts\"\namount = \"amount\"\norder_id = \"order_id\"\ncost = \"cost\"\nsegments = [\"channel\", \"region\"]",
        "",
        "",
    );
    ws.write("config.toml", cfg);
    // A weekly backfill of the sample (104 dates, 5 uploads each): SIGTERM arrives while the
    // first date's files are uploaded (held after the second upload).
    let o = ws.backfill_stopped_by_sigterm(&s3_env(&moto), "publish:uploaded:2");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error: stopped by SIGTERM"), "{err}");
    let objects = list(&store, "out");
    assert!(
        !objects.iter().any(|(k, _)| k == "out/_lock"),
        "lock released"
    );
    // Every data file is one a published manifest lists: none of a half-published date.
    let manifests: Vec<&String> = objects
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("out/_manifests/"))
        .collect();
    assert!(
        !manifests.is_empty() && manifests.len() < 104,
        "{} manifests",
        manifests.len()
    );
    let mut listed = std::collections::BTreeSet::new();
    for key in &manifests {
        let s = Arc::clone(&store);
        let k = ObjPath::from(key.as_str());
        let bytes = rt()
            .block_on(async move { s.get(&k).await.unwrap().bytes().await })
            .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for entry in m["tables"].as_object().unwrap().values() {
            for f in entry["files"].as_array().unwrap() {
                listed.insert(format!("out/{}", f["path"].as_str().unwrap()));
            }
        }
    }
    for (key, _) in objects.iter().filter(|(k, _)| !k.starts_with("out/_")) {
        assert!(listed.contains(key), "{key} is in no manifest");
    }
}

#[test]
fn s3_spilled_run_uploads_one_customers_file_per_partition() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "spilled");
    let store = s3_store(&moto, "spilled");
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "300", "3000");
    let input = ws.path("tx.csv").display().to_string();
    let local = local_tables(&ws, &input);
    // Twice: the rerun replaces the partition, so the first run's 3 files are deleted.
    for _ in 0..2 {
        let out = run(
            &ws,
            &input,
            "s3://spilled/out",
            &s3_env(&moto),
            "[engine]\npartitions = 3\n",
        );
        ok(&out);
        assert_eq!(list(&store, "out/customers").len(), 3);
    }
    let dir = ws.path("dl");
    download(&store, "out", &dir);
    for (t, want) in TABLES.iter().zip(&local) {
        let mut got = read_partition(&dir.join(t).join(format!("as_of={AS_OF}"))).0;
        if *t == "customers" {
            // Three files, each in customer_id order: compare in one order.
            got = crate::util::by_customer(got);
        }
        crate::util::assert_same(&got, want, t);
    }
}

#[test]
fn s3_run_of_some_tables_keeps_the_others_listed() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "some");
    let store = s3_store(&moto, "some");
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "300", "3000");
    let input = ws.path("tx.csv").display().to_string();
    ok(&run(&ws, &input, "s3://some/out", &s3_env(&moto), ""));
    let first = manifest(&store);
    let customers = list(&store, "out/customers");
    let retention = list(&store, "out/retention");
    // Only retention, from a spilled run (3 partitions), which then writes no customers files.
    let cfg = crate::util::config(&[&input], "s3://some/out", COLUMNS, "", "");
    ws.write("config.toml", format!("{cfg}[engine]\npartitions = 3\n"));
    let out = ws.run_env(
        &[
            "run",
            "--config",
            "config.toml",
            "--as-of",
            AS_OF,
            "--tables",
            "retention",
        ],
        &s3_env(&moto),
    );
    ok(&out);
    let m = manifest(&store);
    assert_ne!(m["run_id"], first["run_id"]);
    // The customers object is the first run's, still listed, marked with its run.
    assert_eq!(list(&store, "out/customers"), customers);
    let mut kept = m["tables"]["customers"].clone();
    assert_eq!(kept["run_id"], first["run_id"]);
    kept.as_object_mut().unwrap().remove("run_id");
    assert_eq!(kept, first["tables"]["customers"]);
    assert_eq!(m["customers"], first["customers"]);
    // Retention replaced: one new object, the old one deleted, same rows.
    let now = list(&store, "out/retention");
    assert_eq!(now.len(), 1);
    assert_ne!(now, retention);
    assert!(m["tables"]["retention"].get("run_id").is_none());
    assert_eq!(
        m["tables"]["retention"]["rows"],
        first["tables"]["retention"]["rows"]
    );
}

/// Data objects under `out/` (not `_`-prefixed) that no manifest lists, and listed ones missing.
fn unlisted_and_missing(store: &Arc<dyn ObjectStore>) -> (Vec<String>, Vec<String>) {
    let objects = list(store, "out");
    let mut listed = std::collections::BTreeSet::new();
    for (key, _) in objects
        .iter()
        .filter(|(k, _)| k.starts_with("out/_manifests/"))
    {
        let m: serde_json::Value = serde_json::from_slice(&get(store, key)).unwrap();
        for entry in m["tables"].as_object().unwrap().values() {
            for f in entry["files"].as_array().unwrap() {
                listed.insert(format!("out/{}", f["path"].as_str().unwrap()));
            }
        }
    }
    let keys: std::collections::BTreeSet<String> = objects.into_iter().map(|(k, _)| k).collect();
    let unlisted = keys
        .iter()
        .filter(|k| !k.starts_with("out/_") && !listed.contains(*k))
        .cloned()
        .collect();
    let missing = listed
        .iter()
        .filter(|k| !keys.contains(*k))
        .cloned()
        .collect();
    (unlisted, missing)
}

#[test]
fn s3_sigkill_inside_the_publish_is_undone_or_finished_by_the_next_run() {
    let Some(moto) = servers::moto() else { return };
    let ws = Workspace::new();
    generate(&ws, "tx.csv", "50", "300");
    let input = ws.path("tx.csv").display().to_string();
    let points: Vec<String> = (0..5)
        .map(|k| format!("publish:uploaded:{k}"))
        .chain(["publish:manifest".to_string()])
        .collect();
    for (i, point) in points.iter().enumerate() {
        let bucket = format!("killed{i}");
        servers::create_bucket(&moto, &bucket);
        let store = s3_store(&moto, &bucket);
        let out_url = format!("s3://{bucket}/out");
        ok(&run(&ws, &input, &out_url, &s3_env(&moto), ""));
        let first = manifest(&store)["run_id"].as_str().unwrap().to_string();
        let held = crate::util::Held::start(
            &ws,
            &["run", "--config", "config.toml", "--as-of", AS_OF],
            &s3_env(&moto),
            point,
        );
        held.kill();
        // Killed there: the lock and the journal are left, and maybe uploads.
        assert!(
            list(&store, "out/_journal").len() == 1,
            "{point}: journal left"
        );
        // The next run (of another date) takes the dead holder's lock over, finishes or
        // undoes the publish, and leaves every data object listed by a manifest.
        let o = ws.run_env(
            &["run", "--config", "config.toml", "--as-of", "2024-02-29"],
            &s3_env(&moto),
        );
        ok(&o);
        let (unlisted, missing) = unlisted_and_missing(&store);
        assert!(unlisted.is_empty(), "{point}: in no manifest: {unlisted:?}");
        assert!(
            missing.is_empty(),
            "{point}: listed but missing: {missing:?}"
        );
        assert!(
            list(&store, "out/_journal").is_empty(),
            "{point}: journal removed"
        );
        let now = manifest(&store)["run_id"].as_str().unwrap().to_string();
        if point == "publish:manifest" {
            assert_ne!(now, first, "{point}: rolled forward");
        } else {
            assert_eq!(now, first, "{point}: the previous run stays");
        }
    }
}

#[test]
fn secrets_in_urls_never_reach_stderr_even_in_debug_logs() {
    let ws = Workspace::new();
    generate(&ws, "srv/tx.csv", "30", "200");
    let Some(http) = servers::http_static(&ws.path("srv")) else {
        return;
    };
    let port = http.endpoint().rsplit(':').next().unwrap().to_string();
    // Passwords with the characters a URL parser takes for the end of the user info: the
    // error named the whole URL.
    for pw in ["s3/cr3t", "s3?cr3t", "s3#cr3t"] {
        let url = format!("s3://AKIAEXAMPLE:{pw}@bucket/tx.csv");
        let o = run(&ws, &url, "out", &[], "");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            !err.contains("cr3t") && !err.contains("AKIAEXAMPLE"),
            "{err}"
        );
    }
    // A user:password URL read over HTTP with debug logs of every dependency.
    let url = format!("http://reader:hunter2@127.0.0.1:{port}/tx.csv");
    let o = run(
        &ws,
        &url,
        "out",
        &[("CUSTOMER_VALUE_LOG".into(), "debug".into())],
        "",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    ok(&o);
    assert!(err.contains("127.0.0.1"), "debug logs name the host: {err}");
    assert!(
        !err.contains("hunter2") && !err.contains("reader:"),
        "{err}"
    );
}
