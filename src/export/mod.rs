//! `customer-value schema --format dbt|sql`: the output tables of one configuration described
//! for the tools that read them — a dbt `sources.yml` with column descriptions and data tests,
//! and the statements that make the Hive layout (`{output}/{table}/as_of=D/*.parquet`) queryable
//! as tables or views in DuckDB, Spark SQL, Trino and Athena. Both come from `schema` (the
//! contract the table builders are checked against) plus the configuration: its output
//! location, its segment columns (the customers table's own columns and the values of
//! `segment_by`) and whether predictions (the models table) are on.

mod dbt;
mod sql;

use std::path::Path;

use clap::ValueEnum;

use crate::config::{ConfigError, Validated};
use crate::metrics::{customers, predictions, rfm};
use crate::schema::{Col, Table, Ty, PARTITION_COLUMN, SEGMENT_COLUMNS_PLACEHOLDER};
use crate::storage;

pub(crate) use dbt::sources_yml;
pub(crate) use sql::statements;

/// The engine the statements (and the dbt tests' expressions) are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Dialect {
    /// DuckDB views over `read_parquet` (dbt-duckdb: `external_location`).
    Duckdb,
    /// Spark SQL / Databricks tables `USING PARQUET`, partitions registered by `MSCK REPAIR`.
    Spark,
    /// Trino's Hive connector: `external_location` tables and `sync_partition_metadata`.
    Trino,
    /// Athena: `CREATE EXTERNAL TABLE` with partition projection on as_of (no repair needed).
    Athena,
}

impl Dialect {
    /// The type of a text value in casts.
    fn string_type(self) -> &'static str {
        match self {
            Dialect::Spark => "string",
            Dialect::Duckdb | Dialect::Trino | Dialect::Athena => "varchar",
        }
    }

    /// A quoted identifier.
    fn ident(self, name: &str) -> String {
        match self {
            // Spark SQL and Athena's DDL (Hive) quote with backticks.
            Dialect::Spark | Dialect::Athena => format!("`{}`", name.replace('`', "``")),
            Dialect::Duckdb | Dialect::Trino => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// The column type of a logical type.
    fn column_type(self, ty: Ty) -> &'static str {
        match (self, ty) {
            (Dialect::Spark | Dialect::Athena, Ty::Str) => "STRING",
            (_, Ty::Str) => "VARCHAR",
            (_, Ty::Int) => "BIGINT",
            (_, Ty::Money | Ty::Rate | Ty::Float) => "DOUBLE",
            (_, Ty::Date) => "DATE",
            // UTC-adjusted microseconds: an instant (DuckDB's TIMESTAMPTZ, Spark's TIMESTAMP).
            (Dialect::Duckdb, Ty::Instant) => "TIMESTAMPTZ",
            (_, Ty::Instant) => "TIMESTAMP",
            (_, Ty::Bool) => "BOOLEAN",
        }
    }
}

/// One column as the exports describe it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: Ty,
    pub(crate) nullable: bool,
    pub(crate) doc: String,
    /// The only values the column takes (dbt `accepted_values`), if it is an enumeration.
    pub(crate) accepted: Option<Vec<String>>,
}

/// One table: where it is, what a row is, its columns (the partition column `as_of` last) and
/// its grain key (unique within a partition).
#[derive(Debug, Clone)]
pub(crate) struct TableDef {
    pub(crate) table: Table,
    pub(crate) location: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) key: Vec<&'static str>,
}

impl TableDef {
    pub(crate) fn name(&self) -> &'static str {
        self.table.name()
    }

    /// The table's description: its grain and how its partitions are meant to be read.
    pub(crate) fn description(&self) -> String {
        format!(
            "customer-value {} table, one row per {}. Each as_of partition is the whole snapshot of one run: filter on one as_of (summing across them counts history again).",
            self.name(),
            self.table.grain()
        )
    }
}

/// `schema --format dbt` (`dbt`) or `--format sql` of `cfg`: the sources.yml or the statements.
pub(crate) fn render(
    cfg: &Validated,
    dbt: bool,
    dialect: Dialect,
    database: &str,
    catalog: &str,
) -> Result<String, ConfigError> {
    check_database_name(database)?;
    let described = describe(cfg);
    Ok(if dbt {
        sources_yml(&described, dialect, database)
    } else {
        statements(&described, dialect, database, catalog)
    })
}

/// Database and catalog names are plain identifiers (every engine takes them unquoted too).
fn check_database_name(name: &str) -> std::result::Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(vec![format!(
            "--database: {name:?} is not a plain lowercase name (a-z, 0-9, _; not starting with a digit)"
        )]))
    }
}

/// What the exports describe: every table the configuration writes.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    /// The output root as readers address it: an absolute path, or the store URL.
    pub(crate) root: String,
    pub(crate) tables: Vec<TableDef>,
    /// The tables are Delta tables (`[output] format = "delta"`).
    pub(crate) delta: bool,
}

