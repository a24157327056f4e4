//! Messages that cross actor boundaries inside `shiki-edge`.
//!
//! Actors hold `Recipient<Msg>` of these types, never `Addr<ConcreteActor>`, so each actor
//! depends on messages only and tests can stand in for any peer.
//!
//! ```text
//! PlcLink ──Readings──▶ Control, Telemetry
//! Control ──WritePoint──▶ PlcLink (answers the value read back)
//! Shadow  ──SetOverrides──▶ Control        ScheduleActor ──ScheduleSettings──▶ Control
//! Control ──ControlReport──▶ Shadow ──PublishReported──▶ Uplink (shadow/reported)
//! PlcLink, Control, ScheduleActor ──RecordEvent──▶ Telemetry, which appends it to the
//!         outbox (seq assigned, committed to redb); the Uplink then reads and sends it
//! Uplink ──CloudMessage, LinkUp, ReportedDelivered──▶ Shadow   (see "Uplink ⇄ Shadow")
//! ```
//!
//! The schedule's own messages (`ScheduleSetReceived`, `PublishScheduleAck`) are in
//! `crate::schedule`; OTA's (`JobsReceived`: Uplink → Ota, `PublishJobUpdate`: Ota →
//! Uplink, `StoreOpened` for the trial's `Health` actor) in `crate::ota`.

use std::collections::BTreeMap;

use actix::Message;
use chrono::{DateTime, Utc};
use shiki_proto::{EventKind, ExpiredOverride, PointValue, SettingStatus, Severity};

/// One poll of the PLC: every point that could be read, by name, plus what failed.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct Readings {
    pub ts: DateTime<Utc>,
    pub values: BTreeMap<String, PointValue>,
    /// Points that could not be read this poll, with the cause (for a person).
    pub errors: BTreeMap<String, String>,
}

/// Why a PLC write did not land.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    #[error("no such point {0:?}")]
    UnknownPoint(String),
    #[error("point {0:?} is read-only")]
    ReadOnly(String),
    #[error("value {value} for {point:?} is invalid: {reason}")]
    InvalidValue {
        point: String,
        value: String,
        reason: String,
    },
    /// The PLC answered with a Modbus exception, e.g. "exception 0x02 (illegal data address)".
    #[error("PLC refused: {0}")]
    Refused(String),
    /// The PLC answered with an exception that says it is busy or failing now (0x04,
    /// 0x05, 0x06, 0x0A, 0x0B); the write is retried.
    #[error("PLC busy or failing: {0}")]
    Busy(String),
    /// Timeout, lost connection, or I/O error; the write may be retried.
    #[error("PLC unreachable: {0}")]
    Link(String),
}

/// Write one point and read it back. The answer is the value the PLC holds afterwards.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "Result<PointValue, WriteError>")]
pub struct WritePoint {
    pub name: String,
    pub value: PointValue,
}

/// One operator override from desired state.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub value: serde_json::Value,
    /// End of the override; `None` means until the next scheduled transition touching
    /// the setting (or indefinitely when no schedule is active).
    pub until: Option<DateTime<Utc>>,
    /// When the operator set it (desired metadata timestamp).
    pub set_at: DateTime<Utc>,
}

/// The complete set of operator overrides from the desired document (replaces the previous set).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct SetOverrides {
    pub desired_version: u64,
    pub overrides: BTreeMap<String, Override>,
}

/// One setting as the yearly schedule has it now.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledValue {
    pub value: serde_json::Value,
    pub since: DateTime<Utc>,
    /// The next scheduled transition that touches this setting, if any.
    pub next_change: Option<DateTime<Utc>>,
}

/// The settings the schedule has in force now (replaces the previous set). Sent at start-up,
/// at every transition, and when the active schedule changes.
#[derive(Debug, Clone, Default, PartialEq, Message)]
#[rtype(result = "()")]
pub struct ScheduleSettings {
    /// `None` when no schedule is active.
    pub schedule: Option<shiki_proto::ActiveSchedule>,
    pub settings: BTreeMap<String, ScheduledValue>,
    /// The edge's clock reads an implausible time (`shiki_shared::clock::plausible`: an RTC
    /// reset to 1970), so the schedule cannot tell what is in force: `settings` are those last
    /// in force (none after a start-up at such a time) and Control writes no
    /// `[control.defaults]` value for a key they lack; the PLC keeps what it holds.
    pub held: bool,
}

/// What the PLC really holds for each setting, read back after writing, and why.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct ControlReport {
    pub ts: DateTime<Utc>,
    /// Setting name → value read back from the PLC.
    pub reported: BTreeMap<String, serde_json::Value>,
    pub settings: BTreeMap<String, SettingStatus>,
    /// The desired version whose overrides this report reflects.
    pub applied_version: Option<u64>,
    /// Overrides that ended since the last report.
    pub expired: Vec<ExpiredOverride>,
    pub schedule: Option<shiki_proto::ActiveSchedule>,
}

/// Record an event. Telemetry takes it and appends it to the outbox, which assigns its `seq`
/// and commits it; the uplink sends it from there.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct RecordEvent {
    pub ts: DateTime<Utc>,
    pub kind: EventKind,
    pub severity: Severity,
    pub message: String,
    pub data: serde_json::Value,
}

impl RecordEvent {
    pub fn new(
        ts: DateTime<Utc>,
        kind: EventKind,
        severity: Severity,
        message: String,
        data: serde_json::Value,
    ) -> Self {
        Self {
            ts,
            kind,
            severity,
            message,
            data,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Uplink ⇄ Shadow
//
// ```text
// Uplink ──CloudMessage──▶ Shadow        (shadow/document, shadow/delta as received)
// Uplink ──LinkUp──▶ Shadow              (after every connect: re-publish the latest report)
// Shadow ──PublishReported──▶ Uplink     (publishes shadow/reported when connected)
// Uplink ──ReportedDelivered──▶ Shadow   (PUBACK of that report: its expiries reached the cloud)
// ```

/// A message from the cloud on one of the edge's subscriptions, undecoded.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct CloudMessage {
    pub channel: shiki_proto::Channel,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The uplink has (re)connected to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct LinkUp;

/// Publish a reported-state update; `generation` identifies it in [`ReportedDelivered`].
/// Dropped when the link is down: the shadow re-sends its latest report on [`LinkUp`].
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct PublishReported {
    pub generation: u64,
    pub update: shiki_proto::ReportedUpdate,
}

/// The broker acknowledged the reported update of `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ReportedDelivered {
    pub generation: u64,
}

/// Stop the receiving actor (used by the composition root at shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Stop;
