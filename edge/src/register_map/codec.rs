//! Registers ↔ [`PointValue`]: the pure codec of one point, its safety limits and its
//! resolution comparison.

use shiki_proto::PointValue;
use shiki_shared::resolution::same_number;

use super::{DataType, OutOfRange, PointConfig, WordOrder};

/// What a point holds on the wire: 16-bit registers or one bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    Words(Vec<u16>),
    Bit(bool),
}

/// Why a value could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("point {point:?}: expected {expected}, got {got}")]
    WrongShape {
        point: String,
        expected: String,
        got: String,
    },
    #[error("point {point:?}: raw value {raw} is not one of the enum options")]
    UnknownEnumValue { point: String, raw: u16 },
    #[error("point {point:?}: registers {words:?} decode to {value}, which is not a finite number")]
    NotFinite {
        point: String,
        words: Vec<u16>,
        value: String,
    },
    #[error("point {point:?}: {value} does not fit in a {data_type} register")]
    DoesNotFit {
        point: String,
        value: String,
        data_type: String,
    },
    #[error("point {point:?}: {value:?} is not {expected}")]
    WrongType {
        point: String,
        value: String,
        expected: String,
    },
}

/// A requested value after the safety limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Limited {
    /// Within limits (or not a numeric point).
    Within(PointValue),
    /// Outside; clamped to the limit (`on_out_of_range = "clamp"`).
    Clamped(PointValue, String),
    /// Outside; refused (`on_out_of_range = "refuse"`). Carries the reason.
    Refused(String),
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// An f32 as the f64 of its shortest decimal text.
fn shortest_f32(x: f32) -> f64 {
    if x.is_finite() {
        x.to_string().parse().unwrap_or(f64::from(x))
    } else {
        f64::from(x)
    }
}

impl PointConfig {
    fn shape_err(&self, expected: &str, got: &Raw) -> CodecError {
        CodecError::WrongShape {
            point: self.name.clone(),
            expected: expected.into(),
            got: format!("{got:?}"),
        }
    }

    fn engineering(&self, raw: f64) -> f64 {
        raw * self.scale + self.offset
    }

    /// Decode the point from its registers (exactly [`Self::width`] words) or its bit.
    pub fn decode(&self, raw: &Raw) -> Result<PointValue, CodecError> {
        let words = match (raw, self.data_type) {
            (Raw::Bit(b), DataType::Bool) => return Ok(PointValue::Bool(*b)),
            (Raw::Bit(_), _) => return Err(self.shape_err("registers", raw)),
            (Raw::Words(w), _) if w.len() == usize::from(self.width()) => w,
            (Raw::Words(_), _) => {
                return Err(self.shape_err(&format!("{} register(s)", self.width()), raw));
            }
        };
        let w0 = words[0];
        let pair = || -> u32 {
            let (hi, lo) = match self.word_order {
                WordOrder::Big => (words[0], words[1]),
                WordOrder::Little => (words[1], words[0]),
            };
            (u32::from(hi) << 16) | u32::from(lo)
        };
        let v = match self.data_type {
            DataType::Bool => return Ok(PointValue::Bool(w0 != 0)),
            DataType::Enum => {
                return self
                    .options
                    .iter()
                    .find(|(_, r)| **r == w0)
                    .map(|(label, _)| PointValue::Text(label.clone()))
                    .ok_or_else(|| CodecError::UnknownEnumValue {
                        point: self.name.clone(),
                        raw: w0,
                    });
            }
            DataType::U16 => f64::from(w0),
            DataType::I16 => f64::from(w0 as i16),
            DataType::U32 => f64::from(pair()),
            DataType::I32 => f64::from(pair() as i32),
            // The f32's own shortest decimal (7.3, not 7.300000190734863).
            DataType::F32 => shortest_f32(f32::from_bits(pair())),
        };
        // At the point's resolution: raw 244 × scale 0.1 is 24.4, not 24.400000000000002.
        let value = shiki_shared::resolution::round_to(self.engineering(v), self.resolution());
        // An f32 register holding NaN or infinity, or a scale that overflows: a reading
        // travels as JSON, which has neither, so it is an error, not a value.
        if !value.is_finite() {
            return Err(CodecError::NotFinite {
                point: self.name.clone(),
                words: words.clone(),
                value: value.to_string(),
            });
        }
        Ok(PointValue::Number(value))
    }

