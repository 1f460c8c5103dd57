//! Expands configured input paths (files, globs, folders with Hive partitions) into a sorted list
//! of files, each with its format and partition values.

use std::path::{Path, PathBuf};

use crate::config::{InputFormat, StorageConfig};
use crate::storage::{self, Location, Remote};
use object_store::{ObjectStoreExt, ObjectStoreScheme};

use super::SourceError;

/// One input file to read.
#[derive(Debug, Clone)]
pub(crate) struct InputFile {
    /// Local path, or the object's full URL.
    pub path: String,
    /// The same, safe to print (credentials removed).
    pub display: String,
    /// Whether `path` is an object-store URL.
    pub remote: bool,
    pub format: InputFormat,
    /// `key=value` folder names between the configured root and the file.
    pub hive: Vec<(String, String)>,
    pub size: u64,
    /// Modification time, RFC 3339 UTC.
    pub mtime: Option<String>,
    /// Entity tag of an object-store object.
    pub etag: Option<String>,
}

/// Expands every configured path; a path that matches nothing is an error naming it.
pub(crate) fn discover(
    paths: &[String],
    format: InputFormat,
    storage_cfg: &StorageConfig,
) -> Result<Vec<InputFile>, SourceError> {
    let mut out = Vec::new();
    for p in paths {
        let before = out.len();
        let local = match storage::open(p, storage_cfg)? {
            Location::Remote(r) => {
                discover_remote(p, &r, format, &mut out)?;
                None
            }
            Location::Local(path) => Some(path.display().to_string()),
        };
        let Some(p) = local.as_ref() else {
            if out.len() == before {
                return Err(SourceError::Path {
                    path: storage::redact(p),
                    message: "matched no input files".into(),
                });
            }
            continue;
        };
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
    Ok(dedupe(out))
}

/// The files once each, in first-listed order: the same file reached twice (listed twice, or by
/// a folder and a glob, or through `..` or a link) would have its rows counted twice. Local
/// files compare by canonical path, objects by URL.
fn dedupe(files: Vec<InputFile>) -> Vec<InputFile> {
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let key = if f.remote {
            f.path.clone()
        } else {
            std::fs::canonicalize(&f.path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| f.path.clone())
        };
        match seen.get(&key) {
            Some(first) => {
                tracing::warn!(file = %f.display, first = %first, "Input listed more than once: read once.");
            }
            None => {
                seen.insert(key, f.display.clone());
                out.push(f);
            }
        }
    }
    out
}

