//! Checking a sample's JSON without building the [`Sample`].
//!
//! The cloud stores each telemetry sample as the JSON text it received, once that text is
//! known to decode as a [`Sample`]. Building the `Sample` to find out allocates its value map
//! and every key and label in it, and is then thrown away; [`Sample::check_json`] walks the
//! same text with visitors that keep nothing. It accepts exactly what decoding accepts (the
//! differential tests hold it to that), so what the store keeps always decodes later.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::Sample;

impl Sample {
    /// The `seq` of the sample `json` holds, or the error decoding it as a [`Sample`] gives;
    /// builds nothing. `Ok` exactly when `serde_json::from_str::<Sample>(json)` is `Ok`.
    pub fn check_json(json: &str) -> Result<u64, serde_json::Error> {
        Self::check_json_time(json).map(|(seq, _)| seq)
    }

    /// As [`Sample::check_json`], with the sample's `ts` too (the cloud counts samples
    /// stamped by a gateway clock that was not set).
    pub fn check_json_time(json: &str) -> Result<(u64, DateTime<Utc>), serde_json::Error> {
        serde_json::from_str::<Checked>(json).map(|c| (c.0, c.1))
    }
}

/// A sample that decodes, by its seq and time.
struct Checked(u64, DateTime<Utc>);

/// The fields of [`Sample`], as its derived decoder names them.
const FIELDS: &[&str] = &["seq", "ts", "values"];

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Seq,
    Ts,
    Values,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("Sample", FIELDS, SampleVisitor)
    }
}

struct SampleVisitor;

impl<'de> Visitor<'de> for SampleVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("struct Sample")
    }

    /// The array form `[seq, ts, values]`, which the derived decoder accepts too.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let n = seq
            .next_element::<u64>()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let ts = seq
            .next_element::<DateTime<Utc>>()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        seq.next_element::<Values>()?
            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
        Ok(Checked(n, ts))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let (mut seq, mut ts, mut values) = (None, None, false);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Seq => seq = Some(first_value::<A, u64>(&mut map, seq.is_some(), "seq")?),
                Field::Ts => {
                    ts = Some(first_value::<A, DateTime<Utc>>(
                        &mut map,
                        ts.is_some(),
                        "ts",
                    )?);
                }
                Field::Values => {
                    first_value::<A, Values>(&mut map, values, "values")?;
                    values = true;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let seq = seq.ok_or_else(|| de::Error::missing_field("seq"))?;
        let ts = ts.ok_or_else(|| de::Error::missing_field("ts"))?;
        if !values {
            return Err(de::Error::missing_field("values"));
        }
        Ok(Checked(seq, ts))
    }
}

/// The value of field `name`, or the derived decoder's error when it was `seen` before.
fn first_value<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    seen: bool,
    name: &'static str,
) -> Result<T, A::Error> {
    if seen {
        return Err(de::Error::duplicate_field(name));
    }
    map.next_value::<T>()
}

/// A map of point names to values that decodes as `BTreeMap<String, PointValue>`.
struct Values;

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ValuesVisitor)
    }
}

struct ValuesVisitor;

impl<'de> Visitor<'de> for ValuesVisitor {
    type Value = Values;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
        while map.next_key::<Name>()?.is_some() {
            map.next_value::<Value>()?;
        }
        Ok(Values)
    }
}

/// A point name: a string, as `String` decodes it.
struct Name;

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Name, E> {
                Ok(Name)
            }
        }
        d.deserialize_string(V)
    }
}