    /// Encode an engineering value into registers or a bit. Does not apply min/max
    /// (see [`Self::limit`]); fails when the value has the wrong type or does not fit.
    pub fn encode(&self, value: &PointValue) -> Result<Raw, CodecError> {
        let wrong = |expected: &str| CodecError::WrongType {
            point: self.name.clone(),
            value: format!("{value:?}"),
            expected: expected.into(),
        };
        match self.data_type {
            DataType::Bool => {
                let b = match value {
                    PointValue::Bool(b) => *b,
                    _ => return Err(wrong("a boolean")),
                };
                if self.kind.is_bit() {
                    Ok(Raw::Bit(b))
                } else {
                    Ok(Raw::Words(vec![u16::from(b)]))
                }
            }
            DataType::Enum => {
                let label = match value {
                    PointValue::Text(t) => t,
                    _ => return Err(wrong("an enum label")),
                };
                self.options
                    .get(label)
                    .map(|raw| Raw::Words(vec![*raw]))
                    .ok_or_else(|| wrong(&format!("one of {:?}", self.option_labels())))
            }
            _ => {
                let v = match value {
                    PointValue::Number(n) if n.is_finite() => *n,
                    _ => return Err(wrong("a finite number")),
                };
                let raw = (v - self.offset) / self.scale;
                let does_not_fit = || CodecError::DoesNotFit {
                    point: self.name.clone(),
                    value: fmt_num(v),
                    data_type: format!("{:?}", self.data_type).to_lowercase(),
                };
                let int = |lo: f64, hi: f64| -> Result<i64, CodecError> {
                    let r = raw.round();
                    if r < lo || r > hi {
                        Err(does_not_fit())
                    } else {
                        Ok(r as i64)
                    }
                };
                let split = |bits: u32| -> Vec<u16> {
                    let (hi, lo) = ((bits >> 16) as u16, bits as u16);
                    match self.word_order {
                        WordOrder::Big => vec![hi, lo],
                        WordOrder::Little => vec![lo, hi],
                    }
                };
                let words = match self.data_type {
                    DataType::U16 => vec![int(0.0, 65535.0)? as u16],
                    DataType::I16 => vec![int(-32768.0, 32767.0)? as i16 as u16],
                    DataType::U32 => split(int(0.0, 4_294_967_295.0)? as u32),
                    DataType::I32 => split(int(-2_147_483_648.0, 2_147_483_647.0)? as i32 as u32),
                    _ => {
                        let f = raw as f32;
                        if !f.is_finite() {
                            return Err(does_not_fit());
                        }
                        split(f.to_bits())
                    }
                };
                Ok(Raw::Words(words))
            }
        }
    }

    /// The smallest step the point can hold: `resolution`, else `scale` for integer types;
    /// `None` for an f32 without `resolution`.
    pub fn resolution(&self) -> Option<f64> {
        match (self.resolution, self.data_type) {
            (Some(r), _) => Some(r),
            (None, DataType::F32) => None,
            (None, _) => Some(self.scale.abs()),
        }
    }

    /// Whether two values are the same at the point's resolution: numbers by
    /// [`shiki_shared::resolution::same_number`], the rule the cloud verifies with too.
    pub fn same_value(&self, a: &PointValue, b: &PointValue) -> bool {
        match (a, b) {
            (PointValue::Number(x), PointValue::Number(y)) => {
                same_number(*x, *y, self.resolution())
            }
            _ => a == b,
        }
    }

    /// Apply the safety limits (`min`/`max`, `on_out_of_range`) to a requested value.
    pub fn limit(&self, value: PointValue) -> Limited {
        let PointValue::Number(v) = value else {
            return Limited::Within(value);
        };
        let (lo, hi) = (
            self.min.unwrap_or(f64::NEG_INFINITY),
            self.max.unwrap_or(f64::INFINITY),
        );
        // A value within half a resolution step of a limit is within it.
        let slack = self.resolution().map_or(0.0, |r| r / 2.0);
        let (bound, side) = if v < lo - slack {
            (lo, "below the minimum")
        } else if v > hi + slack {
            (hi, "above the maximum")
        } else {
            return Limited::Within(PointValue::Number(v.clamp(lo, hi)));
        };
        match self.on_out_of_range {
            OutOfRange::Clamp => Limited::Clamped(
                PointValue::Number(bound),
                format!("clamped to {}", fmt_num(bound)),
            ),
            OutOfRange::Refuse => Limited::Refused(format!(
                "refused: {} is {side} {}",
                fmt_num(v),
                fmt_num(bound)
            )),
        }
    }

    /// A desired/scheduled/default JSON value as this point's value: a boolean (or 0/1) for
    /// bool points, a label for enums, a number otherwise.
    pub fn value_from_json(&self, value: &serde_json::Value) -> Result<PointValue, CodecError> {
        let wrong = |expected: &str| CodecError::WrongType {
            point: self.name.clone(),
            value: value.to_string(),
            expected: expected.into(),
        };
        match (self.data_type, value) {
            (DataType::Bool, serde_json::Value::Bool(b)) => Ok(PointValue::Bool(*b)),
            (DataType::Bool, serde_json::Value::Number(n)) => match n.as_u64() {
                Some(0) => Ok(PointValue::Bool(false)),
                Some(1) => Ok(PointValue::Bool(true)),
                _ => Err(wrong("a boolean")),
            },
            (DataType::Bool, _) => Err(wrong("a boolean")),
            (DataType::Enum, serde_json::Value::String(s)) if self.options.contains_key(s) => {
                Ok(PointValue::Text(s.clone()))
            }
            (DataType::Enum, _) => Err(wrong(&format!("one of {:?}", self.option_labels()))),
            (_, serde_json::Value::Number(n)) => n
                .as_f64()
                .filter(|x| x.is_finite())
                .map(PointValue::Number)
                .ok_or_else(|| wrong("a finite number")),
            _ => Err(wrong("a number")),
        }
    }
}
