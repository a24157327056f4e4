//! The Shiki wire protocol: topic names, message types, versioning and codecs. No I/O.
//!
//! ```
//! use shiki_proto::{decode, encode, Channel, DeviceId, Status, Topics};
//!
//! let dev = DeviceId::new("sapporo-01").unwrap();
//! let topic = Topics::default().topic_for(&dev, &Channel::Status);
//! let will = Status::last_will("0.1.0", chrono::Utc::now());
//! let bytes = encode(&will).unwrap();
//! let back: Status = decode(&bytes).unwrap();
//! assert_eq!(back, will);
//! assert_eq!(topic, "shiki/v1/sapporo-01/status");
//! ```
//!
//! # Layout
//! - `topic`: [`Topics`] builds and parses every topic (also the cloud's own nudge topic);
//!   [`Channel`] and its [`ChannelKind`] list every channel.
//! - `id`: [`DeviceId`] and [`JobId`], validated once (`validated_id!`).
//! - `jobs`: the OTA job messages (`JobNotify`, `JobUpdate`, `JobStep`).
//! - `messages`: one type per topic, tolerant decoding (`Unknown` enum fallbacks).
//! - `compact`: the compact telemetry batch (protocol version 2: [`PointDictionary`],
//!   [`encode_compact`], [`decode_telemetry`] for either version).
//! - `codec`: [`encode`], [`encode_compressed`] and [`decode`] with the 128 KiB limit.
//!
//! Golden JSON examples of every message live in `proto/examples/`; later versions must
//! still decode them.

mod codec;
mod compact;
mod id;
mod jobs;
mod messages;
mod sample_check;
mod topic;

pub use codec::{
    CodecError, MAX_DECOMPRESSED_BYTES, MAX_MESSAGE_BYTES, check_size, compressed_len, decode,
    encode, encode_compressed, json_text,
};
pub use compact::{
    COMPACT_VERSION, CompactBatch, CompactError, PointDictionary, compact_json, decode_telemetry,
    encode_compact,
};
pub use id::{DeviceId, JobId, MAX_ID_LEN};
pub use jobs::{JobDocument, JobNotify, JobOperation, JobStatus, JobStep, JobUpdate};
pub use messages::{
    AckResult, ActiveSchedule, Catalog, Connectivity, Event, EventBatch, EventKind,
    ExpiredOverride, JsonMap, KeyMetadata, PROTOCOL_VERSION, PointInfo, PointRole, PointValue,
    ReportedState, ReportedUpdate, Sample, ScheduleAck, ScheduleSet, ScheduleSlot, SettingSource,
    SettingStatus, Severity, ShadowDelta, ShadowDocument, ShadowGet, ShadowMetadata, ShadowState,
    Status, TelemetryBatch, ValueKind,
};
pub use topic::{Channel, ChannelKind, DEFAULT_PREFIX, Direction, TopicError, Topics};
