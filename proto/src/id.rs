//! Device and job ids: validated strings, safe in a topic level or a file name.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TopicError;

/// Longest device or job id accepted.
pub const MAX_ID_LEN: usize = 64;

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Defines a validated id newtype over `String` (alphabet of [`valid_id`]): `new`, `as_str`,
/// validating `Deserialize`, transparent `Serialize`, `Display`, `FromStr` and `AsRef<str>`.
/// `$what` names the id in [`TopicError::InvalidId`].
macro_rules! validated_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Validates and wraps a ", $what, ".")]
            pub fn new(id: impl Into<String>) -> Result<Self, TopicError> {
                let id = id.into();
                if valid_id(&id) {
                    Ok(Self(id))
                } else {
                    Err(TopicError::InvalidId {
                        what: $what,
                        value: id,
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = TopicError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_id!(
    /// A validated device id (`[A-Za-z0-9_-]{1,64}`), safe to use in a topic or a file path.
    DeviceId,
    "device id"
);

validated_id!(
    /// A validated OTA job id (same alphabet as device ids).
    JobId,
    "job id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_validated() {
        let long = "x".repeat(65);
        for bad in ["", "a/b", "a+b", "a#", "ä", " a", long.as_str(), "a.b"] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(DeviceId::new("x".repeat(64)).is_ok());
        assert!(serde_json::from_str::<DeviceId>("\"a/b\"").is_err());
    }

    #[test]
    fn device_and_job_ids_name_themselves_in_errors_and_round_trip_as_plain_strings() {
        let rule = "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'";
        let table = [
            (DeviceId::new("a/b").map(|_| ()), "device id"),
            (JobId::new("a/b").map(|_| ()), "job id"),
            ("a/b".parse::<DeviceId>().map(|_| ()), "device id"),
        ];
        for (result, what) in table {
            let e = result.expect_err("a/b is refused");
            assert_eq!(e.to_string(), format!("invalid {what} \"a/b\": {rule}"));
        }
        let job = JobId::new("ota-7").expect("valid");
        assert_eq!(job.to_string(), "ota-7");
        assert_eq!(job.as_str(), "ota-7");
        assert_eq!(
            serde_json::to_string(&job).expect("serialises"),
            "\"ota-7\""
        );
        let back: JobId = serde_json::from_str("\"ota-7\"").expect("deserialises");
        assert_eq!(back, job);
        let e = serde_json::from_str::<JobId>("\"a b\"").expect_err("refused");
        assert!(e.to_string().contains("invalid job id"), "{e}");
    }
}
