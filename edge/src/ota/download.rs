//! The artifact download: HTTP `Range` requests appended to `<data_dir>/ota/<job_id>.part`,
//! resumed from the file's length after a cut link (with backoff) or a restart; an HTTP 403
//! is an expired URL. Then the checks of `verify.rs`.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::state::DownloadEnd;
use super::verify::{Machine, check_artifact, check_disk};
use crate::backoff::Backoff;

/// One download.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub url: String,
    pub size: u64,
    pub sha256: String,
    /// The partial file (appended to, kept across restarts).
    pub part: PathBuf,
    /// What the artifact must be built for (the running binary's machine).
    pub machine: Machine,
    /// Bytes that must stay free besides the download (a copy of the running binary).
    pub reserve: u64,
}

/// Retry policy of a download.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub min: Duration,
    pub max: Duration,
    /// Attempts in a row without a byte of progress before the download fails.
    pub attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            attempts: 10,
        }
    }
}

/// What one request did.
enum Attempt {
    /// The file is complete.
    Complete,
    /// The request failed or was cut; retry (the file may have grown).
    Retry(String),
    /// Stop with this outcome.
    End(DownloadEnd),
}

/// Downloads `fetch` (resuming its partial file) and checks it. `on_progress` is called
/// with the bytes on disk after each chunk. Cancel by dropping the future.
pub async fn fetch(
    client: &reqwest::Client,
    fetch: &Fetch,
    retry: Retry,
    mut on_progress: impl FnMut(u64),
) -> DownloadEnd {
    if let Some(dir) = fetch.part.parent() {
        if let Err(e) = tokio::fs::create_dir_all(dir).await {
            return DownloadEnd::Failed(format!("cannot create {}: {e}", dir.display()));
        }
        let have = part_len(&fetch.part).await;
        let need = fetch.size.saturating_sub(have) + fetch.reserve;
        if let Err(reason) = check_disk(dir, need) {
            return DownloadEnd::Failed(reason);
        }
    }
    let mut backoff = Backoff::exact(retry.min, retry.max);
    let mut failures = 0u32;
    loop {
        let before = part_len(&fetch.part).await;
        match attempt(client, fetch, &mut on_progress).await {
            Attempt::Complete => break,
            Attempt::End(end) => return end,
            Attempt::Retry(reason) => {
                if part_len(&fetch.part).await > before {
                    failures = 0;
                    backoff.reset();
                }
                failures += 1;
                if failures >= retry.attempts {
                    return DownloadEnd::Failed(format!(
                        "download failed {failures} times in a row without progress: {reason}"
                    ));
                }
                let delay = backoff.next_delay();
                tracing::warn!(url = %fetch.url, %reason, retry_in = ?delay, "OTA download interrupted; resuming");
                tokio::time::sleep(delay).await;
            }
        }
    }
    let (part, size, sha256, machine) = (
        fetch.part.clone(),
        fetch.size,
        fetch.sha256.clone(),
        fetch.machine,
    );
    let checked =
        tokio::task::spawn_blocking(move || check_artifact(&part, size, &sha256, machine)).await;
    match checked {
        Ok(Ok(())) => DownloadEnd::Ready,
        Ok(Err(reason)) => {
            let _ = tokio::fs::remove_file(&fetch.part).await;
            DownloadEnd::Rejected(reason)
        }
        Err(e) => DownloadEnd::Failed(format!("the check of the download did not finish: {e}")),
    }
}

async fn part_len(path: &std::path::Path) -> u64 {
    tokio::fs::metadata(path).await.map_or(0, |m| m.len())
}

/// The partial file, cut to `have` bytes to append to (or emptied).
async fn open_part(fetch: &Fetch, append: bool, have: u64) -> Result<tokio::fs::File, String> {
    let path = fetch.part.display();
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&fetch.part)
        .await
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    if append {
        file.set_len(have)
            .await
            .map_err(|e| format!("cannot resize {path}: {e}"))?;
    }
    Ok(file)
}

/// One request from the partial file's length to the end.
async fn attempt(
    client: &reqwest::Client,
    fetch: &Fetch,
    on_progress: &mut impl FnMut(u64),
) -> Attempt {
    let mut have = part_len(&fetch.part).await;
    if have > fetch.size {
        // Longer than the signed size: not this artifact. Start again.
        have = 0;
    }
    if have == fetch.size {
        return Attempt::Complete;
    }
    let response = match client
        .get(&fetch.url)
        .header(reqwest::header::RANGE, format!("bytes={have}-"))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(format!("request failed: {e}")),
    };
    let status = response.status();
    let append = match status.as_u16() {
        206 => {
            let start = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(have) {
                let _ = tokio::fs::remove_file(&fetch.part).await;
                return Attempt::Retry(format!(
                    "asked for bytes={have}-, the server sent the range starting at {start:?}: \
                     starting again"
                ));
            }
            true
        }
        // The server ignored the range: the body is the whole file.
        200 => false,
        403 => return Attempt::End(DownloadEnd::UrlExpired),
        416 => {
            let _ = tokio::fs::remove_file(&fetch.part).await;
            return Attempt::Retry(format!("HTTP 416 for bytes={have}-: starting again"));
        }
        s if status.is_server_error() || s == 408 || s == 429 => {
            return Attempt::Retry(format!("HTTP {status}"));
        }
        _ => {
            return Attempt::End(DownloadEnd::Failed(format!(
                "the artifact server answered HTTP {status} for {}",
                fetch.url
            )));
        }
    };
    let mut file = match open_part(fetch, append, have).await {
        Ok(f) => f,
        Err(reason) => return Attempt::End(DownloadEnd::Failed(reason)),
    };
    let mut on_disk = if append { have } else { 0 };
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = file.sync_data().await;
                return Attempt::Retry(format!("connection cut after {on_disk} bytes: {e}"));
            }
        };
        on_disk += chunk.len() as u64;
        if on_disk > fetch.size {
            let _ = tokio::fs::remove_file(&fetch.part).await;
            return Attempt::End(DownloadEnd::Rejected(format!(
                "the server sent more than the signed size of {} bytes",
                fetch.size
            )));
        }
        if let Err(e) = file.write_all(&chunk).await {
            return Attempt::End(DownloadEnd::Failed(format!(
                "cannot write {}: {e}",
                fetch.part.display()
            )));
        }
        on_progress(on_disk);
    }
    if let Err(e) = file.sync_data().await {
        return Attempt::End(DownloadEnd::Failed(format!(
            "cannot sync {}: {e}",
            fetch.part.display()
        )));
    }
    if on_disk == fetch.size {
        Attempt::Complete
    } else {
        Attempt::Retry(format!(
            "the response ended after {on_disk} of {} bytes",
            fetch.size
        ))
    }
}
