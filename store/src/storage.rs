//! Storage layer: turns an input or output location (local path or `s3://`, `gs://`, `az://` /
//! `abfss://`, `http(s)://`, `file://` URL) into either a local path or an `object_store` store
//! built from the URL plus the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`) plus the optional
//! `[storage.options]`, with the configured retries and timeouts. URLs shown in logs, errors and
//! manifests are redacted (no user info, no query string).

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{
    aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut},
    azure::{AzureConfigKey, MicrosoftAzureBuilder},
    gcp::{GoogleCloudStorageBuilder, GoogleConfigKey},
    http::HttpBuilder,
    BackoffConfig, ClientOptions, ObjectMeta, ObjectStore, ObjectStoreScheme, RetryConfig,
};
use url::Url;

use crate::config::StorageConfig;

/// Storage errors: the (redacted) URL, the operation, and the store's message.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{url}: {message}")]
    Url { url: String, message: String },
    #[error("{url}: {op} failed: {message}")]
    Op {
        url: String,
        op: &'static str,
        message: String,
    },
}

/// Where something lives.
#[derive(Debug, Clone)]
pub enum Location {
    Local(PathBuf),
    Remote(Remote),
}

impl Location {
    /// The location as logs and errors show it (redacted for object stores).
    pub fn shown(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::Remote(r) => r.display.clone(),
        }
    }

    /// The location `rel` (a `/`-separated relative path) under this one.
    pub fn child(&self, rel: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(rel)),
            Location::Remote(r) => Location::Remote(Remote {
                path: r.child(rel),
                display: format!("{}/{rel}", r.display.trim_end_matches('/')),
                ..r.clone()
            }),
        }
    }
}

/// A location in an object store.
#[derive(Debug, Clone)]
pub struct Remote {
    pub store: Arc<dyn ObjectStore>,
    /// `scheme://authority` (redacted), to print object URLs.
    pub base: String,
    /// The key (or key prefix) inside the store.
    pub path: ObjPath,
    /// The location as configured, redacted.
    pub display: String,
}

impl Remote {
    /// Redacted URL of an object of this store.
    pub fn url(&self, path: &ObjPath) -> String {
        format!("{}/{}", self.base, path)
    }

    /// `self.path` joined with a relative key (`a/b.parquet`).
    pub fn child(&self, rel: &str) -> ObjPath {
        let mut p = self.path.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    pub fn op_err(&self, path: &ObjPath, op: &'static str, e: object_store::Error) -> StorageError {
        StorageError::Op {
            url: self.url(path),
            op,
            message: store_message(&e),
        }
    }

    /// The bytes of object `key`; None when there is no such object.
    pub fn get(&self, key: &ObjPath) -> Result<Option<Vec<u8>>, StorageError> {
        use object_store::ObjectStoreExt;
        let store = Arc::clone(&self.store);
        let k = key.clone();
        block_on(async move {
            match store.get(&k).await {
                Ok(got) => got.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.op_err(key, "get", e))
    }

    /// Lists every object under `prefix`.
    pub fn list(&self, prefix: &ObjPath) -> Result<Vec<ObjectMeta>, StorageError> {
        let store = Arc::clone(&self.store);
        let p = prefix.clone();
        block_on(async move { store.list(Some(&p)).try_collect::<Vec<_>>().await })
            .map_err(|e| self.op_err(prefix, "list", e))
    }
}

/// One line describing an object_store error, without credentials.
pub fn store_message(e: &object_store::Error) -> String {
    let text = match e {
        object_store::Error::NotFound { .. } => "not found".to_string(),
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(inner) = src {
                let m = inner.to_string();
                if !s.contains(&m) {
                    s.push_str(": ");
                    s.push_str(&m);
                }
                src = inner.source();
            }
            s
        }
    };
    redact_text(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Whether a configured location is a URL rather than a local path.
pub fn is_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, _)) => matches!(
            scheme.to_ascii_lowercase().as_str(),
            "s3" | "s3a"
                | "gs"
                | "gcs"
                | "az"
                | "azure"
                | "abfs"
                | "abfss"
                | "adl"
                | "http"
                | "https"
                | "file"
        ),
        None => false,
    }
}

