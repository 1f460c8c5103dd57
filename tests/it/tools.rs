//! The real components the tests need, provisioned on first use into the cache `.ci/run` uses
//! (`$CUSTOMER_VALUE_CACHE`, default `~/.cache/customer-value`): a Python venv with DuckDB,
//! pyarrow, moto's S3 server and the Azure SDK; dbt-duckdb and Playwright in venvs of their
//! own; Azurite from npm (Chromium itself comes from the distribution). So plain `cargo test`
//! runs every test on a fresh machine (the first run installs them, once). Where that cannot
//! work (no python3 or npm, no package registry, no Chromium), a test that needs the tool fails
//! naming it, unless the run opts out with `CUSTOMER_VALUE_ALLOW_SKIP=1` (the test then says
//! loudly that it skipped). `CUSTOMER_VALUE_TEST_PYTHON`, `CUSTOMER_VALUE_TEST_DBT`,
//! `CUSTOMER_VALUE_TEST_CHROMIUM` and `CUSTOMER_VALUE_TEST_AZURITE` name ready tools instead.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The Python modules the tests import.
const MODULES: &str = "import duckdb, pyarrow, moto, flask, azure.storage.blob, deltalake, polars";
const PACKAGES: &[&str] = &[
    "duckdb",
    "pyarrow",
    "moto[server]",
    "azure-storage-blob",
    "deltalake",
    "polars",
];

fn cache() -> PathBuf {
    std::env::var_os("CUSTOMER_VALUE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/customer-value")
        })
}

/// Fails the test naming `what`, or with `CUSTOMER_VALUE_ALLOW_SKIP=1` skips it loudly.
pub fn unavailable<T>(what: &str, why: &str) -> Option<T> {
    if std::env::var_os("CUSTOMER_VALUE_ALLOW_SKIP").is_some_and(|v| v == "1") {
        eprintln!(
            "\n*** SKIPPED: {what} is not available ({why}); CUSTOMER_VALUE_ALLOW_SKIP=1 ***\n"
        );
        return None;
    }
    panic!("{what} is needed by this test and could not be provided: {why} (set CUSTOMER_VALUE_ALLOW_SKIP=1 to skip such tests)");
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(format!("{shown} failed: {tail}"))
    }
}

/// The python of venv `name` in the cache, once `probe` (Python code) runs there: the venv is
/// created and `packages` installed the first time.
fn venv(name: &str, probe: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let venv = cache().join(name);
    let python = venv.join("bin/python");
    let ready = || {
        Command::new(&python)
            .args(["-c", probe])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready() {
        std::fs::create_dir_all(cache()).map_err(|e| e.to_string())?;
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(packages))?;
    }
    Ok(python)
}

/// The venv's python, with every module installed (installing them the first time).
pub fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let got = PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("CUSTOMER_VALUE_TEST_PYTHON") {
            return Ok(PathBuf::from(p));
        }
        venv("venv", MODULES, PACKAGES)
    });
    match got {
        Ok(p) => Some(p.clone()),
        Err(e) => unavailable(
            "a Python venv with duckdb, pyarrow, moto, deltalake and polars",
            e,
        ),
    }
}

/// Azurite's blob server (installing it with npm the first time).
pub fn azurite() -> Option<PathBuf> {
    static AZURITE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let got = AZURITE.get_or_init(|| {
        if let Some(p) = std::env::var_os("CUSTOMER_VALUE_TEST_AZURITE") {
            return Ok(PathBuf::from(p));
        }
        let node = cache().join("node");
        let bin = node.join("node_modules/.bin/azurite-blob");
        if !bin.exists() {
            std::fs::create_dir_all(&node).map_err(|e| e.to_string())?;
            run(Command::new("npm")
                .args([
                    "install",
                    "--silent",
                    "--no-audit",
                    "--no-fund",
                    "azurite@3",
                ])
                .current_dir(&node))?;
        }
        Ok(bin)
    });
    match got {
        Ok(p) => Some(p.clone()),
        Err(e) => unavailable("Azurite (npm)", e),
    }
}

/// dbt with the DuckDB adapter, in a venv of its own (its pins stay apart from the test venv's);
/// installed the first time. `CUSTOMER_VALUE_TEST_DBT` names a ready `dbt` instead.
pub fn dbt() -> Option<PathBuf> {
    static DBT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let got = DBT.get_or_init(|| {
        if let Some(p) = std::env::var_os("CUSTOMER_VALUE_TEST_DBT") {
            return Ok(PathBuf::from(p));
        }
        // dbt-core 1.12's parser package fetches its wheel from outside the package
        // registries while installing; 1.11 installs from them alone.
        let python = venv(
            "venv-dbt",
            "import dbt.adapters.duckdb",
            &["dbt-core<1.12", "dbt-duckdb"],
        )?;
        let dbt = python.with_file_name("dbt");
        Ok(dbt)
    });
    match got {
        Ok(p) => Some(p.clone()),
        Err(e) => unavailable("dbt-duckdb (PyPI)", e),
    }
}

/// A Python with Playwright (a venv of its own) and the system's Chromium, to open pages in a
/// real headless browser. Chromium comes from the distribution (`.ci/run` installs Debian's
/// `chromium` when it is missing); `CUSTOMER_VALUE_TEST_CHROMIUM` names another binary.
pub fn browser() -> Option<(PathBuf, PathBuf)> {
    static BROWSER: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    let got = BROWSER.get_or_init(|| {
        let chromium = std::env::var_os("CUSTOMER_VALUE_TEST_CHROMIUM")
            .map(PathBuf::from)
            .or_else(|| {
                ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                    .into_iter()
                    .map(PathBuf::from)
                    .find(|p| p.exists())
            })
            .ok_or("no chromium binary (apt-get install chromium)")?;
        // Only the driver: it launches the system's Chromium, never a downloaded one.
        let python = venv(
            "venv-browser",
            "import playwright.sync_api",
            &["playwright"],
        )?;
        Ok((python, chromium))
    });
    match got {
        Ok(p) => Some(p.clone()),
        Err(e) => unavailable("Chromium and Playwright", e),
    }
}
