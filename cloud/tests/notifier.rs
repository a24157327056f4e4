//! The notifier against a tiny local webhook server on port 0: Slack JSON, retries with
//! backoff, de-duplication.

mod common;

use std::time::Duration;

use actix::Actor;
use common::{webhook, within};
use shiki_cloud::config::NotifierConfig;
use shiki_cloud::notifier::{Alert, AlertKind, Notifier, NotifierStats};
use shiki_proto::DeviceId;

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