/// URL with user info, query and fragment removed, for logs, errors and manifests. Plain text
/// work, no URL parsing: a password may hold `/`, `?`, `#` or `@`, which a parser reads as the
/// end of the user info, so everything up to the last `@` goes (a key holding `@` then loses its
/// start, shown as `***@`: too much removed rather than a secret shown).
pub fn redact(s: &str) -> String {
    let Some(i) = s.find("://") else {
        return s.to_string();
    };
    let (scheme, rest) = s.split_at(i + 3);
    let (rest, user) = match rest.rfind('@') {
        Some(j) => (&rest[j + 1..], "***@"),
        None => (rest, ""),
    };
    match rest.find(['?', '#']) {
        Some(j) => format!("{scheme}{user}{}?<redacted>", &rest[..j]),
        None => format!("{scheme}{user}{rest}"),
    }
}

/// Redacts every URL in a message (see `redact`): each `scheme://` and what follows it up to
/// the next whitespace or double quote (the end of a JSON string in a JSON log line).
pub fn redact_text(s: &str) -> String {
    if !s.contains("://") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let scheme_start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |j| j + 1);
        let end = rest[i + 3..]
            .find(|c: char| c.is_whitespace() || c == '"')
            .map_or(rest.len(), |j| i + 3 + j);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The async runtime for object_store calls (the job itself is synchronous).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("customer-value-io")
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Runs a future to completion on the I/O runtime.
pub fn block_on<F: Future + Send + 'static>(f: F) -> F::Output
where
    F::Output: Send + 'static,
{
    runtime().block_on(f)
}

fn retry(cfg: &StorageConfig) -> RetryConfig {
    RetryConfig {
        max_retries: cfg.retries,
        retry_timeout: Duration::from_secs(cfg.retry_timeout_secs),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
    }
}

fn client(cfg: &StorageConfig) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(Duration::from_secs(cfg.request_timeout_secs))
        .with_connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
        .with_allow_http(
            std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true")
                || cfg.options.get("allow_http").is_some_and(|v| v == "true"),
        )
}

/// Parses `[storage.options]` keys as one store's configuration keys; an unknown key is named.
fn config_keys<'a, K: FromStr>(
    opts: &'a std::collections::BTreeMap<String, String>,
    kind: &str,
) -> Result<Vec<(K, &'a String)>, String> {
    opts.iter()
        .map(|(k, v)| {
            K::from_str(k)
                .map(|key| (key, v))
                .map_err(|_| format!("storage.options.{k}: not {kind} option"))
        })
        .collect()
}

/// Opens a location. Local paths (and `file://` URLs) stay paths; other URLs get a store.
pub fn open(s: &str, cfg: &StorageConfig) -> Result<Location, StorageError> {
    if !is_url(s) {
        return Ok(Location::Local(PathBuf::from(s)));
    }
    let display = redact(s);
    let bad = |message: String| StorageError::Url {
        url: display.clone(),
        message,
    };
    // Globs are resolved by listing, so parse only the part before the first wildcard.
    let cut = s.find(['*', '[']).unwrap_or(s.len());
    let url = Url::parse(&s[..cut]).map_err(|e| bad(format!("not a valid URL: {e}")))?;
    if url.scheme() == "file" {
        let path = url
            .to_file_path()
            .map_err(|_| bad("not a valid file URL".into()))?;
        let rest = &s[cut..];
        return Ok(Location::Local(PathBuf::from(format!(
            "{}{rest}",
            path.display()
        ))));
    }
    let (scheme, _) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
    let opts = &cfg.options;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut b = AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retry(cfg))
                .with_client_options(client(cfg))
                // Conditional manifest updates (If-Match on the ETag).
                .with_conditional_put(S3ConditionalPut::ETagMatch);
            for (key, v) in config_keys::<AmazonS3ConfigKey>(opts, "an S3").map_err(bad)? {
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(store_message(&e)))?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry(cfg))
                .with_client_options(client(cfg));
            for (key, v) in config_keys::<GoogleConfigKey>(opts, "a GCS").map_err(bad)? {
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(store_message(&e)))?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry(cfg))
                .with_client_options(client(cfg));
            for (key, v) in config_keys::<AzureConfigKey>(opts, "an Azure").map_err(bad)? {
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| bad(store_message(&e)))?)
        }
        ObjectStoreScheme::Http => {
            let base = format!("{}://{}", url.scheme(), url.authority());
            Arc::new(
                HttpBuilder::new()
                    .with_url(base)
                    .with_retry(retry(cfg))
                    .with_client_options(client(cfg).with_allow_http(true))
                    .build()
                    .map_err(|e| bad(store_message(&e)))?,
            )
        }
        other => return Err(bad(format!("unsupported URL scheme {other:?}"))),
    };
    // The key inside the store, taken from the raw text so that `=` and globs survive.
    let key = raw_key(s, &scheme);
    let base_end = s.len() - key.len();
    let base = redact(s[..base_end].trim_end_matches('/'))
        .trim_end_matches('/')
        .to_string();
    // For a glob, list from the last folder before the first wildcard (object-store prefixes
    // are whole path segments).
    let fixed = match key.find(['*', '[']) {
        Some(i) => key[..i]
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or("")
            .to_string(),
        None => key.trim_end_matches('/').to_string(),
    };
    Ok(Location::Remote(Remote {
        store,
        base,
        path: ObjPath::parse(&fixed).unwrap_or_else(|_| ObjPath::from(fixed.as_str())),
        display,
    }))
}

