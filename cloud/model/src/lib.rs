//! The cloud's device model: what a device actor holds and the store keeps, with no actors
//! and no I/O, so the store and the admin API can use it without the actors.
//!
//! ```
//! use serde_json::json;
//! use shiki_cloud_model::{DesiredChange, Shadow};
//!
//! let now = chrono::Utc::now();
//! let mut shadow = Shadow::default();
//! let settings = json!({"chw_setpoint_c": 7.0}).as_object().cloned().unwrap();
//! shadow.apply_desired(DesiredChange::new(settings), now).unwrap();
//! let delta = shadow.delta_message(now).unwrap();
//! assert_eq!(delta.version, 1);
//! ```
//!
//! # Layout
//! - [`shadow`]: desired/reported/delta, versions, metadata, limits; values compared at a
//!   point's resolution with [`shiki_shared::resolution::same_number`], the edge's rule too.
//! - [`schedule`]: a device's stored yearly schedules ([`schedule::DeviceSchedules`]) with
//!   their sync status, and [`schedule::SlotChoice`].
//! - [`author`]: [`Author`], who made a settings change, as history records it.
//! - [`role`]: [`Role`], what an API caller may do (viewer < operator < admin).

pub mod author;
pub mod role;
pub mod schedule;
pub mod shadow;

pub use author::{Author, AuthorRecord};
pub use role::{Role, UnknownRole};
pub use shadow::{
    DesiredChange, DesiredOutcome, KeyChange, ReportedOutcome, Shadow, ShadowError, ShadowLimits,
    values_match,
};
