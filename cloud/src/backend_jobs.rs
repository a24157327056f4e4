//! The job half of [`CloudBackend`]: the API's job requests to the
//! [`JobsActor`](crate::ota::JobsActor), and its records as the API shows them.

use shiki_proto::{DeviceId, JobId};

use crate::api::{
    AuthorView, BackendError, JobCreated, JobDeviceView, JobExecutionStatus, JobView, NewJob,
};
use crate::backend_impl::CloudBackend;
use crate::device::Registry;
use crate::ota::{CancelJob, CreateJob, GetJob, JobError, ListJobs, Presence};
use crate::store::{Author, ExecutionRecord, ExecutionStatus, JobRecord, Rollout};

fn gone(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("the jobs actor did not answer: {e}"))
}

/// A job error as the API answers it: 422 naming the field, or 404.
fn job_error(e: JobError) -> BackendError {
    let key = match &e {
        JobError::NotFound(_) => return BackendError::NotFound,
        JobError::ArtifactLookup(_) => return BackendError::Internal(e.to_string()),
        JobError::NotDriving | JobError::NotStored(_) => {
            return BackendError::Unavailable(e.to_string());
        }
        JobError::UnknownVersion(_) => "artifact_version",
        JobError::UnknownDevice(_) | JobError::NoDevices | JobError::DuplicateDevice(_) => {
            "devices"
        }
        JobError::NoSlots => "max_in_progress",
        JobError::Ratio(_) => "abort_failure_ratio",
    };
    BackendError::InvalidJob {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

impl CloudBackend {
    /// Looks every device up (each must be known), then creates the job.
    pub(crate) async fn create_job_now(
        &self,
        job: NewJob,
        author: Author,
    ) -> Result<JobCreated, BackendError> {
        let presence = if self.in_cluster() {
            self.known_in_cluster(&job.devices).await?;
            // The jobs lease's own session hears every device's status.
            Vec::new()
        } else {
            self.presence_here(&job.devices).await?
        };
        let defaults = Rollout::default();
        let new = crate::ota::NewJob {
            artifact_version: job.artifact_version,
            devices: job.devices,
            rollout: Rollout {
                max_in_progress: job.max_in_progress.unwrap_or(defaults.max_in_progress),
                abort_failure_ratio: job
                    .abort_failure_ratio
                    .unwrap_or(defaults.abort_failure_ratio),
                allow_downgrade: job.allow_downgrade,
            },
            author,
        };
        let id = self
            .jobs()
            .send(CreateJob { job: new, presence })
            .await
            .map_err(gone)?
            .map_err(job_error)?;
        Ok(JobCreated { id: id.to_string() })
    }

    /// One process: each device's actor says whether it is online and what it runs.
    async fn presence_here(
        &self,
        devices: &[DeviceId],
    ) -> Result<Vec<(DeviceId, Presence)>, BackendError> {
        let mut presence = Vec::with_capacity(devices.len());
        for id in devices {
            let view = Registry::view(self.registry(), id.clone())
                .await
                .map_err(|e| BackendError::Unavailable(e.to_string()))?
                .ok_or_else(|| job_error(JobError::UnknownDevice(id.to_string())))?;
            let software_version = view.status.and_then(|s| s.software_version);
            presence.push((
                id.clone(),
                Presence {
                    online: view.online,
                    software_version,
                },
            ));
        }
        Ok(presence)
    }

    /// A cluster node, where most devices run elsewhere: each must be registered (and not
    /// retired) or stored.
    async fn known_in_cluster(&self, devices: &[DeviceId]) -> Result<(), BackendError> {
        let (store, ids) = (self.store().clone(), devices.to_vec());
        let unknown = tokio::task::spawn_blocking(move || {
            for id in ids {
                let registered = store
                    .registered(&id)?
                    .is_some_and(|r| r.retired_at.is_none());
                if !registered && store.device(&id)?.is_none() {
                    return Ok(Some(id));
                }
            }
            Ok::<_, crate::store::StoreError>(None)
        })
        .await
        .map_err(|e| BackendError::Unavailable(e.to_string()))?
        .map_err(|e| BackendError::Internal(e.to_string()))?;
        match unknown {
            Some(id) => Err(job_error(JobError::UnknownDevice(id.to_string()))),
            None => Ok(()),
        }
    }

    pub(crate) async fn list_jobs_now(&self) -> Result<Vec<JobView>, BackendError> {
        let jobs = self
            .jobs()
            .send(ListJobs)
            .await
            .map_err(gone)?
            .map_err(job_error)?;
        Ok(jobs.iter().map(job_view).collect())
    }

    pub(crate) async fn job_now(&self, id: JobId) -> Result<JobView, BackendError> {
        self.jobs()
            .send(GetJob(id.to_string()))
            .await
            .map_err(gone)?
            .map_err(job_error)?
            .map(|j| job_view(&j))
            .ok_or(BackendError::NotFound)
    }

    pub(crate) async fn cancel_job_now(
        &self,
        id: JobId,
        by: Author,
    ) -> Result<JobView, BackendError> {
        let job = self
            .jobs()
            .send(CancelJob {
                id: id.to_string(),
                by,
            })
            .await
            .map_err(gone)?
            .map_err(job_error)?;
        Ok(job_view(&job))
    }
}

fn job_view(j: &JobRecord) -> JobView {
    JobView {
        id: j.id.to_string(),
        artifact_version: j.artifact.version.clone(),
        created_at: j.created_at,
        created_by: AuthorView::from(&j.created_by),
        max_in_progress: j.rollout.max_in_progress,
        abort_failure_ratio: j.rollout.abort_failure_ratio,
        allow_downgrade: j.rollout.allow_downgrade,
        canceled_by: j.canceled_by.as_ref().map(AuthorView::from),
        devices: j.executions.iter().map(device_view).collect(),
    }
}

fn device_view(e: &ExecutionRecord) -> JobDeviceView {
    JobDeviceView {
        device: e.device.to_string(),
        status: match e.status {
            ExecutionStatus::Queued => JobExecutionStatus::Queued,
            ExecutionStatus::InProgress => JobExecutionStatus::InProgress,
            ExecutionStatus::Succeeded => JobExecutionStatus::Succeeded,
            ExecutionStatus::Failed => JobExecutionStatus::Failed,
            ExecutionStatus::RolledBack => JobExecutionStatus::RolledBack,
            ExecutionStatus::TimedOut => JobExecutionStatus::TimedOut,
            ExecutionStatus::Canceled => JobExecutionStatus::Canceled,
        },
        progress: e.progress.min(100),
        reason: e.reason.clone(),
        step: e
            .step
            .filter(|s| *s != shiki_proto::JobStep::Unknown)
            .map(|s| {
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
        started_at: e.started_at,
        finished_at: e.finished_at,
    }
}