/// The object key part of a URL as written (after bucket/container; the whole path for HTTP).
pub fn raw_key(s: &str, scheme: &ObjectStoreScheme) -> String {
    let after = s.split_once("://").map(|(_, r)| r).unwrap_or(s);
    let (authority, path) = after.split_once('/').unwrap_or((after, ""));
    let path = path.split('?').next().unwrap_or("");
    match scheme {
        // https://account.blob.core.windows.net/container/key: the first segment is the container.
        ObjectStoreScheme::MicrosoftAzure
            if !authority.contains('@')
                && (authority.contains(".blob.") || authority.contains(".dfs.")) =>
        {
            path.split_once('/')
                .map(|(_, k)| k)
                .unwrap_or("")
                .to_string()
        }
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognized_and_redacted() {
        assert!(is_url("s3://b/k"));
        assert!(is_url("abfss://c@a.dfs.core.windows.net/x"));
        assert!(!is_url("data/x.csv"));
        assert!(!is_url("C:/x"));
        assert_eq!(
            redact("https://user:secret@host/x.csv?sig=abc"),
            "https://***@host/x.csv?<redacted>"
        );
        assert_eq!(redact("s3://bucket/a/b"), "s3://bucket/a/b");
        // Passwords holding the characters a URL parser takes for the end of the user info.
        for pw in ["se/cret", "se?cret", "se#cret", "se@cret", "s/e?c#r@et"] {
            let url = format!("s3://AKIA:{pw}@bucket/key.csv");
            let shown = redact(&url);
            assert_eq!(shown, "s3://***@bucket/key.csv", "{url}");
            let line = format!("error: input {url}: not found; \"url\":\"{url}\" done");
            let text = redact_text(&line);
            assert!(!text.contains("cret") && !text.contains("AKIA"), "{text}");
            assert!(
                text.ends_with("\" done")
                    && text.starts_with("error: input s3://***@bucket/key.csv:"),
                "{text}"
            );
        }
        assert_eq!(redact_text("no urls here"), "no urls here");
    }

    #[test]
    fn unknown_store_option_is_named() {
        let mut opts = std::collections::BTreeMap::new();
        opts.insert("aws_region".to_string(), "eu-west-1".to_string());
        assert_eq!(
            config_keys::<AmazonS3ConfigKey>(&opts, "an S3")
                .unwrap()
                .len(),
            1
        );
        opts.insert("aws_regoin".to_string(), "x".to_string());
        let err = config_keys::<AmazonS3ConfigKey>(&opts, "an S3").unwrap_err();
        assert_eq!(err, "storage.options.aws_regoin: not an S3 option");
    }

    #[test]
    fn keys_keep_hive_names_and_globs() {
        assert_eq!(
            raw_key("s3://b/tx/region=eu/*.csv", &ObjectStoreScheme::AmazonS3),
            "tx/region=eu/*.csv"
        );
        assert_eq!(
            raw_key("az://c/p/q.parquet", &ObjectStoreScheme::MicrosoftAzure),
            "p/q.parquet"
        );
        assert_eq!(
            raw_key("http://127.0.0.1:8000/d/x.csv", &ObjectStoreScheme::Http),
            "d/x.csv"
        );
    }
}
