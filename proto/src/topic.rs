//! Topic names: the only place in Shiki that formats or parses an MQTT topic.
//!
//! Every topic is `{prefix}/{device_id}/{channel}`; the default prefix is `shiki/v1`.
//! [`Topics::topic_for`] and [`Topics::parse`] are inverse functions:
//!
//! ```
//! use shiki_proto::{Channel, DeviceId, Topics};
//!
//! let topics = Topics::default();
//! let dev = DeviceId::new("plant-01").unwrap();
//! let t = topics.topic_for(&dev, &Channel::ShadowDelta);
//! assert_eq!(t, "shiki/v1/plant-01/shadow/delta");
//! assert_eq!(topics.parse(&t).unwrap(), (dev, Channel::ShadowDelta));
//! ```

use crate::{DeviceId, JobId};

/// Default topic prefix.
pub const DEFAULT_PREFIX: &str = "shiki/v1";

/// Why a topic, prefix, device id or job id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("invalid {what} {value:?}: must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    InvalidId { what: &'static str, value: String },
    #[error(
        "invalid topic prefix {0:?}: must be non-empty levels without '+', '#', NUL or empty levels, and no leading '$'"
    )]
    InvalidPrefix(String),
    #[error("topic {topic:?} does not start with prefix {prefix:?}")]
    WrongPrefix { topic: String, prefix: String },
    #[error("topic {0:?} names no known channel")]
    UnknownChannel(String),
}

/// What a topic carries, after the device id. See the topic table in `ARCHITECTURE.md`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    /// edge→cloud, QoS 1: [`crate::TelemetryBatch`].
    Telemetry,
    /// edge→cloud, QoS 1: [`crate::EventBatch`].
    Events,
    /// edge→cloud, QoS 1, retained; also the Last Will: [`crate::Status`].
    Status,
    /// edge→cloud, QoS 1, retained: [`crate::Catalog`].
    Catalog,
    /// edge→cloud, QoS 1: [`crate::ReportedUpdate`].
    ShadowReported,
    /// edge→cloud, QoS 1: [`crate::ShadowGet`].
    ShadowGet,
    /// cloud→edge, QoS 1: [`crate::ShadowDocument`], the answer to `shadow/get`.
    ShadowDocument,
    /// cloud→edge, QoS 1: [`crate::ShadowDelta`].
    ShadowDelta,
    /// cloud→edge, QoS 1: [`crate::ScheduleSet`].
    ScheduleSet,
    /// edge→cloud, QoS 1: [`crate::ScheduleAck`].
    ScheduleAck,
    /// cloud→edge, QoS 1: [`crate::JobNotify`].
    JobsNotify,
    /// edge→cloud, QoS 1: [`crate::JobUpdate`] for one job.
    JobUpdate(JobId),
}

/// Who publishes on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    EdgeToCloud,
    CloudToEdge,
}

impl Channel {
    /// The channels without parameters, in topic-table order.
    pub const FIXED: [Channel; 11] = [
        Channel::Telemetry,
        Channel::Events,
        Channel::Status,
        Channel::Catalog,
        Channel::ShadowReported,
        Channel::ShadowGet,
        Channel::ShadowDocument,
        Channel::ShadowDelta,
        Channel::ScheduleSet,
        Channel::ScheduleAck,
        Channel::JobsNotify,
    ];

    /// The kind of this channel: the channel without its job id.
    pub fn kind(&self) -> ChannelKind {
        match self {
            Channel::Telemetry => ChannelKind::Telemetry,
            Channel::Events => ChannelKind::Events,
            Channel::Status => ChannelKind::Status,
            Channel::Catalog => ChannelKind::Catalog,
            Channel::ShadowReported => ChannelKind::ShadowReported,
            Channel::ShadowGet => ChannelKind::ShadowGet,
            Channel::ShadowDocument => ChannelKind::ShadowDocument,
            Channel::ShadowDelta => ChannelKind::ShadowDelta,
            Channel::ScheduleSet => ChannelKind::ScheduleSet,
            Channel::ScheduleAck => ChannelKind::ScheduleAck,
            Channel::JobsNotify => ChannelKind::JobsNotify,
            Channel::JobUpdate(_) => ChannelKind::JobUpdate,
        }
    }

