//! The uplink's part of OTA jobs: `jobs/notify` in (to the Ota actor as
//! [`JobsReceived`]), `jobs/{job_id}/update` out. An update made while the link is down is
//! kept (the latest per job, at most [`MAX_PENDING_JOB_UPDATES`]) and published on the
//! next connect; terminal updates are also re-sent by the Ota actor whenever the cloud
//! lists the job again.

use std::collections::BTreeMap;

use actix::prelude::*;
use rumqttc::QoS;
use shiki_proto::{Channel, JobId, JobNotify, JobUpdate, decode, encode};

use super::{Tag, Uplink};
use crate::ota::{JobsReceived, PublishJobUpdate};

/// Most jobs with an update waiting for the link.
pub const MAX_PENDING_JOB_UPDATES: usize = 16;

/// Job updates made while the link was down: the latest per job.
#[derive(Debug, Default)]
pub struct PendingJobUpdates(BTreeMap<JobId, JobUpdate>);

impl PendingJobUpdates {
    /// Keeps `update` for `job` (replacing an older one); past the bound the update with
    /// the oldest timestamp is forgotten.
    pub fn keep(&mut self, job: JobId, update: JobUpdate) {
        self.0.insert(job, update);
        while self.0.len() > MAX_PENDING_JOB_UPDATES {
            let oldest = self
                .0
                .iter()
                .min_by_key(|(_, u)| u.ts)
                .map(|(j, _)| j.clone());
            let Some(job) = oldest else { break };
            self.0.remove(&job);
        }
    }

    /// Every kept update, oldest first; the map is emptied.
    pub fn take(&mut self) -> Vec<(JobId, JobUpdate)> {
        let mut out: Vec<_> = std::mem::take(&mut self.0).into_iter().collect();
        out.sort_by_key(|(_, u)| u.ts);
        out
    }
}

impl Uplink {
    pub(super) fn on_jobs_notify(&mut self, topic: &str, payload: &[u8]) {
        let notify = match decode::<JobNotify>(payload) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(%topic, reason = %e, "malformed jobs/notify dropped");
                return;
            }
        };
        match &self.jobs {
            Some(to) => {
                tracing::info!(%topic, jobs = notify.jobs.len(), "jobs/notify received");
                to.do_send(JobsReceived(notify));
            }
            None => {
                tracing::info!(%topic, "jobs/notify received but OTA does not run in this process (trial run or in-process agent); dropped")
            }
        }
    }

    fn publish_job_update(&mut self, job: JobId, update: JobUpdate) {
        let payload = match encode(&update) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%job, error = %e, "job update cannot be encoded; dropped");
                return;
            }
        };
        let topic = self.topic(&Channel::JobUpdate(job.clone()));
        match self
            .client
            .try_publish(topic.clone(), QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => self.window.requested(Tag::Control),
            Err(e) => {
                tracing::warn!(%topic, error = %e, "job update publish refused; kept");
                self.job_updates.keep(job, update);
            }
        }
    }

    /// After a connect: publish the updates kept while the link was down.
    pub(super) fn publish_pending_job_updates(&mut self) {
        for (job, update) in self.job_updates.take() {
            self.publish_job_update(job, update);
        }
    }
}

impl Handler<PublishJobUpdate> for Uplink {
    type Result = ();

    fn handle(&mut self, msg: PublishJobUpdate, _ctx: &mut Context<Self>) {
        if self.window.mode().sends() {
            self.publish_job_update(msg.job_id, msg.update);
        } else {
            tracing::info!(job = %msg.job_id, "link down: job update kept until the next connect");
            self.job_updates.keep(msg.job_id, msg.update);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};
    use shiki_proto::{JobStatus, PROTOCOL_VERSION};

    use super::*;

    fn update(status: JobStatus, secs: i64) -> JobUpdate {
        JobUpdate {
            v: PROTOCOL_VERSION,
            status,
            detail: None,
            step: None,
            progress: None,
            ts: Utc::now() + TimeDelta::seconds(secs),
        }
    }

    #[test]
    fn the_latest_update_per_job_is_kept_and_the_oldest_forgotten_past_the_bound() {
        let mut p = PendingJobUpdates::default();
        let job = |i: usize| JobId::new(format!("j{i}")).expect("id");
        p.keep(job(0), update(JobStatus::InProgress, 0));
        p.keep(job(0), update(JobStatus::Succeeded, 1));
        for i in 1..=MAX_PENDING_JOB_UPDATES {
            p.keep(job(i), update(JobStatus::InProgress, 1 + i as i64));
        }
        let kept = p.take();
        assert_eq!(kept.len(), MAX_PENDING_JOB_UPDATES);
        assert_eq!(kept[0].0, job(1), "j0 was the oldest");
        assert!(p.take().is_empty());
    }
}
