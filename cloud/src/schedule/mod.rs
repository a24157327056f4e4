//! Yearly schedule sync in the cloud: store each device's current and next schedule,
//! validate puts against the device's catalog, push them on `schedule/set`, verify the
//! edge's `schedule/ack` by hash, retry with backoff, and run the fleet-wide yearly jobs.
//!
//! # HTTP semantics (for the admin API)
//! - `PUT /api/v1/devices/{id}/schedule[?slot=current|next]` (operator role). Body: the
//!   schedule document (JSON). Without `slot` the validity decides ([`SlotChoice::Auto`]):
//!   `next` when the device's current schedule is still running and the new one starts at
//!   or after its end, otherwise `current` (replacing the running one at once). A `next`
//!   put while no schedule runs goes to `current`. Answers: 200 with
//!   [`PutScheduleResponse`] (`pushed: false` when the device is offline: it is pushed on
//!   reconnect); 400 [`SetError::Malformed`] when the body is not a schedule document; 422
//!   [`SetError::Invalid`] with every problem (`severity`, `kind`, `path`, `message`),
//!   including validity already over and a `next` that would end before the current one.
//!   Re-putting the same document is harmless (same hash; the edge acks it again).
//! - `GET /api/v1/devices/{id}/schedule`: [`ScheduleView`] — per slot id, hash, validity,
//!   who set it, and the sync status (pending with attempts and next retry, acked with
//!   hash, failed with the edge's reason).
//!
//! # Layout
//! - `state`: [`ScheduleSync`], one device's state machine, and its [`SyncConfig`].
//! - stored records ([`DeviceSchedules`], …) are `shiki_cloud_model::schedule`.
//! - `effects`: what a step asks of the device actor ([`SyncEffects`]), [`SetError`].
//! - `fleet`: [`FleetScheduler`] (yearly push cron, New Year check), [`plan`].
//! - `view`: the API DTOs.
//! - `actor`: the messages, and [`FleetScheduleActor`] (one per process). Each device's
//!   [`ScheduleSync`] runs inside its `DeviceActor` (`crate::device`), which turns
//!   [`SyncEffects`] into store writes (`schedules` table, history), `schedule/set`
//!   publishes and notifier alerts.

mod actor;
mod effects;
mod fleet;
mod state;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use actor::MAX_SLEEP;
pub use actor::{FleetJobsDue, FleetScheduleActor, GetScheduleView, PutSchedule, ScheduleTick};
pub use effects::{AlertKind, ScheduleAlert, ScheduleHistory, SetError, SyncEffects};
pub use fleet::{
    DEFAULT_PUSH_CRON, FleetConfig, FleetConfigError, FleetJob, FleetPlan, FleetScheduler,
    new_year_at, next_fire, next_new_year, parse_cron, plan,
};
pub use shiki_cloud_api::{PutScheduleResponse, ScheduleView, SlotView};
pub use shiki_cloud_model::schedule::{
    DeviceSchedules, SlotChoice, SlotSync, StoredSchedule, SyncStatus,
};
pub use state::{ScheduleSync, SyncConfig};
