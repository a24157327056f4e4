//! The admin API of a real `shiki-cloud serve` under hostile clients, over real sockets:
//! - a body above `api.max_body_bytes` is refused with 413 and a JSON body naming the
//!   limit and the key, whether it announces its length or comes chunked;
//! - a client that trickles its request head byte by byte is cut off after
//!   `api.client_request_timeout`, while other clients are served;
//! - a burst of bad tokens from 127.0.0.1 locks that address out (429 with `Retry-After`,
//!   good token or not) while a good client on 127.0.0.2 keeps getting 200, and the
//!   refusals are counted on `/metrics`.
//!
//! Each test starts its own cloud with a config file of its own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use shiki_e2e::stack::ADMIN_TOKEN;
use shiki_e2e::{Cloud, temp_dir};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A cloud with `toml` as its config file, in `dir`.
async fn cloud_with(dir: &std::path::Path, toml: &str) -> anyhow::Result<Cloud> {
    let config = dir.join("cloud.toml");
    std::fs::write(&config, toml).context("writing the cloud config")?;
    Cloud::start(
        "cloud",
        &dir.join("data"),
        dir,
        Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        Some(&config),
    )
    .await
}

/// An HTTP client whose connections come from `source` (all of 127/8 is loopback on Linux).
fn client_from(source: Ipv4Addr) -> anyhow::Result<reqwest::Client> {
    shiki_e2e::install_crypto();
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::V4(source))
        .timeout(Duration::from_secs(10))
        .build()?)
}

fn assert_too_large(status: u16, body: &Value, limit: u64) {
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(body["error"]["limit_bytes"], limit, "{body}");
    assert_eq!(body["error"]["setting"], "api.max_body_bytes", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("api.max_body_bytes"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_configured_limit_are_refused_with_413_announced_or_chunked()
-> anyhow::Result<()> {
    let dir = temp_dir("hostile-body")?;
    let cloud = cloud_with(dir.path(), "[api]\nmax_body_bytes = 1024\n").await?;
    let http = client_from(Ipv4Addr::LOCALHOST)?;
    let url = format!("http://{}/api/v1/tokens", cloud.api.addr);
    let big = format!(
        r#"{{"name": "grafana", "role": "viewer", "note": "{}"}}"#,
        "x".repeat(4096)
    );

    let res = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "application/json")
        .body(big.clone())
        .send()
        .await?;
    let status = res.status().as_u16();
    assert_too_large(status, &res.json().await?, 1024);

    // Chunked: no Content-Length, so the limit is found while the body is read.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(256).map(|c| Ok(c.to_vec())).collect();
    let res = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await?;
    let status = res.status().as_u16();
    assert_too_large(status, &res.json().await?, 1024);

    // Within the limit the same route works.
    let res = http
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "grafana", "role": "viewer"}))
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 201, "{}", res.text().await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_request_head_is_cut_off_after_the_request_timeout()
-> anyhow::Result<()> {
    let dir = temp_dir("hostile-slow")?;
    let cloud = cloud_with(dir.path(), "[api]\nclient_request_timeout = \"1s\"\n").await?;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nUser-Agent: slowloris-e2e\r\nX-Padding: {}\r\n\r\n",
        cloud.api.addr,
        "p".repeat(64)
    );
    // One byte every 50 ms: the whole head would take about 7 s.
    const PACE: Duration = Duration::from_millis(50);
    let mut slow = TcpStream::connect(cloud.api.addr).await?;
    slow.set_nodelay(true)?;
    let started = Instant::now();
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let cut_off = 'send: {
        for byte in head.as_bytes() {
            if slow.write_all(&[*byte]).await.is_err() {
                break 'send true;
            }
            sent += 1;
            // The pause between bytes is the scenario; it also watches for the server
            // closing the connection (EOF) or answering (408).
            match tokio::time::timeout(PACE, slow.read(&mut buf)).await {
                Err(_elapsed) => {}
                Ok(Ok(0)) | Ok(Err(_)) => break 'send true,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    // Read to the end: the server closes after its answer.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer))
                            .await;
                    break 'send true;
                }
            }
        }
        false
    };
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        cut_off,
        "the server read the whole head ({sent} bytes over {elapsed:?}) without cutting the client off"
    );
    assert!(
        sent < head.len(),
        "cut off only after the whole head: {sent} of {}",
        head.len()
    );
    // actix-web reckons the deadline from a clock it refreshes every 500 ms, so the cut
    // comes between 0.5 s and 1 s after the connection (plus scheduling).
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "cut off after {elapsed:?}, configured 1 s"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "answer: {answer}"
    );

    // Other clients were served all along, and still are.
    let (status, body) = cloud.api.get("/whoami").await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

/// The value of an unlabelled sample on `/metrics`.
async fn metric(http: &reqwest::Client, addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{name} not on /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_bad_tokens_locks_that_address_out_while_a_good_client_elsewhere_is_served()
-> anyhow::Result<()> {
    let dir = temp_dir("hostile-tokens")?;
    let cloud = cloud_with(
        dir.path(),
        "[auth]\nmax_failed_attempts = 5\nfailed_attempts_window = \"1m\"\nlockout = \"10m\"\n",
    )
    .await?;
    let addr = cloud.api.addr;
    let url = format!("http://{addr}/api/v1/devices");
    let attacker = client_from(Ipv4Addr::new(127, 0, 0, 1))?;
    let good = client_from(Ipv4Addr::new(127, 0, 0, 2))?;

    for i in 0..5 {
        let res = attacker
            .get(&url)
            .bearer_auth(format!("shiki_{i:064x}"))
            .send()
            .await?;
        assert_eq!(res.status().as_u16(), 401, "bad token {i}");
    }
    let mut refused = 0;
    for token in ["shiki_guess", ADMIN_TOKEN] {
        let res = attacker.get(&url).bearer_auth(token).send().await?;
        assert_eq!(res.status().as_u16(), 429, "token {token}");
        let retry_after: u64 = res
            .headers()
            .get("retry-after")
            .context("429 without Retry-After")?
            .to_str()?
            .parse()?;
        assert!(
            (1..=600).contains(&retry_after),
            "Retry-After {retry_after}"
        );
        let body: Value = res.json().await?;
        assert_eq!(body["error"]["code"], "too_many_failed_attempts", "{body}");
        refused += 1;
    }
    for _ in 0..3 {
        let res = good.get(&url).bearer_auth(ADMIN_TOKEN).send().await?;
        assert_eq!(res.status().as_u16(), 200);
    }
    assert_eq!(
        metric(&good, addr, "shiki_api_auth_rate_limited_total").await?,
        f64::from(refused)
    );
    assert_eq!(
        metric(&good, addr, "shiki_api_auth_lockouts_total").await?,
        1.0
    );
    Ok(())
}
