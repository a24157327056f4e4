//! The changes a [`Shadow`](super::Shadow) takes and what they did: [`DesiredChange`] in,
//! [`DesiredOutcome`] / [`ReportedOutcome`] with one [`KeyChange`] per key out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shiki_proto::JsonMap;

use super::compare::values_match;

/// A change of desired state, as an operator or an API key asks for it: the body of
/// `PATCH /api/v1/devices/{id}/desired`, handed unchanged to the device actor and to
/// [`Shadow::apply_desired`](super::Shadow::apply_desired). Who asked travels beside it ([`Author`](crate::Author)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredChange {
    /// Keys to set; `null` deletes a key (ends the override), as in AWS IoT.
    pub settings: JsonMap,
    /// When set, the change is refused unless the shadow is at exactly this version.
    #[serde(default)]
    pub expected_version: Option<u64>,
    /// End of the override for every key this change sets. Without it the override lasts
    /// until the next scheduled transition touching the key (or indefinitely when no
    /// schedule is active). Must lie in the future ([`ShadowError::UntilNotInFuture`](super::ShadowError::UntilNotInFuture)).
    #[serde(default, deserialize_with = "rfc3339_instant")]
    pub until: Option<DateTime<Utc>>,
    /// Free text history records with every key the change sets ("cold snap").
    #[serde(default)]
    pub comment: Option<String>,
}

impl DesiredChange {
    /// A change of `settings` with no expected version and no `until`.
    pub fn new(settings: JsonMap) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Refuse the change unless the shadow is at `version`.
    #[must_use]
    pub fn expecting(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// The overrides set by this change end at `until`.
    #[must_use]
    pub fn until(mut self, until: DateTime<Utc>) -> Self {
        self.until = Some(until);
        self
    }
}

/// One key's old and new value (`None`: absent), for history records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyChange {
    pub key: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

impl KeyChange {
    /// True when the key holds the same value as before (a desired key set again).
    pub fn is_noop(&self) -> bool {
        self.old == self.new
    }

    /// True when old and new match each other at `resolution` (see [`values_match`]; both
    /// directions, so a field added to or dropped from an object is a change).
    pub fn is_same_at(&self, resolution: Option<f64>) -> bool {
        match (&self.old, &self.new) {
            (Some(a), Some(b)) => values_match(a, b, resolution) && values_match(b, a, resolution),
            (a, b) => a == b,
        }
    }
}

/// What an accepted desired change did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredOutcome {
    /// The new desired version.
    pub version: u64,
    /// When the change was applied.
    pub at: DateTime<Utc>,
    /// Every key the change named that existed before or after it, in key order, including
    /// keys set to the value they already had (see [`KeyChange::is_noop`]).
    pub changes: Vec<KeyChange>,
}

/// What a reported update changed: only keys whose value really changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportedOutcome {
    pub changes: Vec<KeyChange>,
}

impl ReportedOutcome {
    /// True when the report changed nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// `until`: an RFC 3339 instant with its offset, or null; anything else is refused with a
/// message that shows the form (serde's own says "premature end of input" for a time
/// without a zone).
fn rfc3339_instant<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    use serde::Deserialize as _;
    use serde::de::Error as _;
    let raw: Option<String> = Option::deserialize(d)?;
    raw.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                D::Error::custom(format!(
                    "until {s:?} is not an RFC 3339 instant with an offset: write e.g. \
                     2026-12-05T18:00:00+09:00 or 2026-12-05T09:00:00Z"
                ))
            })
    })
    .transpose()
}
