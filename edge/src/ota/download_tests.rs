//! Downloads against a tiny local HTTP server that honours `Range`, can cut a response
//! mid-body, answer 403 or ignore the range, and counts the body bytes it served.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shiki_shared::ota::Manifest;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::download::{Fetch, Retry, fetch};
use super::state::DownloadEnd;
use super::verify::Machine;

/// What the server does with one request.
#[derive(Debug, Clone, Copy)]
pub(super) enum Answer {
    /// Serve the requested range.
    Range,
    /// Send the headers of the range, then this many body bytes, then close.
    CutAfter(usize),
    /// Like `CutAfter`, but then holds the connection open without sending more.
    Stall(usize),
    /// HTTP 403 (expired URL).
    Forbidden,
    /// Ignore the range: 200 with the whole body.
    Whole,
}

pub(super) struct Server {
    pub(super) url: String,
    served: Arc<AtomicU64>,
    starts: Arc<Mutex<Vec<u64>>>,
}

impl Server {
    pub(super) async fn start(body: Vec<u8>, plan: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/artifact", listener.local_addr().expect("addr"));
        let served = Arc::new(AtomicU64::new(0));
        let starts = Arc::new(Mutex::new(Vec::new()));
        let plan = Arc::new(Mutex::new(VecDeque::from(plan)));
        let body = Arc::new(body);
        let (s, st) = (served.clone(), starts.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let answer = plan
                    .lock()
                    .expect("plan")
                    .pop_front()
                    .unwrap_or(Answer::Range);
                let (body, served, starts) = (body.clone(), s.clone(), st.clone());
                tokio::spawn(async move {
                    let start = read_range_start(&mut conn).await;
                    starts.lock().expect("starts").push(start);
                    let (head, from, count) = respond(answer, start, body.len());
                    let _ = conn.write_all(head.as_bytes()).await;
                    let end = (from + count).min(body.len());
                    if conn.write_all(&body[from.min(end)..end]).await.is_ok() {
                        served.fetch_add((end - from.min(end)) as u64, Ordering::SeqCst);
                    }
                    if matches!(answer, Answer::Stall(_)) {
                        std::future::pending::<()>().await;
                    }
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self {
            url,
            served,
            starts,
        }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    fn starts(&self) -> Vec<u64> {
        self.starts.lock().expect("starts").clone()
    }
}

/// Reads the request head; the start of its `Range: bytes=N-` (0 without one).
async fn read_range_start(conn: &mut tokio::net::TcpStream) -> u64 {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head)
        .lines()
        .find_map(|l| {
            let l = l.to_ascii_lowercase();
            l.strip_prefix("range: bytes=")
                .and_then(|r| r.trim_end_matches('-').parse().ok())
        })
        .unwrap_or(0)
}

/// Response head, first body byte and body byte count for `answer`.
fn respond(answer: Answer, start: u64, len: usize) -> (String, usize, usize) {
    let start = usize::try_from(start).expect("small");
    let partial = |cut: usize| {
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\nConnection: close\r\n\r\n",
            len - start,
            len - 1
        );
        (head, start, cut)
    };
    match answer {
        Answer::Range => partial(len - start),
        Answer::CutAfter(n) | Answer::Stall(n) => partial(n),
        Answer::Forbidden => (
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            0,
            0,
        ),
        Answer::Whole => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
            0,
            len,
        ),
    }
}

/// `/bin/false` (an executable for this machine) padded to 200 KB.
pub(super) fn artifact() -> Vec<u8> {
    let mut bytes = std::fs::read("/bin/false").expect("read /bin/false");
    bytes.resize(200_000.max(bytes.len()), 0);
    bytes
}

fn job(url: &str, bytes: &[u8], dir: &Path) -> Fetch {
    let m = Manifest::for_bytes("9.9.9", bytes);
    Fetch {
        url: url.to_owned(),
        size: m.size,
        sha256: m.sha256,
        part: dir.join("ota").join("job-1.part"),
        machine: Machine::running().expect("ELF"),
        reserve: 0,
    }
}

fn quick() -> Retry {
    Retry {
        min: Duration::from_millis(1),
        max: Duration::from_millis(5),
        attempts: 4,
    }
}

fn client() -> reqwest::Client {
    shiki_shared::tls::install_crypto_provider();
    reqwest::Client::new()
}

#[tokio::test]
async fn a_download_cut_twice_resumes_where_it_stopped_and_serves_each_byte_once() {
    let bytes = artifact();
    let server = Server::start(
        bytes.clone(),
        vec![Answer::CutAfter(70_000), Answer::CutAfter(50_000)],
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let f = job(&server.url, &bytes, dir.path());
    let mut last = 0;
    let end = fetch(&client(), &f, quick(), |n| last = n).await;
    assert_eq!(end, DownloadEnd::Ready);
    assert_eq!(server.starts(), vec![0, 70_000, 120_000]);
    assert_eq!(server.served(), bytes.len() as u64, "no byte served twice");
    assert_eq!(last, bytes.len() as u64);
    assert_eq!(std::fs::read(&f.part).expect("part"), bytes);
}

#[tokio::test]
async fn a_restart_resumes_from_the_length_of_the_partial_file() {
    let bytes = artifact();
    let server = Server::start(bytes.clone(), vec![]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let f = job(&server.url, &bytes, dir.path());
    std::fs::create_dir_all(dir.path().join("ota")).expect("dir");
    std::fs::write(&f.part, &bytes[..150_000]).expect("partial file");
    assert_eq!(
        fetch(&client(), &f, quick(), |_| {}).await,
        DownloadEnd::Ready
    );
    assert_eq!(server.starts(), vec![150_000]);
    assert_eq!(server.served(), bytes.len() as u64 - 150_000);
}

#[tokio::test]
async fn an_expired_url_keeps_the_partial_file_for_the_fresh_one() {
    let bytes = artifact();
    let server = Server::start(
        bytes.clone(),
        vec![Answer::CutAfter(10_000), Answer::Forbidden],
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let f = job(&server.url, &bytes, dir.path());
    assert_eq!(
        fetch(&client(), &f, quick(), |_| {}).await,
        DownloadEnd::UrlExpired
    );
    assert_eq!(std::fs::metadata(&f.part).expect("kept").len(), 10_000);
    // The fresh URL continues from there.
    assert_eq!(
        fetch(&client(), &f, quick(), |_| {}).await,
        DownloadEnd::Ready
    );
    assert_eq!(server.starts(), vec![0, 10_000, 10_000]);
}

#[tokio::test]
async fn tampered_bytes_are_rejected_and_the_download_deleted() {
    let bytes = artifact();
    let mut tampered = bytes.clone();
    tampered[100] ^= 0xff;
    let server = Server::start(tampered, vec![]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let f = job(&server.url, &bytes, dir.path());
    let end = fetch(&client(), &f, quick(), |_| {}).await;
    assert!(
        matches!(&end, DownloadEnd::Rejected(r) if r.contains("sha256")),
        "{end:?}"
    );
    assert!(!f.part.exists());
}

#[tokio::test]
async fn a_server_that_ignores_the_range_restarts_the_file() {
    let bytes = artifact();
    let server = Server::start(bytes.clone(), vec![Answer::Whole]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let f = job(&server.url, &bytes, dir.path());
    std::fs::create_dir_all(dir.path().join("ota")).expect("dir");
    std::fs::write(&f.part, &bytes[..5_000]).expect("partial file");
    assert_eq!(
        fetch(&client(), &f, quick(), |_| {}).await,
        DownloadEnd::Ready
    );
    assert_eq!(std::fs::read(&f.part).expect("part"), bytes);
}

#[tokio::test]
async fn an_unreachable_server_fails_after_the_retries_and_a_full_disk_before_any_request() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/a", listener.local_addr().expect("addr"));
    drop(listener);
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = artifact();
    let f = job(&url, &bytes, dir.path());
    let end = fetch(&client(), &f, quick(), |_| {}).await;
    assert!(
        matches!(&end, DownloadEnd::Failed(r) if r.contains("4 times")),
        "{end:?}"
    );
    let full = Fetch {
        reserve: u64::MAX / 2,
        ..f
    };
    let end = fetch(&client(), &full, quick(), |_| {}).await;
    assert!(
        matches!(&end, DownloadEnd::Failed(r) if r.contains("free disk space")),
        "{end:?}"
    );
}
