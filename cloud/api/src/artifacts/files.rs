//! The artifacts dir: `tmp/` for uploads in progress, `sha256/<hex>` for stored artifacts
//! (content-addressed: the same bytes are kept once, whatever their versions).

use std::path::{Path, PathBuf};

use actix_web::web::Bytes;
use futures::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

/// Write buffer of an upload: fewer, larger writes to the file.
const WRITE_BUFFER: usize = 1024 * 1024;

#[derive(Debug)]
pub(super) struct ArtifactFiles {
    tmp: PathBuf,
    by_sha256: PathBuf,
}

/// Why an upload's body could not be received.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReceiveError {
    #[error("the artifact is larger than the limit of {limit} bytes (ota.max_artifact_mb)")]
    TooLarge { limit: u64 },
    #[error("the upload broke off: {0}")]
    Broken(String),
    #[error("cannot write the upload to {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An upload received whole in `tmp/`, with its hash and size. Dropped, its file goes.
#[derive(Debug)]
pub(super) struct Received {
    file: TempFile,
    pub sha256: String,
    pub size: u64,
}

/// Where a received upload went.
#[derive(Debug)]
pub(super) struct Placed {
    pub path: PathBuf,
    /// False when the same bytes were stored already (the upload was dropped).
    pub new: bool,
}

impl ArtifactFiles {
    /// Creates the dirs under `dir` and empties `tmp/` (uploads a crash cut short).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let files = Self {
            tmp: dir.join("tmp"),
            by_sha256: dir.join("sha256"),
        };
        std::fs::create_dir_all(&files.tmp)?;
        std::fs::create_dir_all(&files.by_sha256)?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&files.tmp)? {
            std::fs::remove_file(entry?.path())?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, dir = %files.tmp.display(), "removed unfinished artifact uploads");
        }
        Ok(files)
    }

    /// The file of the artifact with hash `sha256`.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.by_sha256.join(sha256)
    }

    /// Streams `body` into a new file in `tmp/`, hashing it, refusing it past `limit` bytes.
    pub async fn receive<E: std::fmt::Display>(
        &self,
        mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        limit: u64,
    ) -> Result<Received, ReceiveError> {
        let file = TempFile(
            self.tmp
                .join(format!("{:016x}.part", rand::random::<u64>())),
        );
        let io = |source| ReceiveError::Io {
            path: file.0.clone(),
            source,
        };
        let created = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file.0)
            .await
            .map_err(io)?;
        let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, created);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ReceiveError::Broken(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ReceiveError::TooLarge { limit });
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        out.get_ref().sync_all().await.map_err(io)?;
        Ok(Received {
            sha256: hex::encode(hasher.finalize()),
            size,
            file,
        })
    }

    /// Moves `received` to `sha256/<hex>`, or drops it when those bytes are there already.
    pub async fn place(&self, mut received: Received) -> std::io::Result<Placed> {
        let path = self.path_of(&received.sha256);
        if tokio::fs::try_exists(&path).await? {
            return Ok(Placed { path, new: false });
        }
        tokio::fs::rename(&received.file.0, &path).await?;
        received.file.0 = PathBuf::new();
        Ok(Placed { path, new: true })
    }
}

/// A file in `tmp/`, removed when dropped (an upload refused, broken off or failed).
#[derive(Debug)]
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty()
            && let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, path = %self.0.display(), "cannot remove a refused upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn tmp_entries(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("tmp")).expect("tmp").count()
    }

    #[actix_web::test]
    async fn an_upload_is_hashed_placed_by_its_hash_and_kept_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ArtifactFiles::open(dir.path()).expect("open");
        let got = files
            .receive(chunks(&[b"ab", b"c"]), 3)
            .await
            .expect("received");
        assert_eq!(
            (got.sha256.as_str(), got.size),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                3
            )
        );
        let placed = files.place(got).await.expect("placed");
        assert!(placed.new);
        assert_eq!(std::fs::read(&placed.path).expect("stored"), b"abc");
        let again = files.receive(chunks(&[b"abc"]), 3).await.expect("received");
        assert!(!files.place(again).await.expect("placed").new);
        assert_eq!(tmp_entries(dir.path()), 0, "nothing left in tmp/");
    }

    #[actix_web::test]
    async fn a_refused_or_broken_upload_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ArtifactFiles::open(dir.path()).expect("open");
        let err = files
            .receive(chunks(&[b"ab", b"cd"]), 3)
            .await
            .expect_err("too large");
        assert!(matches!(err, ReceiveError::TooLarge { limit: 3 }), "{err}");
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err("connection reset".to_owned()),
        ]);
        let err = files.receive(broken, 10).await.expect_err("broken");
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert_eq!(tmp_entries(dir.path()), 0);

        std::fs::write(dir.path().join("tmp/left-by-a-crash.part"), b"x").expect("write");
        ArtifactFiles::open(dir.path()).expect("reopen");
        assert_eq!(tmp_entries(dir.path()), 0, "emptied at open");
    }
}
