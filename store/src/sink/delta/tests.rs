//! Delta commits read back by delta-rs itself.
use super::*;
use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType as ArrowType, TimeUnit};
use customer_value_core::schema::Table;
use deltalake_core::DeltaTableBuilder;

use crate::sink::parquet::{write, FileMeta};

/// Two rows of every column of `schema` (the types our tables use).
fn batch(schema: arrow::datatypes::SchemaRef, seed: i64) -> RecordBatch {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.data_type() {
                ArrowType::Utf8 => Arc::new(StringArray::from(vec![
                    format!("{}-{seed}", f.name()),
                    format!("{}-{}", f.name(), seed + 1),
                ])),
                ArrowType::Int64 => Arc::new(Int64Array::from(vec![seed, seed + 1])),
                ArrowType::Float64 => {
                    Arc::new(Float64Array::from(vec![seed as f64 + 0.5, seed as f64]))
                }
                ArrowType::Date32 => Arc::new(Date32Array::from(vec![20_000, 20_089])),
                ArrowType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
                    TimestampMicrosecondArray::from(vec![1_735_603_200_000_000, 0])
                        .with_timezone_opt(tz.clone()),
                ),
                ArrowType::Boolean => Arc::new(BooleanArray::from(vec![true, false])),
                other => panic!("no sample for {other}"),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

/// Writes a data file of the customers table under `root` with our writer.
fn data_file(root: &Path, as_of: &str, name: &str, seed: i64) -> DeltaFile {
    let schema = Table::Customers.schema(&["region".to_string()]);
    let rel = format!("as_of={as_of}/{name}.parquet");
    let path = root.join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let opts = crate::sink::PublishOptions {
        as_of,
        run_id: name,
        zstd_level: 3,
        row_group_rows: 1000,
        delta: None,
    };
    let size = write(
        &path,
        &batch(schema, seed),
        &FileMeta::for_table(Table::Customers, &opts),
    )
    .unwrap();
    DeltaFile {
        path: rel,
        size,
        rows: 2,
        modified_ms: chrono::Utc::now().timestamp_millis(),
    }
}

fn meta(run: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::json!({ "customer_value": { "run_id": run, "rows": 2 } })
        .as_object()
        .unwrap()
        .clone()
}

/// The table as delta-rs loads it from its URL (its own store, not ours).
fn load_table(root: &Path) -> deltalake_core::DeltaTable {
    let url = Url::from_directory_path(root).unwrap();
    block_on(async move {
        DeltaTableBuilder::from_url(url)
            .unwrap()
            .load()
            .await
            .unwrap()
    })
}

fn active(table: &deltalake_core::DeltaTable) -> Vec<(String, Option<String>, Option<usize>)> {
    let mut files: Vec<_> = table
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .map(|f| {
            (
                f.path().into_owned(),
                f.partition_values_map().remove("as_of").flatten(),
                f.num_records(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn delta_partitions_replace_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("customers");
    let loc = Location::Local(root.clone());
    let schema = Table::Customers.schema(&["region".to_string()]);
    assert_eq!(partition_files(&loc, "2024-12-31").unwrap(), None);

    let a = data_file(&root, "2024-12-31", "part-a", 1);
    let v0 = commit_partition(
        &loc,
        &schema,
        "2024-12-31",
        std::slice::from_ref(&a),
        meta("a"),
    )
    .unwrap();
    let b = data_file(&root, "2024-12-31", "part-b", 10);
    let v1 = commit_partition(
        &loc,
        &schema,
        "2024-12-31",
        std::slice::from_ref(&b),
        meta("b"),
    )
    .unwrap();
    let c = data_file(&root, "2025-01-31", "part-c", 20);
    let v2 = commit_partition(
        &loc,
        &schema,
        "2025-01-31",
        std::slice::from_ref(&c),
        meta("c"),
    )
    .unwrap();
    assert_eq!((v0, v1, v2), (0, 1, 2));

    // Read back by delta-rs from the file URL.
    let table = load_table(&root);
    assert_eq!(table.version(), Some(2));
    assert_eq!(
        active(&table),
        vec![
            (b.path.clone(), Some("2024-12-31".into()), Some(2)),
            (c.path.clone(), Some("2025-01-31".into()), Some(2)),
        ]
    );
    let history: Vec<_> = block_on({
        let table = load_table(&root);
        async move { table.history(None).try_collect::<Vec<_>>().await.unwrap() }
    });
    let v1_info = history
        .iter()
        .find(|c| c.info.get("customer_value") == Some(&meta("b")["customer_value"]))
        .expect("commit of b");
    assert_eq!(v1_info.operation.as_deref(), Some("WRITE"));
    let params = v1_info.operation_parameters.as_ref().unwrap();
    assert_eq!(params["mode"], "Overwrite");
    assert_eq!(params["predicate"], "as_of = '2024-12-31'");

    // The first commit: protocol and metaData with the partition column.
    let log0 = std::fs::read_to_string(root.join("_delta_log/00000000000000000000.json")).unwrap();
    let lines: Vec<serde_json::Value> = log0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let protocol = lines.iter().find_map(|l| l.get("protocol")).unwrap();
    assert_eq!(protocol["minReaderVersion"], 1);
    assert_eq!(protocol["minWriterVersion"], 2);
    let metadata = lines.iter().find_map(|l| l.get("metaData")).unwrap();
    assert_eq!(metadata["partitionColumns"], serde_json::json!(["as_of"]));
    let schema_string: serde_json::Value =
        serde_json::from_str(metadata["schemaString"].as_str().unwrap()).unwrap();
    let fields = schema_string["fields"].as_array().unwrap();
    assert_eq!(fields.last().unwrap()["name"], "as_of");
    assert_eq!(fields.last().unwrap()["type"], "date");
    let types: HashMap<&str, &str> = fields
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(types["cohort"], "date");
    assert_eq!(types["first_purchase_at"], "timestamp");
    assert_eq!(types["region"], "string");
    // The second commit removes a, adds b.
    let log1 = std::fs::read_to_string(root.join("_delta_log/00000000000000000001.json")).unwrap();
    assert!(
        log1.contains(r#""remove":{"path":"as_of=2024-12-31/part-a.parquet""#),
        "{log1}"
    );
    assert!(
        log1.contains(r#""add":{"path":"as_of=2024-12-31/part-b.parquet""#),
        "{log1}"
    );

    // Idempotent: the same files again make no commit.
    let again = commit_partition(
        &loc,
        &schema,
        "2024-12-31",
        std::slice::from_ref(&b),
        meta("b"),
    )
    .unwrap();
    assert_eq!(again, 2);
    assert!(!root.join("_delta_log/00000000000000000003.json").exists());
    assert_eq!(
        partition_files(&loc, "2024-12-31").unwrap(),
        Some(vec![b.path.clone()])
    );
    assert_eq!(partition_files(&loc, "2023-01-01").unwrap(), Some(vec![]));
    // a was removed; nothing was removed before the epoch.
    assert_eq!(removed_files(&loc, i64::MAX).unwrap(), vec![a.path.clone()]);
    assert!(removed_files(&loc, 0).unwrap().is_empty());
}

#[test]
fn a_commit_that_loses_the_race_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("customers");
    let loc = Location::Local(root.clone());
    let schema = Table::Customers.schema(&["region".to_string()]);
    let a = data_file(&root, "2024-12-31", "part-a", 1);
    commit_partition(&loc, &schema, "2024-12-31", &[a], meta("a")).unwrap();
    let x = data_file(&root, "2024-12-31", "part-x", 5);
    let y = data_file(&root, "2024-12-31", "part-y", 7);
    let mut attempts = Vec::new();
    let version = commit_partition_with(
        &loc,
        &schema,
        "2024-12-31",
        std::slice::from_ref(&y),
        meta("y"),
        &mut |attempt| {
            attempts.push(attempt);
            if attempt == 1 {
                // Another writer commits x between our snapshot and our commit.
                let v = commit_partition(
                    &loc,
                    &schema,
                    "2024-12-31",
                    std::slice::from_ref(&x),
                    meta("x"),
                )
                .unwrap();
                assert_eq!(v, 1);
            }
        },
    )
    .unwrap();
    assert_eq!(attempts, vec![1, 2]);
    assert_eq!(version, 2);
    let table = load_table(&root);
    assert_eq!(
        active(&table),
        vec![(y.path.clone(), Some("2024-12-31".into()), Some(2))]
    );
    let log2 = std::fs::read_to_string(root.join("_delta_log/00000000000000000002.json")).unwrap();
    assert!(log2.contains("part-x.parquet"), "x removed: {log2}");
}

#[test]
fn a_table_in_an_object_store_is_addressed_by_its_key_prefix() {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let remote = Remote {
        store: Arc::clone(&store),
        base: "s3://bucket".into(),
        path: ObjPath::from("out/customers"),
        display: "s3://bucket/out".into(),
    };
    let loc = Location::Remote(remote);
    let schema = Table::Retention.schema(&[]);
    let file = DeltaFile {
        path: "as_of=2024-12-31/part-r.parquet".into(),
        size: 100,
        rows: 3,
        modified_ms: 1,
    };
    let v = commit_partition(
        &loc,
        &schema,
        "2024-12-31",
        std::slice::from_ref(&file),
        meta("r"),
    )
    .unwrap();
    assert_eq!(v, 0);
    let keys: Vec<String> = block_on({
        let store = Arc::clone(&store);
        async move {
            store
                .list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap()
        }
    });
    assert_eq!(
        keys,
        vec!["out/customers/_delta_log/00000000000000000000.json"]
    );
    assert_eq!(
        partition_files(&loc, "2024-12-31").unwrap(),
        Some(vec![file.path])
    );
}

#[test]
fn every_table_schema_maps_to_delta() {
    for t in Table::ALL {
        let s = delta_schema(&t.schema(&["region".to_string()])).unwrap();
        assert_eq!(s.fields().last().unwrap().name(), "as_of");
        for f in s.fields() {
            let ty = serde_json::to_value(f.data_type()).unwrap();
            assert!(
                ["string", "long", "double", "date", "timestamp", "boolean"]
                    .contains(&ty.as_str().unwrap()),
                "{t}.{}: {ty}",
                f.name()
            );
        }
    }
    let with_as_of = ArrowSchema::new(vec![arrow::datatypes::Field::new(
        "as_of",
        ArrowType::Utf8,
        false,
    )]);
    assert!(delta_schema(&with_as_of).is_err());
}