    /// The topic suffix after `{prefix}/{device_id}/`.
    pub fn suffix(&self) -> String {
        match self {
            Channel::JobUpdate(job) => format!("jobs/{job}/update"),
            fixed => fixed.kind().name().to_owned(),
        }
    }

    fn parse_suffix(s: &str) -> Option<Channel> {
        if let Some(fixed) = Channel::FIXED.iter().find(|c| c.kind().name() == s) {
            return Some(fixed.clone());
        }
        let job = s.strip_prefix("jobs/")?.strip_suffix("/update")?;
        JobId::new(job).ok().map(Channel::JobUpdate)
    }

    /// Who publishes on this channel.
    pub fn direction(&self) -> Direction {
        self.kind().direction()
    }

    /// Whether messages on this channel are published with the retain flag.
    pub fn retained(&self) -> bool {
        matches!(self, Channel::Status | Channel::Catalog)
    }
}

/// A channel without its parameters (job updates of every job are one kind): what the
/// cloud counts messages by.
///
/// ```
/// use shiki_proto::{Channel, ChannelKind, Direction, JobId};
///
/// let job = Channel::JobUpdate(JobId::new("ota-7").unwrap());
/// assert_eq!(job.kind(), ChannelKind::JobUpdate);
/// assert_eq!(job.kind().name(), "jobs/update");
/// let received: Vec<&str> = ChannelKind::ALL
///     .iter()
///     .filter(|k| k.direction() == Direction::EdgeToCloud)
///     .map(|k| k.name())
///     .collect();
/// assert_eq!(received[..3], ["telemetry", "events", "status"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKind {
    Telemetry,
    Events,
    Status,
    Catalog,
    ShadowReported,
    ShadowGet,
    ShadowDocument,
    ShadowDelta,
    ScheduleSet,
    ScheduleAck,
    JobsNotify,
    JobUpdate,
}

impl ChannelKind {
    /// Every kind, in topic-table order; a kind's position here is [`ChannelKind::index`].
    pub const ALL: [ChannelKind; 12] = [
        ChannelKind::Telemetry,
        ChannelKind::Events,
        ChannelKind::Status,
        ChannelKind::Catalog,
        ChannelKind::ShadowReported,
        ChannelKind::ShadowGet,
        ChannelKind::ShadowDocument,
        ChannelKind::ShadowDelta,
        ChannelKind::ScheduleSet,
        ChannelKind::ScheduleAck,
        ChannelKind::JobsNotify,
        ChannelKind::JobUpdate,
    ];

    /// The position of this kind in [`ChannelKind::ALL`] (an index for per-channel counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind's name, for metrics and logs: the topic suffix of a fixed channel,
    /// `jobs/update` for job updates.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Telemetry => "telemetry",
            ChannelKind::Events => "events",
            ChannelKind::Status => "status",
            ChannelKind::Catalog => "catalog",
            ChannelKind::ShadowReported => "shadow/reported",
            ChannelKind::ShadowGet => "shadow/get",
            ChannelKind::ShadowDocument => "shadow/document",
            ChannelKind::ShadowDelta => "shadow/delta",
            ChannelKind::ScheduleSet => "schedule/set",
            ChannelKind::ScheduleAck => "schedule/ack",
            ChannelKind::JobsNotify => "jobs/notify",
            ChannelKind::JobUpdate => "jobs/update",
        }
    }

    /// The topic suffix as a filter: the suffix of a fixed channel, `jobs/+/update` (every
    /// job) for job updates.
    fn filter_suffix(self) -> &'static str {
        match self {
            ChannelKind::JobUpdate => "jobs/+/update",
            fixed => fixed.name(),
        }
    }

    /// Who publishes on channels of this kind.
    pub fn direction(self) -> Direction {
        match self {
            ChannelKind::ShadowDocument
            | ChannelKind::ShadowDelta
            | ChannelKind::ScheduleSet
            | ChannelKind::JobsNotify => Direction::CloudToEdge,
            _ => Direction::EdgeToCloud,
        }
    }
}

