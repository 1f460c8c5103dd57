//! Expands configured input paths (files, globs, folders with Hive partitions) into a sorted list
//! of files, each with its format and partition values.

use std::path::{Path, PathBuf};

use crate::config::InputFormat;

use super::SourceError;

/// One input file to read.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: InputFormat,
    /// `key=value` folder names between the configured root and the file.
    pub hive: Vec<(String, String)>,
    pub size: u64,
    /// Modification time, RFC 3339 UTC.
    pub mtime: Option<String>,
}

/// Expands every configured path; a path that matches nothing is an error naming it.
pub fn discover(paths: &[String], format: InputFormat) -> Result<Vec<InputFile>, SourceError> {
    let mut out = Vec::new();
    for p in paths {
        let before = out.len();
        if p.contains(['*', '?', '[']) {
            let entries = glob::glob(p).map_err(|e| SourceError::Path {
                path: p.clone(),
                message: format!("bad glob pattern: {e}"),
            })?;
            let root = glob_root(p);
            let mut found: Vec<PathBuf> = Vec::new();
            for entry in entries {
                let path = entry.map_err(|e| SourceError::Path {
                    path: p.clone(),
                    message: e.to_string(),
                })?;
                if path.is_file() {
                    found.push(path);
                } else if path.is_dir() {
                    walk(&path, &mut found).map_err(|e| io_err(&path, e))?;
                }
            }
            found.sort();
            for f in found {
                out.push(describe(&f, &root, format)?);
            }
        } else {
            let path = Path::new(p);
            let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
            if meta.is_dir() {
                let mut found = Vec::new();
                walk(path, &mut found).map_err(|e| io_err(path, e))?;
                found.sort();
                for f in found {
                    out.push(describe(&f, path, format)?);
                }
            } else {
                out.push(describe(
                    path,
                    path.parent().unwrap_or(Path::new("")),
                    format,
                )?);
            }
        }
        if out.len() == before {
            return Err(SourceError::Path {
                path: p.clone(),
                message: "matched no input files".into(),
            });
        }
    }
    Ok(out)
}

fn io_err(path: &Path, e: std::io::Error) -> SourceError {
    SourceError::Path {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The folder part of a glob before its first wildcard (Hive keys are read below it).
fn glob_root(pattern: &str) -> PathBuf {
    let mut root = PathBuf::new();
    for comp in Path::new(pattern).components() {
        let s = comp.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) {
            break;
        }
        root.push(comp);
    }
    root
}

/// Recursively lists data files, skipping hidden and `_`-prefixed entries (`_SUCCESS`, `.crc`).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if format_from_name(&name).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// Format by file name: `.csv`, `.tsv`, `.parquet`, `.pq`, `.ndjson`, `.jsonl`, `.json`, each
/// optionally followed by `.gz` or `.zst`.
pub fn format_from_name(name: &str) -> Option<InputFormat> {
    let lower = name.to_ascii_lowercase();
    let base = lower
        .strip_suffix(".gz")
        .or_else(|| lower.strip_suffix(".zst"))
        .or_else(|| lower.strip_suffix(".zstd"))
        .unwrap_or(&lower);
    let ext = base.rsplit_once('.')?.1;
    match ext {
        "csv" | "tsv" | "txt" => Some(InputFormat::Csv),
        "parquet" | "pq" => Some(InputFormat::Parquet),
        "ndjson" | "jsonl" | "json" => Some(InputFormat::Ndjson),
        _ => None,
    }
}

fn describe(path: &Path, root: &Path, format: InputFormat) -> Result<InputFile, SourceError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    let format = match format {
        InputFormat::Auto => format_from_name(
            &path.file_name().unwrap_or_default().to_string_lossy(),
        )
        .ok_or_else(|| SourceError::Path {
            path: path.display().to_string(),
            message: "cannot tell the format from the file name; set input.format".into(),
        })?,
        f => f,
    };
    let mut hive = Vec::new();
    if let Ok(rel) = path.strip_prefix(root) {
        if let Some(parent) = rel.parent() {
            for comp in parent.components() {
                let s = comp.as_os_str().to_string_lossy();
                if let Some((k, v)) = s.split_once('=') {
                    if !k.is_empty() {
                        hive.push((k.to_string(), v.to_string()));
                    }
                }
            }
        }
    }
    let mtime = meta.modified().ok().map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    Ok(InputFile {
        path: path.to_path_buf(),
        format,
        hive,
        size: meta.len(),
        mtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name() {
        assert_eq!(format_from_name("a.csv"), Some(InputFormat::Csv));
        assert_eq!(format_from_name("a.CSV.GZ"), Some(InputFormat::Csv));
        assert_eq!(format_from_name("a.csv.zst"), Some(InputFormat::Csv));
        assert_eq!(
            format_from_name("part-0.parquet"),
            Some(InputFormat::Parquet)
        );
        assert_eq!(format_from_name("x.jsonl.gz"), Some(InputFormat::Ndjson));
        assert_eq!(format_from_name("_SUCCESS"), None);
        assert_eq!(format_from_name("README"), None);
    }

    #[test]
    fn hive_folders_and_globs() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = dir.path().join("region=eu").join("month=2024-01");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(leaf.join("a.csv"), "x\n").unwrap();
        std::fs::write(leaf.join("_SUCCESS"), "").unwrap();
        std::fs::write(dir.path().join("b.csv"), "x\n").unwrap();
        let files = discover(&[dir.path().display().to_string()], InputFormat::Auto).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].path.ends_with("b.csv"));
        assert_eq!(
            files[1].hive,
            vec![
                ("region".to_string(), "eu".to_string()),
                ("month".to_string(), "2024-01".to_string())
            ]
        );
        let pattern = format!("{}/region=*/*/*.csv", dir.path().display());
        let files = discover(&[pattern], InputFormat::Auto).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].hive[0].1, "eu");
        let err = discover(
            &[format!("{}/none*.csv", dir.path().display())],
            InputFormat::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("matched no input files"), "{err}");
    }
}
