//! The notifier against a tiny local webhook server on port 0: Slack JSON, retries with
//! backoff, de-duplication.

mod common;

use std::time::Duration;

use actix::Actor;
use common::within;
use shiki_cloud::config::NotifierConfig;
use shiki_cloud::notifier::{Alert, AlertKind, Notifier, NotifierStats};
use shiki_proto::DeviceId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Accepts HTTP requests; answers the first `fail_first` with 500, then 200. Sends each
/// request body to the returned channel.
async fn webhook(fail_first: usize) -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    actix_rt::spawn(async move {
        let mut n = 0;
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let r = sock.read(&mut chunk).await.expect("read");
                if r == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..r]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body[..len].to_owned());
                    }
                }
            };
            n += 1;
            let status = if n <= fail_first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = sock
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            if let Some(b) = body {
                let _ = tx.send(serde_json::from_str(&b).expect("json body"));
            }
        }
    });
    (url, rx)
}

fn alert(text: &str) -> Alert {
    Alert {
        device: DeviceId::new("gw-1").expect("id"),
        kind: AlertKind::VerificationFailed,
        text: text.into(),
    }
}

#[actix_rt::test]
async fn alerts_are_posted_as_slack_json_retried_and_deduplicated() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (url, mut bodies) = webhook(1).await;
    let cfg = NotifierConfig {
        webhook_url: Some(url),
        retry_delay: Duration::from_millis(10),
        ..NotifierConfig::default()
    };
    let stats = std::sync::Arc::new(NotifierStats::default());
    let n = Notifier::new(cfg, stats.clone()).start();
    n.do_send(alert("gw-1: setting `sp` failed: clamped to 12.0"));
    n.do_send(alert("gw-1: setting `sp` failed: clamped to 12.0"));
    n.do_send(alert("gw-1: second"));
    // First attempt refused (500), retried.
    let first = within(bodies.recv(), "first post").await.expect("body");
    let retried = within(bodies.recv(), "retry").await.expect("body");
    assert_eq!(first, retried);
    assert_eq!(first["text"], "gw-1: setting `sp` failed: clamped to 12.0");
    let second = within(bodies.recv(), "second alert").await.expect("body");
    assert_eq!(second["text"], "gw-1: second");
    assert_eq!(
        stats
            .deduplicated
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[actix_rt::test]
async fn an_unreachable_webhook_never_blocks_the_sender() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = NotifierConfig {
        // Nothing listens on port 9 (discard) on loopback in the test machine.
        webhook_url: Some("http://127.0.0.1:9/hook".into()),
        retries: 2,
        retry_delay: Duration::from_millis(5),
        queue: 4,
        ..NotifierConfig::default()
    };
    let stats = std::sync::Arc::new(NotifierStats::default());
    let n = Notifier::new(cfg, stats.clone()).start();
    for i in 0..100 {
        n.send(alert(&format!("alert {i}")))
            .await
            .expect("handled at once");
    }
    let s = stats.clone();
    common::eventually("queue overflow counted", || {
        let s = s.clone();
        async move {
            (s.dropped_queue_full
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0)
            .then_some(())
        }
    })
    .await;
}
