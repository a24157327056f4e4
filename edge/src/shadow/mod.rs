//! Shadow: applies the desired document from the cloud (`shadow/document`, `shadow/delta`)
//! as overrides for Control, persists it in redb so a reboot without link restores it, and
//! publishes Control's reports on `shadow/reported`. Expired overrides are persisted and
//! re-sent with every report until a report carrying them is acknowledged by the broker.
//! Malformed cloud messages are logged with topic and reason, counted, and dropped.

mod model;

use actix::prelude::*;
use shiki_proto::{Channel, ExpiredOverride, ShadowDelta, ShadowDocument, decode};

pub use model::{Applied, DesiredDoc, ShadowModel};

use crate::messages::{
    CloudMessage, ControlReport, LinkUp, PublishReported, ReportedDelivered, SetOverrides, Stop,
};
use crate::outbox::{AuditEntry, OutboxError, OutboxHandle, WriteOp};

const DESIRED_KEY: &str = "shadow.desired";
const EXPIRED_KEY: &str = "shadow.expired";

/// Loads the persisted desired document and pending expiries.
pub async fn load_persisted(
    outbox: &OutboxHandle,
) -> Result<(DesiredDoc, Vec<ExpiredOverride>), OutboxError> {
    let doc = match outbox.get_doc(DESIRED_KEY).await? {
        Some(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::error!(error = %e, "persisted desired document is unreadable; starting empty");
            DesiredDoc::default()
        }),
        None => DesiredDoc::default(),
    };
    let expired = match outbox.get_doc(EXPIRED_KEY).await? {
        Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
        None => Vec::new(),
    };
    Ok((doc, expired))
}

/// Who the shadow talks to.
#[derive(Debug, Clone)]
pub struct ShadowPeers {
    pub control: Recipient<SetOverrides>,
    pub uplink: Recipient<PublishReported>,
}

/// Count of cloud messages dropped as malformed (for tests and diagnostics).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "u64")]
pub struct MalformedCount;

#[derive(Debug)]
pub struct Shadow {
    model: ShadowModel,
    peers: ShadowPeers,
    outbox: OutboxHandle,
    malformed: u64,
}

impl Shadow {
    pub fn new(
        doc: DesiredDoc,
        pending_expired: Vec<ExpiredOverride>,
        outbox: OutboxHandle,
        peers: ShadowPeers,
    ) -> Self {
        Self {
            model: ShadowModel::new(doc, pending_expired),
            peers,
            outbox,
            malformed: 0,
        }
    }

    fn persist(&self, key: &'static str, value: Result<Vec<u8>, serde_json::Error>) {
        let Ok(value) = value else { return };
        let rx = self.outbox.submit(WriteOp::PutDoc {
            key: key.to_owned(),
            value,
        });
        actix::spawn(async move {
            match rx.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(key, error = %e, "shadow state not persisted"),
                Err(_) => tracing::error!(key, "shadow state not persisted: outbox writer gone"),
            }
        });
    }

    fn audit(&self, actor: &str, action: &str, detail: serde_json::Value) {
        let rx = self.outbox.submit(WriteOp::Audit(AuditEntry {
            ts: chrono::Utc::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail,
        }));
        actix::spawn(async move {
            if !matches!(rx.await, Ok(Ok(_))) {
                tracing::warn!("audit entry not stored");
            }
        });
    }

    fn persist_desired(&self) {
        self.persist(DESIRED_KEY, serde_json::to_vec(&self.model.doc));
    }

    fn persist_expired(&self) {
        self.persist(EXPIRED_KEY, serde_json::to_vec(&self.model.pending_expired));
    }

    fn malformed(&mut self, topic: &str, reason: String) {
        self.malformed += 1;
        tracing::warn!(%topic, %reason, count = self.malformed, "malformed cloud message dropped");
    }
}

impl Actor for Shadow {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        // A reboot without link: restore the persisted overrides now.
        if self.model.doc.version > 0 || !self.model.doc.desired.is_empty() {
            tracing::info!(
                version = self.model.doc.version,
                "restored persisted desired state"
            );
            self.peers.control.do_send(self.model.overrides());
        }
    }
}

impl Handler<CloudMessage> for Shadow {
    type Result = ();