/// Builds and parses topics under one configurable prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Topics {
    /// A topic builder with a custom prefix such as `acme/shiki/v1`.
    pub fn new(prefix: &str) -> Result<Self, TopicError> {
        let prefix = prefix.trim_end_matches('/');
        let ok = !prefix.is_empty()
            && !prefix.starts_with('$')
            && prefix
                .split('/')
                .all(|level| !level.is_empty() && !level.contains(['+', '#', '\0']));
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(TopicError::InvalidPrefix(prefix.to_owned()))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}/{device}/{channel}`.
    pub fn topic_for(&self, device: &DeviceId, channel: &Channel) -> String {
        format!("{}/{}/{}", self.prefix, device, channel.suffix())
    }

    /// The inverse of [`Topics::topic_for`].
    pub fn parse(&self, topic: &str) -> Result<(DeviceId, Channel), TopicError> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| TopicError::WrongPrefix {
                topic: topic.to_owned(),
                prefix: self.prefix.clone(),
            })?;
        let (device, suffix) = rest
            .split_once('/')
            .ok_or_else(|| TopicError::UnknownChannel(topic.to_owned()))?;
        let device = DeviceId::new(device)?;
        let channel = Channel::parse_suffix(suffix)
            .ok_or_else(|| TopicError::UnknownChannel(topic.to_owned()))?;
        Ok((device, channel))
    }

    /// The cloud's own nudge topic, `{prefix}/_cloud/nudge`. Nobody subscribes to it: with
    /// the embedded broker the cloud publishes an empty QoS 0 message there on each PUBACK,
    /// so that the broker gets our TCP ACK at once. It names no channel, so
    /// [`Topics::parse`] refuses it.
    ///
    /// ```
    /// use shiki_proto::Topics;
    ///
    /// let topics = Topics::new("acme/shiki/v1").unwrap();
    /// assert_eq!(topics.cloud_nudge(), "acme/shiki/v1/_cloud/nudge");
    /// assert!(topics.parse(&topics.cloud_nudge()).is_err());
    /// ```
    pub fn cloud_nudge(&self) -> String {
        format!("{}/_cloud/nudge", self.prefix)
    }

    /// Filter matching one channel of every device, e.g. `shiki/v1/+/telemetry`
    /// (`shiki/v1/+/jobs/+/update` for job updates).
    pub fn all_devices(&self, channel: &Channel) -> String {
        self.all_devices_of(channel.kind())
    }

    /// Filter matching one channel of one device (`jobs/+/update` for job updates).
    pub fn device_filter(&self, device: &DeviceId, channel: &Channel) -> String {
        format!(
            "{}/{}/{}",
            self.prefix,
            device,
            channel.kind().filter_suffix()
        )
    }

    /// The filters the cloud subscribes to: every edge→cloud channel of every device.
    pub fn cloud_subscriptions(&self) -> Vec<String> {
        ChannelKind::ALL
            .into_iter()
            .filter(|kind| kind.direction() == Direction::EdgeToCloud)
            .map(|kind| self.all_devices_of(kind))
            .collect()
    }

    /// The filters of what OTA jobs hear from every device: its `status` (online, the
    /// version it runs) and its `jobs/{job_id}/update`s. The session of a cluster's jobs
    /// lease subscribes to them, beside the shards' sessions.
    ///
    /// ```
    /// # use shiki_proto::Topics;
    /// assert_eq!(
    ///     Topics::default().jobs_subscriptions(),
    ///     ["shiki/v1/+/status", "shiki/v1/+/jobs/+/update"]
    /// );
    /// ```
    pub fn jobs_subscriptions(&self) -> Vec<String> {
        [ChannelKind::Status, ChannelKind::JobUpdate]
            .into_iter()
            .map(|kind| self.all_devices_of(kind))
            .collect()
    }

    /// The filters of one device's edge→cloud channels: what a cloud node that owns the
    /// device subscribes to in a cluster (each shard's session holds its devices').
    pub fn device_cloud_subscriptions(&self, device: &DeviceId) -> Vec<String> {
        ChannelKind::ALL
            .into_iter()
            .filter(|kind| kind.direction() == Direction::EdgeToCloud)
            .map(|kind| format!("{}/{device}/{}", self.prefix, kind.filter_suffix()))
            .collect()
    }

    fn all_devices_of(&self, kind: ChannelKind) -> String {
        format!("{}/+/{}", self.prefix, kind.filter_suffix())
    }

    /// The filters an edge subscribes to: every cloud→edge channel of its own id.
    pub fn edge_subscriptions(&self, device: &DeviceId) -> Vec<String> {
        Channel::FIXED
            .iter()
            .filter(|c| c.direction() == Direction::CloudToEdge)
            .map(|c| self.topic_for(device, c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::new(s).expect("valid test id")
    }

    #[test]
    fn every_channel_has_the_topic_of_the_design_table() {
        let t = Topics::default();
        let d = dev("gw-1");
        let table = [
            (Channel::Telemetry, "shiki/v1/gw-1/telemetry"),
            (Channel::Events, "shiki/v1/gw-1/events"),
            (Channel::Status, "shiki/v1/gw-1/status"),
            (Channel::Catalog, "shiki/v1/gw-1/catalog"),
            (Channel::ShadowReported, "shiki/v1/gw-1/shadow/reported"),
            (Channel::ShadowGet, "shiki/v1/gw-1/shadow/get"),
            (Channel::ShadowDocument, "shiki/v1/gw-1/shadow/document"),
            (Channel::ShadowDelta, "shiki/v1/gw-1/shadow/delta"),
            (Channel::ScheduleSet, "shiki/v1/gw-1/schedule/set"),
            (Channel::ScheduleAck, "shiki/v1/gw-1/schedule/ack"),
            (Channel::JobsNotify, "shiki/v1/gw-1/jobs/notify"),
            (
                Channel::JobUpdate(JobId::new("ota-7").expect("valid")),
                "shiki/v1/gw-1/jobs/ota-7/update",
            ),
        ];
        for (channel, topic) in table {
            assert_eq!(t.topic_for(&d, &channel), topic);
            assert_eq!(t.parse(topic).expect(topic), (d.clone(), channel));
        }
    }

    #[test]
    fn every_channel_kind_has_its_name_direction_and_place_in_the_table() {
        use Direction::{CloudToEdge as Down, EdgeToCloud as Up};
        let job = Channel::JobUpdate(JobId::new("ota-7").expect("valid"));
        let table = [
            (Channel::Telemetry, "telemetry", Up),
            (Channel::Events, "events", Up),
            (Channel::Status, "status", Up),
            (Channel::Catalog, "catalog", Up),
            (Channel::ShadowReported, "shadow/reported", Up),
            (Channel::ShadowGet, "shadow/get", Up),
            (Channel::ShadowDocument, "shadow/document", Down),
            (Channel::ShadowDelta, "shadow/delta", Down),
            (Channel::ScheduleSet, "schedule/set", Down),
            (Channel::ScheduleAck, "schedule/ack", Up),
            (Channel::JobsNotify, "jobs/notify", Down),
            (job, "jobs/update", Up),
        ];
        assert_eq!(table.len(), ChannelKind::ALL.len());
        for (i, (channel, name, direction)) in table.into_iter().enumerate() {
            let kind = channel.kind();
            assert_eq!(ChannelKind::ALL[i], kind);
            assert_eq!(kind.index(), i);
            assert_eq!(kind.name(), name);
            assert_eq!(kind.direction(), direction);
            assert_eq!(channel.direction(), direction);
        }
    }

    #[test]
    fn the_cloud_nudge_topic_sits_under_the_prefix_and_names_no_channel() {
        let table = [
            (Topics::default(), "shiki/v1/_cloud/nudge"),
            (
                Topics::new("acme/shiki/v1/").expect("valid prefix"),
                "acme/shiki/v1/_cloud/nudge",
            ),
        ];
        for (topics, nudge) in table {
            assert_eq!(topics.cloud_nudge(), nudge);
            assert!(matches!(
                topics.parse(nudge),
                Err(TopicError::UnknownChannel(_))
            ));
            let subscriptions = topics.cloud_subscriptions();
            assert!(!subscriptions.iter().any(|f| f.ends_with("/nudge")));
        }
    }

    #[test]
    fn custom_prefix_round_trips_and_trailing_slash_is_ignored() {
        let t = Topics::new("acme/shiki/v1/").expect("valid prefix");
        let d = dev("A_b-9");
        let topic = t.topic_for(&d, &Channel::Status);
        assert_eq!(topic, "acme/shiki/v1/A_b-9/status");
        assert_eq!(t.parse(&topic).expect("parses"), (d, Channel::Status));
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for p in ["", "/", "a//b", "a/+/b", "a/#", "$aws/things", "a\0"] {
            assert!(Topics::new(p).is_err(), "{p:?} accepted");
        }
    }

    #[test]
    fn foreign_and_unknown_topics_are_errors() {
        let t = Topics::default();
        for bad in [
            "other/v1/gw/telemetry",
            "shiki/v1",
            "shiki/v1/gw",
            "shiki/v1/gw/nope",
            "shiki/v1/gw/shadow/delta/extra",
            "shiki/v1/g+w/telemetry",
            "shiki/v1/gw/jobs/a+b/update",
            "shiki/v1x/gw/telemetry",
        ] {
            assert!(t.parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn one_devices_cloud_subscriptions_are_the_fleet_filters_with_its_id() {
        let t = Topics::default();
        let mine = t.device_cloud_subscriptions(&dev("gw-7"));
        let fleet: Vec<String> = t
            .cloud_subscriptions()
            .into_iter()
            .map(|f| f.replacen("/+/", "/gw-7/", 1))
            .collect();
        assert_eq!(mine, fleet);
        // Every topic of the device's own edge→cloud traffic matches one of them, and
        // nothing of another device's.
        for filter in &mine {
            assert!(filter.starts_with("shiki/v1/gw-7/"), "{filter}");
        }
    }

    #[test]
    fn subscriptions_cover_each_direction() {
        let t = Topics::default();
        assert_eq!(
            t.cloud_subscriptions(),
            vec![
                "shiki/v1/+/telemetry",
                "shiki/v1/+/events",
                "shiki/v1/+/status",
                "shiki/v1/+/catalog",
                "shiki/v1/+/shadow/reported",
                "shiki/v1/+/shadow/get",
                "shiki/v1/+/schedule/ack",
                "shiki/v1/+/jobs/+/update"
            ]
        );
        let edge = t.edge_subscriptions(&dev("gw"));
        assert_eq!(
            edge,
            vec![
                "shiki/v1/gw/shadow/document",
                "shiki/v1/gw/shadow/delta",
                "shiki/v1/gw/schedule/set",
                "shiki/v1/gw/jobs/notify"
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_inverts_topic_for(id in "[A-Za-z0-9_-]{1,64}", job in "[A-Za-z0-9_-]{1,64}", idx in 0usize..12) {
            let t = Topics::default();
            let d = DeviceId::new(id).expect("regex matches the id alphabet");
            let channel = if idx < 11 { Channel::FIXED[idx].clone() } else { Channel::JobUpdate(JobId::new(job).expect("valid")) };
            let topic = t.topic_for(&d, &channel);
            proptest::prop_assert_eq!(t.parse(&topic).expect("round trip"), (d, channel));
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = Topics::default().parse(&s);
        }
    }
}
