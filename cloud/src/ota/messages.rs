//! The messages of the [`JobsActor`](super::JobsActor): the API's requests, the device
//! actors' inputs, and the `jobs/notify` it hands a device actor to publish.

use actix::prelude::*;
use shiki_proto::{DeviceId, JobId, JobNotify, JobUpdate};

use super::state::{JobError, NewJob, Presence};
use crate::store::{Author, Fence, JobRecord};

/// Creates a job; `presence` says how each of its devices (all known to the cloud) is now.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<JobId, JobError>")]
pub struct CreateJob {
    pub job: NewJob,
    pub presence: Vec<(DeviceId, Presence)>,
}

/// Cancels what has not finished of a job; answers the job as it is then.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<JobRecord, JobError>")]
pub struct CancelJob {
    pub id: String,
    pub by: Author,
}

/// One job, `None` if there is no such job.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Option<JobRecord>, JobError>")]
pub struct GetJob(pub String);

/// Every job, newest first.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<Vec<JobRecord>, JobError>")]
pub struct ListJobs;

/// A cluster node took the jobs lease: drive `records` (every job as stored now), each
/// change stored fenced by `fence`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DriveJobs {
    pub fence: Fence,
    pub records: Vec<JobRecord>,
}

/// The jobs lease was lost or handed over: stop driving the jobs (nothing more is stored
/// or published; requests answer [`JobError::NotDriving`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StandBy;

/// What a device actor passes on to the jobs.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct DeviceJobInput {
    pub device: DeviceId,
    pub input: JobInput,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobInput {
    /// Every `status` of the device: online or not, and its version.
    Presence(Presence),
    /// `jobs/{job}/update` from the edge.
    Update { job: JobId, update: JobUpdate },
}

/// A `jobs/notify` for the device's actor to publish: the device's pending jobs.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct NotifyDevice {
    pub device: DeviceId,
    pub notify: JobNotify,
}