/// Warnings for inputs with the same content under different names (same size and ETag, or
/// for local files the same size and SHA-256): an export copied into two folders would be
/// counted twice. Both are still read: the job cannot tell a copy from a coincidence.
pub(crate) fn same_content(files: &[InputFile]) -> Vec<String> {
    use sha2::Digest;
    let mut by_size: std::collections::BTreeMap<u64, Vec<&InputFile>> = Default::default();
    for f in files.iter().filter(|f| f.size > 0) {
        by_size.entry(f.size).or_default().push(f);
    }
    let mut warnings = Vec::new();
    for group in by_size.values().filter(|g| g.len() > 1) {
        let fingerprint = |f: &InputFile| -> Option<String> {
            if f.remote {
                return f.etag.clone().map(|e| format!("etag {e}"));
            }
            let mut file = std::fs::File::open(&f.path).ok()?;
            let mut hasher = sha2::Sha256::new();
            std::io::copy(&mut file, &mut hasher).ok()?;
            Some(format!("sha256 {}", crate::config::hex(&hasher.finalize())))
        };
        let prints: Vec<(Option<String>, &InputFile)> =
            group.iter().map(|f| (fingerprint(f), *f)).collect();
        for (i, (print, f)) in prints.iter().enumerate() {
            let Some(print) = print else { continue };
            if let Some((_, first)) = prints[..i].iter().find(|(p, _)| p.as_ref() == Some(print)) {
                let w = format!(
                    "input {} has the same content as {} ({} bytes, {print}): both are read, so their rows count twice unless that is meant",
                    f.display, first.display, f.size
                );
                tracing::warn!("{w}");
                warnings.push(w);
            }
        }
    }
    warnings
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
pub(crate) fn format_from_name(name: &str) -> Option<InputFormat> {
    let lower = name.to_ascii_lowercase();
    let base = without_compression(&lower).unwrap_or(&lower);
    let ext = base.rsplit_once('.')?.1;
    match ext {
        "csv" | "tsv" | "txt" => Some(InputFormat::Csv),
        "parquet" | "pq" => Some(InputFormat::Parquet),
        "ndjson" | "jsonl" | "json" => Some(InputFormat::Ndjson),
        _ => None,
    }
}

/// `lower` (a lowercase file name) without its compression suffix, or None when it has none.
fn without_compression(lower: &str) -> Option<&str> {
    [".gz", ".zst", ".zstd"]
        .iter()
        .find_map(|ext| lower.strip_suffix(ext))
}

/// Whether a file name ends in a compression suffix (`.gz`, `.zst`, `.zstd`).
pub(crate) fn is_compressed(name: &str) -> bool {
    without_compression(&name.to_ascii_lowercase()).is_some()
}

fn resolve_format(
    name: &str,
    format: InputFormat,
    shown: &str,
) -> Result<InputFormat, SourceError> {
    match format {
        InputFormat::Auto => format_from_name(name).ok_or_else(|| SourceError::Path {
            path: shown.to_string(),
            message: "cannot tell the format from the file name; set input.format".into(),
        }),
        f => Ok(f),
    }
}

/// `key=value` folder names among a file's folders (Hive partitions).
fn hive_pairs<'a>(folders: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    folders
        .filter_map(|s| s.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn describe(path: &Path, root: &Path, format: InputFormat) -> Result<InputFile, SourceError> {
    let Some(shown) = path.to_str().map(str::to_string) else {
        return Err(SourceError::Path {
            path: path.display().to_string(),
            message: "the file name is not valid UTF-8 (shown with U+FFFD); rename the file".into(),
        });
    };
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let format = resolve_format(&name, format, &shown)?;
    let folders: Vec<String> = path
        .strip_prefix(root)
        .ok()
        .and_then(Path::parent)
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mtime = meta.modified().ok().map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    Ok(InputFile {
        path: shown.clone(),
        display: shown,
        remote: false,
        format,
        hive: hive_pairs(folders.iter().map(String::as_str)),
        size: meta.len(),
        mtime,
        etag: None,
    })
}

fn scheme_of(raw: &str) -> ObjectStoreScheme {
    let cut = raw.find(['*', '[']).unwrap_or(raw.len());
    url::Url::parse(&raw[..cut])
        .ok()
        .and_then(|u| ObjectStoreScheme::parse(&u).ok())
        .map(|(s, _)| s)
        .unwrap_or(ObjectStoreScheme::AmazonS3)
}

/// Lists an object-store location: one object, a prefix (a "folder", recursively, skipping
/// `_`/`.` names), or a glob over keys (`*`, `**`, `[…]`; `?` cannot appear in a URL path).
fn discover_remote(
    raw: &str,
    remote: &Remote,
    format: InputFormat,
    out: &mut Vec<InputFile>,
) -> Result<(), SourceError> {
    let scheme = scheme_of(raw);
    let prefix = remote.path.clone();
    let mut objects = if raw.contains(['*', '[']) {
        let pattern_key = storage::raw_key(raw, &scheme);
        let pattern = glob::Pattern::new(&pattern_key).map_err(|e| SourceError::Path {
            path: remote.display.clone(),
            message: format!("bad glob pattern: {e}"),
        })?;
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        remote
            .list(&prefix)?
            .into_iter()
            .filter(|m| pattern.matches_with(m.location.as_ref(), opts))
            .collect::<Vec<_>>()
    } else {
        let store = std::sync::Arc::clone(&remote.store);
        let p = prefix.clone();
        let head = storage::block_on(async move { store.head(&p).await });
        match head {
            Ok(meta) => vec![meta],
            Err(object_store::Error::NotFound { .. }) => remote
                .list(&prefix)?
                .into_iter()
                .filter(|m| {
                    let rel = m
                        .location
                        .as_ref()
                        .strip_prefix(prefix.as_ref())
                        .unwrap_or("");
                    !rel.split('/')
                        .any(|c| c.starts_with('_') || c.starts_with('.'))
                        && format_from_name(m.location.filename().unwrap_or("")).is_some()
                })
                .collect(),
            Err(e) => return Err(remote.op_err(&prefix, "head", e).into()),
        }
    };
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    // The URL up to the key, as configured (credentials included), for the reader.
    let key_len = storage::raw_key(raw, &scheme).len();
    let base = raw[..raw.len() - key_len].trim_end_matches('/');
    for m in objects {
        let shown = remote.url(&m.location);
        let format = resolve_format(m.location.filename().unwrap_or(""), format, &shown)?;
        let rel = m
            .location
            .as_ref()
            .strip_prefix(prefix.as_ref())
            .unwrap_or(m.location.as_ref())
            .trim_start_matches('/');
        let mut folders: Vec<&str> = rel.split('/').collect();
        folders.pop();
        out.push(InputFile {
            path: format!("{base}/{}", m.location),
            display: shown,
            remote: true,
            format,
            hive: hive_pairs(folders.into_iter()),
            size: m.size,
            mtime: Some(
                m.last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            etag: m.e_tag.clone(),
        });
    }
    Ok(())
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
        let st = StorageConfig::default();
        let files = discover(&[dir.path().display().to_string()], InputFormat::Auto, &st).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].path.ends_with("b.csv"));
        assert!(!files[0].remote);
        assert_eq!(
            files[1].hive,
            vec![
                ("region".to_string(), "eu".to_string()),
                ("month".to_string(), "2024-01".to_string())
            ]
        );
        let pattern = format!("{}/region=*/*/*.csv", dir.path().display());
        let files = discover(&[pattern], InputFormat::Auto, &st).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].hive[0].1, "eu");
        // The same file by a folder, a glob and a `..` path: read once.
        let dirs = dir.path().display().to_string();
        let files = discover(
            &[
                format!("{dirs}/b.csv"),
                dirs.clone(),
                format!("{dirs}/*.csv"),
                format!("{dirs}/region=eu/../b.csv"),
            ],
            InputFormat::Auto,
            &st,
        )
        .unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files[0].path.ends_with("/b.csv") && files[1].path.ends_with("a.csv"));
        // Same bytes under another name: a warning naming both; different bytes: none.
        std::fs::write(dir.path().join("copy.csv"), "x\n").unwrap();
        std::fs::write(dir.path().join("other.csv"), "y\n").unwrap();
        let files = discover(&[format!("{dirs}/*.csv")], InputFormat::Auto, &st).unwrap();
        let warnings = same_content(&files);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("copy.csv") && warnings[0].contains("b.csv"));
        let err = discover(
            &[format!("{}/none*.csv", dir.path().display())],
            InputFormat::Auto,
            &st,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("matched no input files"), "{err}");
    }
}