/// Name of the database / schema the statements create and the dbt source points to.
pub(crate) const DEFAULT_DATABASE: &str = "customer_value";

/// The tables of `cfg`, located under its output path (a relative local path is made absolute
/// against the working directory, since the statements run elsewhere).
pub(crate) fn describe(cfg: &Validated) -> Described {
    let c = &cfg.config;
    let root = output_root(&c.output.path);
    let segments = &c.input.columns.segments;
    let tables = Table::ALL
        .into_iter()
        .filter(|t| *t != Table::Models || c.predict.enabled)
        .map(|table| TableDef {
            table,
            location: format!("{root}/{}", table.name()),
            columns: columns(table, segments),
            key: table.sort_keys().to_vec(),
        })
        .collect();
    Described {
        root,
        tables,
        delta: c.output.format == crate::config::OutputFormat::Delta,
    }
}

fn output_root(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if storage::is_url(trimmed) {
        return storage::redact(trimmed);
    }
    let p = Path::new(trimmed);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    abs.to_string_lossy().trim_end_matches('/').to_string()
}

/// The written columns of `table`: the segment columns at the placeholder, `as_of` last.
fn columns(table: Table, segments: &[String]) -> Vec<Column> {
    let mut out = Vec::new();
    for col in table.columns() {
        if col.name == SEGMENT_COLUMNS_PLACEHOLDER {
            out.extend(segments.iter().map(|s| Column {
                name: s.clone(),
                ty: Ty::Str,
                nullable: false,
                doc: format!("The customer's `{s}` (segment column; by metrics.segment_assignment, `__unknown__` for null)."),
                accepted: None,
            }));
        } else {
            out.push(Column {
                name: col.name.to_string(),
                ty: col.dtype,
                nullable: col.nullable,
                doc: col.doc.to_string(),
                accepted: accepted(table, col, segments),
            });
        }
    }
    out.push(Column {
        name: PARTITION_COLUMN.to_string(),
        ty: Ty::Date,
        nullable: false,
        doc: "As-of date of the run (the Hive partition folder as_of=YYYY-MM-DD).".to_string(),
        accepted: None,
    });
    out
}

/// The values of the enumerated columns.
fn accepted(table: Table, col: &Col, segments: &[String]) -> Option<Vec<String>> {
    let owned = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    match (table, col.name) {
        (_, "segment_by") => {
            let mut v = vec!["all".to_string()];
            v.extend(segments.iter().cloned());
            if table == Table::Ltv {
                v.push("rfm_segment".to_string());
            }
            Some(v)
        }
        (Table::Customers, "status") => owned(&customers::STATUSES),
        (Table::Customers, "rfm_segment") => owned(&rfm::SEGMENTS),
        (Table::Models, "model") => owned(&predictions::MODEL_NAMES),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn described(extra: &str) -> Described {
        let toml = format!(
            "[input]\npaths = [\"x.csv\"]\n[input.columns]\ncustomer_id = \"c\"\nts = \"t\"\namount = \"a\"\nsegments = [\"channel\", \"region\"]\n[output]\npath = \"/data/out/\"\n{extra}"
        );
        describe(&Config::from_toml(&toml).unwrap().validate().unwrap())
    }

    #[test]
    fn customers_get_the_segment_columns_and_every_table_ends_with_as_of() {
        let d = described("");
        assert_eq!(d.root, "/data/out");
        let names: Vec<_> = d.tables.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "customers",
                "retention",
                "cohorts",
                "ltv",
                "rejects",
                "models"
            ]
        );
        let customers = &d.tables[0];
        assert_eq!(customers.location, "/data/out/customers");
        let cols: Vec<_> = customers.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(&cols[..3], ["customer_id", "channel", "region"]);
        assert!(!cols.contains(&SEGMENT_COLUMNS_PLACEHOLDER));
        for t in &d.tables {
            assert_eq!(t.columns.last().unwrap().name, "as_of", "{}", t.name());
            for k in &t.key {
                assert!(t.columns.iter().any(|c| c.name == *k), "{} {k}", t.name());
            }
        }
        let ltv_by = d.tables[3].columns[0].accepted.clone().unwrap();
        assert_eq!(ltv_by, ["all", "channel", "region", "rfm_segment"]);
        let ret_by = d.tables[1].columns[0].accepted.clone().unwrap();
        assert_eq!(ret_by, ["all", "channel", "region"]);
    }

    #[test]
    fn no_models_table_without_predictions() {
        let d = described("[predict]\nenabled = false\n");
        assert!(d.tables.iter().all(|t| t.table != Table::Models));
    }

    #[test]
    fn store_urls_are_kept_and_redacted() {
        assert_eq!(
            output_root("s3://bucket/cv/out/"),
            "s3://bucket/cv/out".to_string()
        );
        assert!(!output_root("https://user:secret@host/out").contains("secret"));
    }
}
