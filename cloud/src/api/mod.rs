//! The admin API (actix-web): devices, desired changes, history, telemetry, events, tokens,
//! OpenAPI document, `/healthz`, `/metrics` and the operator web page.

mod backend;
mod types;

pub use backend::{Backend, BackendError, BackendFuture, SharedBackend};
pub use types::{
    Actor, ActorKind, DesiredPatch, DeviceSummary, DeviceView, EventRow, HistoryEntry,
    KeyVerification, LatencySummary, MetricsSnapshot, NewToken, PatchOutcome, ShadowSide,
    TelemetryRow, TimeRange, TokenInfo, TokenRecord, Verification, VerificationOutcome,
};