    fn handle(&mut self, msg: CloudMessage, _ctx: &mut Context<Self>) {
        let applied = match msg.channel {
            Channel::ShadowDocument => match decode::<ShadowDocument>(&msg.payload) {
                Ok(d) => self.model.on_document(d),
                Err(e) => return self.malformed(&msg.topic, e.to_string()),
            },
            Channel::ShadowDelta => match decode::<ShadowDelta>(&msg.payload) {
                Ok(d) => self.model.on_delta(d),
                Err(e) => return self.malformed(&msg.topic, e.to_string()),
            },
            other => {
                return self.malformed(&msg.topic, format!("not a shadow channel: {other:?}"));
            }
        };
        match applied {
            Applied::Changed(overrides) => {
                tracing::info!(
                    version = overrides.desired_version,
                    keys = overrides.overrides.len(),
                    "desired state applied"
                );
                self.persist_desired();
                self.audit(
                    "cloud",
                    "desired_applied",
                    serde_json::json!({
                        "version": overrides.desired_version,
                        "topic": msg.topic,
                        "desired": self.model.doc.desired,
                    }),
                );
                self.peers.control.do_send(overrides);
            }
            Applied::Stale { have, got } => {
                tracing::info!(topic = %msg.topic, have, got, "stale desired version ignored")
            }
        }
    }
}

impl Handler<ControlReport> for Shadow {
    type Result = ();

    fn handle(&mut self, report: ControlReport, _ctx: &mut Context<Self>) {
        let had_expired = !report.expired.is_empty();
        for e in &report.expired {
            self.audit(
                "device",
                "override_expired",
                serde_json::json!({ "key": e.key, "at": e.at, "desired_version": e.desired_version }),
            );
        }
        let publish = self.model.on_report(report);
        if had_expired {
            self.persist_desired();
            self.persist_expired();
        }
        self.peers.uplink.do_send(publish);
    }
}

impl Handler<LinkUp> for Shadow {
    type Result = ();

    fn handle(&mut self, _msg: LinkUp, _ctx: &mut Context<Self>) {
        if let Some(p) = self.model.republish() {
            self.peers.uplink.do_send(p);
        }
    }
}

impl Handler<ReportedDelivered> for Shadow {
    type Result = ();

    fn handle(&mut self, msg: ReportedDelivered, _ctx: &mut Context<Self>) {
        if self.model.on_delivered(msg.generation) {
            self.persist_expired();
        }
    }
}

impl Handler<Stop> for Shadow {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<MalformedCount> for Shadow {
    type Result = u64;

    fn handle(&mut self, _msg: MalformedCount, _ctx: &mut Context<Self>) -> u64 {
        self.malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{OutboxOptions, RedbOutbox};
    use tokio::sync::mpsc;

    struct Probe<M: Message<Result = ()> + Send>(mpsc::UnboundedSender<M>);
    impl<M: Message<Result = ()> + Send + Unpin + 'static> Actor for Probe<M> {
        type Context = Context<Self>;
    }
    impl<M: Message<Result = ()> + Send + Unpin + 'static> Handler<M> for Probe<M> {
        type Result = ();
        fn handle(&mut self, m: M, _: &mut Context<Self>) {
            let _ = self.0.send(m);
        }
    }

    #[actix::test]
    async fn a_reboot_without_link_restores_the_persisted_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("edge.redb");
        let doc = DesiredDoc {
            version: 7,
            desired: [("saving".to_owned(), serde_json::json!(true))]
                .into_iter()
                .collect(),
            metadata: Default::default(),
            timestamp: Some(chrono::Utc::now()),
        };
        {
            let (outbox, join) = OutboxHandle::start(
                RedbOutbox::open(&path, OutboxOptions::default()).expect("open"),
            )
            .expect("start");
            outbox
                .put_doc(DESIRED_KEY, serde_json::to_vec(&doc).expect("json"))
                .await
                .expect("put");
            outbox.close().await;
            join.join().expect("writer");
        }
        let (outbox, _join) =
            OutboxHandle::start(RedbOutbox::open(&path, OutboxOptions::default()).expect("open"))
                .expect("start");
        let (restored, expired) = load_persisted(&outbox).await.expect("load");
        assert_eq!(restored, doc);
        let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
        let (up_tx, _up_rx) = mpsc::unbounded_channel::<PublishReported>();
        Shadow::new(
            restored,
            expired,
            outbox,
            ShadowPeers {
                control: Probe(ctl_tx).start().recipient(),
                uplink: Probe(up_tx).start().recipient(),
            },
        )
        .start();
        let o = tokio::time::timeout(std::time::Duration::from_secs(5), ctl_rx.recv())
            .await
            .expect("overrides at start")
            .expect("probe");
        assert_eq!(o.desired_version, 7);
        assert_eq!(o.overrides["saving"].value, serde_json::json!(true));
    }
}
