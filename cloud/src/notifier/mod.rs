//! Alerts to a Slack-compatible webhook (`{"text": ...}`): verification failures, devices
//! offline too long, PLC alarms. Repeats within a window are sent once; sending happens on
//! a worker task behind a bounded queue, so a slow webhook never blocks ingest.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use shiki_proto::DeviceId;
use tokio::sync::mpsc;

use crate::config::NotifierConfig;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    VerificationFailed,
    DeviceOffline,
    PlcAlarm,
    /// Yearly schedule sync: refused, not acknowledged, missing for the coming year.
    Schedule,
    /// An OTA job's execution failed, rolled back or timed out.
    Ota,
}

/// One alert for people.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Alert {
    pub device: DeviceId,
    pub kind: AlertKind,
    pub text: String,
}

/// Notifier counters.
#[derive(Debug, Default)]
pub struct NotifierStats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub deduplicated: AtomicU64,
    pub dropped_queue_full: AtomicU64,
}

/// The notifier actor.
#[derive(Debug)]
pub struct Notifier {
    cfg: NotifierConfig,
    tx: Option<mpsc::Sender<Alert>>,
    recent: HashMap<(DeviceId, AlertKind, String), Instant>,
    stats: Arc<NotifierStats>,
}

impl Notifier {
    pub fn new(cfg: NotifierConfig, stats: Arc<NotifierStats>) -> Self {
        Self {
            cfg,
            tx: None,
            recent: HashMap::new(),
            stats,
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        let (tx, rx) = mpsc::channel(self.cfg.queue.max(1));
        self.tx = Some(tx);
        actix::spawn(worker(self.cfg.clone(), rx, self.stats.clone()));
    }
}

impl Handler<Alert> for Notifier {
    type Result = ();

    fn handle(&mut self, alert: Alert, _ctx: &mut Self::Context) {
        let now = Instant::now();
        let window = self.cfg.dedup_window;
        self.recent.retain(|_, at| now.duration_since(*at) < window);
        let key = (alert.device.clone(), alert.kind, alert.text.clone());
        if self.recent.contains_key(&key) {
            self.stats.deduplicated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(device_id = %alert.device, "duplicate alert suppressed");
            return;
        }
        self.recent.insert(key, now);
        tracing::warn!(device_id = %alert.device, kind = ?alert.kind, "{}", alert.text);
        if let Some(tx) = &self.tx
            && tx.try_send(alert).is_err()
        {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!("alert queue full; alert dropped");
        }
    }
}

#[derive(Serialize)]
struct SlackMessage<'a> {
    text: &'a str,
}

async fn worker(cfg: NotifierConfig, mut rx: mpsc::Receiver<Alert>, stats: Arc<NotifierStats>) {
    let Some(url) = cfg.webhook_url.clone() else {
        while rx.recv().await.is_some() {}
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; alerts are only logged");
            while rx.recv().await.is_some() {}
            return;
        }
    };
    while let Some(alert) = rx.recv().await {
        let mut delay = cfg.retry_delay;
        let mut ok = false;
        for attempt in 1..=cfg.retries.max(1) {
            let res = client
                .post(&url)
                .json(&SlackMessage { text: &alert.text })
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(r) => {
                    tracing::warn!(device_id = %alert.device, status = %r.status(), attempt, "webhook refused the alert");
                }
                Err(e) => {
                    tracing::warn!(device_id = %alert.device, error = %e, attempt, "webhook post failed");
                }
            }
            if attempt < cfg.retries {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
        if ok {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(device_id = %alert.device, "alert could not be delivered: {}", alert.text);
        }
    }
}
