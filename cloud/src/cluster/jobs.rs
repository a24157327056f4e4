//! The OTA jobs of a cluster (ADR `docs/adr/cluster-ota-jobs.md`): the node holding the jobs
//! lease ([`JOBS_LEASE`](crate::store::JOBS_LEASE)) drives every job with its
//! [`JobsActor`](crate::ota::JobsActor), restored from the store when it takes the lease
//! and storing each change fenced by it. What the jobs hear of the devices (each one's
//! `status` and `jobs/{job}/update`) comes through a persistent MQTT session of the lease's
//! own, `{mqtt.client_id}-jobs`, which passes from holder to holder like a shard's: the
//! broker keeps what arrives while nobody holds it, and re-sends every retained status
//! when the next holder subscribes.

use actix::prelude::*;
use shiki_proto::DeviceId;

use crate::config::MqttConfig;
use crate::device::{DeviceInput, Router};
use crate::ota::{DeviceJobInput, DriveJobs, JobInput, Presence, StandBy};

/// The jobs actor as the coordinator talks to it.
#[derive(Debug, Clone)]
pub struct JobsPeers {
    /// The lease taken: drive these jobs.
    pub drive: Recipient<DriveJobs>,
    /// The lease gone: stop.
    pub stand_by: Recipient<StandBy>,
    /// What the lease's session hears.
    pub inputs: Recipient<DeviceJobInput>,
}

/// The client id of the jobs lease's MQTT session, the same on every node.
pub(super) fn jobs_client_id(mqtt: &MqttConfig) -> String {
    format!("{}-jobs", mqtt.client_id)
}

/// Routes what the jobs session hears to the jobs actor: a status as the device's
/// presence, a job update as it is. Nothing else is subscribed there.
pub(super) struct JobsRouter(pub Recipient<DeviceJobInput>);

impl Router for JobsRouter {
    fn route(&self, device: DeviceId, input: DeviceInput) {
        let input = match input {
            DeviceInput::Status(s) => JobInput::Presence(Presence::from(&s)),
            DeviceInput::JobUpdate { job, update } => JobInput::Update {
                job,
                update: *update,
            },
            // Not subscribed by the jobs session.
            _ => return,
        };
        self.0.do_send(DeviceJobInput { device, input });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shiki_proto::{Connectivity, JobId, JobStatus, JobUpdate, Status};

    /// Collects what it is sent.
    struct Collect(std::sync::Arc<std::sync::Mutex<Vec<DeviceJobInput>>>);
    impl Actor for Collect {
        type Context = Context<Self>;
    }
    impl Handler<DeviceJobInput> for Collect {
        type Result = ();
        fn handle(&mut self, msg: DeviceJobInput, _ctx: &mut Self::Context) {
            self.0.lock().expect("not poisoned").push(msg);
        }
    }

    #[actix::test]
    async fn a_status_becomes_presence_an_update_passes_and_the_rest_is_ignored() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let addr = Collect(seen.clone()).start();
        let router = JobsRouter(addr.clone().recipient());
        let d = DeviceId::new("gw-1").expect("valid");
        let status: Status = serde_json::from_value(serde_json::json!({
            "v": 1, "state": "online", "software_version": "0.2.0"
        }))
        .expect("status");
        assert_eq!(status.state, Connectivity::Online);
        let job = JobId::new("ota-1").expect("valid");
        let update: JobUpdate = serde_json::from_value(serde_json::json!({
            "v": 1, "status": "succeeded", "ts": "2026-12-06T00:00:00Z"
        }))
        .expect("update");
        router.route(d.clone(), DeviceInput::Status(status));
        router.route(d.clone(), DeviceInput::Events(Vec::new()));
        router.route(
            d.clone(),
            DeviceInput::JobUpdate {
                job: job.clone(),
                update: Box::new(update.clone()),
            },
        );
        // A round trip behind the do_sends: they were handled.
        addr.send(DeviceJobInput {
            device: d.clone(),
            input: JobInput::Presence(Presence::default()),
        })
        .await
        .expect("alive");
        let seen = seen.lock().expect("not poisoned").clone();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(
            seen[0].input,
            JobInput::Presence(Presence {
                online: true,
                software_version: Some("0.2.0".into())
            })
        );
        assert_eq!(update.status, JobStatus::Succeeded);
        assert_eq!(seen[1].input, JobInput::Update { job, update });
    }
}
