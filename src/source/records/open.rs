//! A text input's bytes, decompressed by its name's suffix, from a local file or streamed from
//! the object store.

use std::io::Read;

use crate::config::Validated;

/// Opens the file's bytes, decompressed (by its name's suffix), local or from the object store.
pub(super) fn open(
    path: &str,
    remote: bool,
    cfg: &Validated,
) -> std::io::Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = if remote {
        Box::new(RemoteRead::open(path, cfg)?)
    } else {
        Box::new(std::fs::File::open(path)?)
    };
    let lower = path.to_ascii_lowercase();
    Ok(if lower.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
        Box::new(zstd::stream::read::Decoder::new(raw)?)
    } else {
        raw
    })
}

/// An object read as a byte stream (each chunk fetched on the I/O runtime).
struct RemoteRead {
    stream: Option<futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>>,
    chunk: bytes::Bytes,
}

impl RemoteRead {
    fn open(url: &str, cfg: &Validated) -> std::io::Result<Self> {
        use object_store::ObjectStoreExt;
        let crate::storage::Location::Remote(r) =
            crate::storage::open(url, &cfg.config.storage).map_err(std::io::Error::other)?
        else {
            return Err(std::io::Error::other("not a remote location"));
        };
        let store = std::sync::Arc::clone(&r.store);
        let key = r.path.clone();
        let got = crate::storage::block_on(async move { store.get(&key).await })
            .map_err(|e| std::io::Error::other(crate::storage::store_message(&e)))?;
        Ok(RemoteRead {
            stream: Some(got.into_stream()),
            chunk: bytes::Bytes::new(),
        })
    }
}

impl Read for RemoteRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use futures::StreamExt;
        while self.chunk.is_empty() {
            let Some(mut stream) = self.stream.take() else {
                return Ok(0);
            };
            let (next, stream) = crate::storage::block_on(async move {
                let next = stream.next().await;
                (next, stream)
            });
            match next {
                None => return Ok(0),
                Some(Ok(bytes)) => {
                    self.stream = Some(stream);
                    self.chunk = bytes;
                }
                Some(Err(e)) => {
                    return Err(std::io::Error::other(crate::storage::store_message(&e)));
                }
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}