/// A point value: what [`crate::PointValue`]'s decoder accepts (a boolean, a number or a
/// string), kept nowhere.
struct Value;

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, a boolean or a string")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
                Ok(Value)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
                Ok(Value)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value, E> {
                Ok(Value)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value, E> {
                Ok(Value)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Value, E> {
                Ok(Value)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::Sample;

    /// `check_json_time` and decoding agree on `json`: both accept it with the same seq and
    /// time, or both refuse it.
    fn agree(json: &str) -> Result<(), TestCaseError> {
        let decoded = serde_json::from_str::<Sample>(json).map(|s| (s.seq, s.ts));
        let checked = Sample::check_json_time(json);
        prop_assert_eq!(
            decoded.as_ref().ok(),
            checked.as_ref().ok(),
            "decode {:?} but check {:?} for {}",
            decoded.as_ref().err().map(ToString::to_string),
            checked.as_ref().err().map(ToString::to_string),
            json
        );
        Ok(())
    }

    #[test]
    fn check_agrees_with_decoding_on_edge_cases() {
        let cases = [
            // accepted
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{}}"#,
            r#"{"seq":7,"ts":"2026-01-01T09:00:00+09:00","values":{"a":1,"b":true,"c":"x","d":-2.5}}"#,
            r#"{"values":{"a":1e3},"ts":"2026-01-01T00:00:00.123Z","seq":18446744073709551615,"extra":[1,{"x":null}]}"#,
            r#"[3,"2026-01-01T00:00:00Z",{"a":"\u00e9\n"}]"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"a":1,"a":"again"}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"\u0061":0}}"#,
            " {\"seq\" : 1 , \"ts\":\"2026-01-01T00:00:00Z\", \"values\" : { } } ",
            // refused
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"seq":1,"values":{}}"#,
            r#"{"ts":"2026-01-01T00:00:00Z","values":{}}"#,
            r#"{"seq":1,"seq":2,"ts":"2026-01-01T00:00:00Z","values":{}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","ts":"2026-01-01T00:00:00Z","values":{}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{},"values":{}}"#,
            r#"{"seq":-1,"ts":"2026-01-01T00:00:00Z","values":{}}"#,
            r#"{"seq":1.5,"ts":"2026-01-01T00:00:00Z","values":{}}"#,
            r#"{"seq":"1","ts":"2026-01-01T00:00:00Z","values":{}}"#,
            r#"{"seq":1,"ts":"yesterday","values":{}}"#,
            r#"{"seq":1,"ts":"2026-13-01T00:00:00Z","values":{}}"#,
            r#"{"seq":1,"ts":1767225600,"values":{}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":[]}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"a":null}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"a":[1]}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"a":{"b":1}}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"a":"\ud800"}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"\ud800":1}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"a":1e999}}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{"a":1}"#,
            r#"{"seq":1,"ts":"2026-01-01T00:00:00Z","values":{}} x"#,
            r#"[3,"2026-01-01T00:00:00Z"]"#,
            r#"[3,"2026-01-01T00:00:00Z",{},4]"#,
            r#"[]"#,
            "null",
            "1",
            r#""sample""#,
            "",
        ];
        for json in cases {
            agree(json).expect("check and decode agree");
        }
    }

    /// Pieces that make up near-samples: mostly valid field values, sometimes invalid ones,
    /// so that a sample is often valid but for one thing.
    fn seq() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => (0u64..=u64::MAX).prop_map(|n| n.to_string()),
            1 => Just("-1".to_owned()),
            1 => Just("1.0".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("\"5\"".to_owned()),
            1 => Just("18446744073709551616".to_owned()),
        ]
    }

    fn ts() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => Just("\"2026-11-24T05:00:00Z\"".to_owned()),
            6 => Just("\"2026-11-24T05:00:00.5+09:00\"".to_owned()),
            1 => Just("\"2026-11-24 05:00:00Z\"".to_owned()),
            1 => Just("\"2026-11-24T05:00:00\"".to_owned()),
            1 => Just("\"2026-02-30T05:00:00Z\"".to_owned()),
            1 => Just("\"\"".to_owned()),
            1 => Just("0".to_owned()),
            1 => "\"[0-9T:Z.+-]{0,30}\"",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => any::<f64>().prop_map(|v| {
                if v.is_finite() {
                    v.to_string()
                } else {
                    "1e400".to_owned()
                }
            }),
            8 => any::<i64>().prop_map(|v| v.to_string()),
            8 => any::<bool>().prop_map(|v| v.to_string()),
            8 => "\"[a-z\\\\\"]{0,6}\"",
            2 => Just("\"\\u00e9\"".to_owned()),
            2 => Just("\"\\ud83d\\ude00\"".to_owned()),
            1 => Just("\"\\udc00\"".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("[]".to_owned()),
            1 => Just("{}".to_owned()),
        ]
    }

    fn values() -> impl Strategy<Value = String> {
        prop_oneof![
            20 => prop::collection::vec(("[a-z_]{1,8}", value()), 0..5).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
            1 => Just("[]".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("{\"a\":1,}".to_owned()),
        ]
    }

    /// A sample-like text: the three fields in any order, sometimes one left out, repeated
    /// or joined by an unknown one; or the array form, of any length.
    fn near_sample() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            seq().prop_map(|v| format!("\"seq\":{v}")),
            ts().prop_map(|v| format!("\"ts\":{v}")),
            values().prop_map(|v| format!("\"values\":{v}")),
            value().prop_map(|v| format!("\"extra\":{v}")),
        ];
        let object = (
            seq(),
            ts(),
            values(),
            prop::collection::vec(field, 0..2),
            0usize..4,
            any::<prop::sample::Index>(),
        )
            .prop_map(|(s, t, v, more, drop, order)| {
                let mut fields = vec![
                    format!("\"seq\":{s}"),
                    format!("\"ts\":{t}"),
                    format!("\"values\":{v}"),
                ];
                if drop < 3 && more.is_empty() {
                    fields.remove(drop);
                }
                fields.extend(more);
                let turn = order.index(fields.len());
                fields.rotate_left(turn);
                format!("{{{}}}", fields.join(","))
            });
        let array = (seq(), ts(), values(), 0usize..=4).prop_map(|(s, t, v, keep)| {
            let all = [s, t, v, "1".to_owned()];
            format!("[{}]", all[..keep].join(","))
        });
        prop_oneof![4 => object, 1 => array]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn check_agrees_with_decoding(json in near_sample()) {
            agree(&json)?;
        }

        #[test]
        fn check_agrees_with_decoding_on_mangled_text(
            json in near_sample(),
            cut in any::<prop::sample::Index>(),
            byte in prop::sample::select(vec!["", "}", "]", ",", "\"", "\\", " ", "x", "\u{0}"]),
        ) {
            // Cut the text anywhere (on a character boundary) and splice in a stray byte.
            let mut at = cut.index(json.len() + 1);
            while !json.is_char_boundary(at) {
                at -= 1;
            }
            let mangled = format!("{}{byte}{}", &json[..at], &json[at..]);
            agree(&mangled)?;
        }
    }
}
