//! The hourly rollup of the samples a commit stored (`shiki.telemetry_hourly`: count, sum,
//! min and max of each numeric or boolean point per device and hour), added up here from
//! the samples' JSON and merged into the table with one statement. Computing it in the
//! database (`jsonb_each` over every stored row) cost three times the insert itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Count, sum, min and max of one point in one hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Stats {
    pub n: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

/// The rollup of a commit's samples, by (device, point, hour).
#[derive(Debug, Default)]
pub(super) struct Rollup {
    pub rows: BTreeMap<(String, String, DateTime<Utc>), Stats>,
}

impl Rollup {
    /// Adds the sample `json` of `device` taken at `ts`. A sample that does not decode
    /// adds nothing (the ingest let only decodable samples through).
    pub fn add(&mut self, device: &str, ts: DateTime<Utc>, json: &[u8]) {
        let Ok(body) = serde_json::from_slice::<Body<'_>>(json) else {
            return;
        };
        let hour =
            DateTime::from_timestamp(ts.timestamp().div_euclid(3600) * 3600, 0).unwrap_or(ts);
        for (point, value) in body.values {
            let Number::Value(v) = value else { continue };
            self.rows
                .entry((device.to_owned(), point.into_owned(), hour))
                .or_insert(Stats {
                    n: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                })
                .add(v);
        }
    }
}

/// What of a sample the rollup reads: its values.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    values: BTreeMap<Cow<'a, str>, Number>,
}

/// A point's value as the rollup counts it: numbers as they are, booleans as 0 or 1,
/// anything else not at all.
enum Number {
    Value(f64),
    Skip,
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberVisitor)
    }
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a point value")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        Ok(Number::Value(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        Ok(Number::Value(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        Ok(Number::Value(v as f64))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Number, E> {
        Ok(Number::Value(if v { 1.0 } else { 0.0 }))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Number, E> {
        Ok(Number::Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Number, E> {
        Ok(Number::Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Number, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Number::Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Number, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Number::Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn numbers_and_booleans_count_per_hour_and_text_does_not() {
        let at = |m: u32| {
            Utc.with_ymd_and_hms(2026, 12, 4, 10, m, 0)
                .single()
                .expect("ts")
        };
        let mut r = Rollup::default();
        r.add("gw", at(0), br#"{"seq":1,"ts":"x","values":{"supply_c":7,"running":true,"mode":"cooling","x":null}}"#);
        r.add(
            "gw",
            at(30),
            br#"{"values":{"supply_c":8.5,"running":false,"nested":{"a":[1]}}}"#,
        );
        r.add(
            "gw",
            at(0) + chrono::Duration::hours(1),
            br#"{"values":{"supply_c":-1e2}}"#,
        );
        let hour = at(0);
        assert_eq!(
            r.rows[&("gw".into(), "supply_c".into(), hour)],
            Stats {
                n: 2,
                sum: 15.5,
                min: 7.0,
                max: 8.5
            }
        );
        assert_eq!(
            r.rows[&("gw".into(), "running".into(), hour)],
            Stats {
                n: 2,
                sum: 1.0,
                min: 0.0,
                max: 1.0
            }
        );
        assert_eq!(
            r.rows[&(
                "gw".into(),
                "supply_c".into(),
                hour + chrono::Duration::hours(1)
            )]
                .sum,
            -100.0
        );
        assert_eq!(r.rows.len(), 3);
    }
}
