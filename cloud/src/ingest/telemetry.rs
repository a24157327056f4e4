//! A telemetry payload into store rows, without building a [`Sample`] or copying its text.
//!
//! The payload is parsed once for the span of each sample's JSON (`RawValue`), each span is
//! checked to decode as a sample ([`Sample::check_json`], which allocates nothing), and the
//! store gets each span as a slice of the payload. The newest sample's span goes to the
//! device actor, which copies it into the buffer it keeps.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use shiki_proto::{CodecError, Sample};

use crate::device::SampleJson;
use crate::store::SampleRow;

/// Each sample of a telemetry payload ([`shiki_proto::TelemetryBatch`]) as the store keeps
/// it (its JSON text as received, once it is known to decode as a [`Sample`]), and the
/// newest sample's text, for its device actor. One bad sample refuses the whole payload.
pub(super) fn telemetry_rows(
    payload: &Bytes,
) -> Result<(Vec<SampleRow>, Option<SampleJson>), CodecError> {
    let text = match shiki_proto::json_text(payload)? {
        Cow::Borrowed(_) => payload.clone(),
        Cow::Owned(unzipped) => Bytes::from(unzipped),
    };
    let mut rows = Rows {
        text: &text,
        rows: Vec::new(),
        newest: None,
    };
    let mut de = serde_json::Deserializer::from_slice(&text);
    Batch(&mut rows)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(CodecError::Malformed)?;
    let newest = rows
        .newest
        .map(|i| SampleJson::checked(rows.rows[i].seq, rows.rows[i].json.clone()));
    Ok((rows.rows, newest))
}

/// What the samples of one payload have given so far.
struct Rows<'t> {
    /// The payload's JSON text, which the rows are slices of.
    text: &'t Bytes,
    rows: Vec<SampleRow>,
    /// Which of `rows` has the highest seq.
    newest: Option<usize>,
}

impl Rows<'_> {
    fn push(&mut self, raw: &RawValue) -> Result<(), serde_json::Error> {
        let json = raw.get();
        let seq = Sample::check_json(json)?;
        if self.newest.is_none_or(|i| seq > self.rows[i].seq) {
            self.newest = Some(self.rows.len());
        }
        self.rows.push(SampleRow {
            seq,
            json: self.text.slice_ref(json.as_bytes()),
        });
        Ok(())
    }
}

/// The batch object: its `samples`, each handed to [`Rows::push`] as it is parsed; other
/// fields (`v`, `backlog`) are skipped.
struct Batch<'r, 't>(&'r mut Rows<'t>);

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Samples,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for Batch<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Batch<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a telemetry batch")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut samples = false;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Samples if samples => return Err(de::Error::duplicate_field("samples")),
                Field::Samples => {
                    map.next_value_seed(Samples(&mut *self.0))?;
                    samples = true;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if samples {
            Ok(())
        } else {
            Err(de::Error::missing_field("samples"))
        }
    }
}

/// The `samples` array.
struct Samples<'r, 't>(&'r mut Rows<'t>);

impl<'de> DeserializeSeed<'de> for Samples<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Samples<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            self.0.push(raw).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}
