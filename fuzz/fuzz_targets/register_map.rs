//! The register-map codec (`PointConfig::decode` / `encode` / `limit`): Modbus words →
//! values and back, for the points of `deploy/edge.example.toml` and for fuzzed points
//! (any type, word order, scale, offset, resolution, options) that `RegisterMap::new`
//! accepts.
//!
//! Properties:
//! - nothing panics;
//! - a decoded number is finite: readings travel as JSON, which has no NaN or infinity;
//! - read-back is stable: the registers of a decoded value decode to the same value at the
//!   point's resolution (what the edge reads, written back, reads as the same);
//! - a requested value at the point's resolution, within its limits, encodes to registers
//!   that decode to the same value at that resolution (the edge's write check passes).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shiki_edge::register_map::{
    DataType, Limited, OutOfRange, PlcConfig, PointConfig, Raw, RegisterKind, RegisterMap,
    SerialConfig, WordOrder,
};
use shiki_proto::PointValue;
use shiki_shared::resolution::round_to;

fn example_map() -> &'static RegisterMap {
    static MAP: OnceLock<RegisterMap> = OnceLock::new();
    MAP.get_or_init(|| {
        RegisterMap::from_config_toml(include_str!("../../deploy/edge.example.toml"))
            .expect("the example config's register map is valid")
    })
}

/// A number as a person would configure it, or any f64.
#[derive(Debug, Arbitrary)]
enum Num {
    Nice(u8),
    Any(f64),
}

const NICE: [f64; 16] = [
    1.0, 0.1, 0.01, 0.5, 10.0, -1.0, 0.0, -273.15, 273.15, -40.0, 0.25, 100.0, 0.001, 2.0, -0.1,
    1e-6,
];

impl Num {
    fn get(&self) -> f64 {
        match self {
            Num::Nice(i) => NICE[usize::from(*i) % NICE.len()],
            Num::Any(x) => *x,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct FuzzPoint {
    kind: u8,
    data_type: u8,
    little: bool,
    scale: Num,
    offset: Num,
    resolution: Option<Num>,
    options: Vec<(String, u16)>,
    min: Option<Num>,
    max: Option<Num>,
    refuse: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// `Some(i)`: the example config's point `i`; `None`: `point`.
    example: Option<u8>,
    point: FuzzPoint,
    words: [u16; 2],
    bit: bool,
    value: Num,
}

fn build(p: &FuzzPoint) -> Option<PointConfig> {
    const KINDS: [RegisterKind; 4] = [
        RegisterKind::Holding,
        RegisterKind::Input,
        RegisterKind::Coil,
        RegisterKind::Discrete,
    ];
    const TYPES: [DataType; 7] = [
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::F32,
        DataType::Bool,
        DataType::Enum,
    ];
    let kind = KINDS[usize::from(p.kind) % KINDS.len()];
    let point = PointConfig {
        name: "p".into(),
        kind,
        address: 100,
        data_type: TYPES[usize::from(p.data_type) % TYPES.len()],
        word_order: if p.little {
            WordOrder::Little
        } else {
            WordOrder::Big
        },
        scale: p.scale.get(),
        offset: p.offset.get(),
        unit: None,
        writable: kind.is_writable(),
        min: p.min.as_ref().map(Num::get),
        max: p.max.as_ref().map(Num::get),
        on_out_of_range: if p.refuse {
            OutOfRange::Refuse
        } else {
            OutOfRange::Clamp
        },
        unit_id: None,
        options: p.options.iter().cloned().collect::<BTreeMap<_, _>>(),
        resolution: p.resolution.as_ref().map(Num::get),
        description: None,
    };
    let config = PlcConfig {
        address: "127.0.0.1:502".into(),
        serial: SerialConfig::default(),
        unit_id: 1,
        poll_interval: Duration::from_secs(10),
        request_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(60),
        max_gap: 8,
        points: vec![point],
    };
    let map = RegisterMap::new(config).ok()?;
    map.points().first().cloned()
}

fn raw_of(p: &PointConfig, input: &Input) -> Raw {
    if p.kind.is_bit() {
        Raw::Bit(input.bit)
    } else {
        Raw::Words(input.words[..usize::from(p.width())].to_vec())
    }
}

fn check_finite(p: &PointConfig, v: &PointValue, raw: &Raw) {
    if let PointValue::Number(n) = v {
        assert!(
            n.is_finite(),
            "point {p:?} decodes {raw:?} as {n}, which JSON cannot carry"
        );
    }
}

fuzz_target!(|input: Input| {
    let point = match input.example {
        Some(i) => {
            let points = example_map().points();
            points[usize::from(i) % points.len()].clone()
        }
        None => match build(&input.point) {
            Some(p) => p,
            None => return,
        },
    };
    let p = &point;

    // Registers → value → registers → value.
    let raw = raw_of(p, &input);
    if let Ok(v) = p.decode(&raw) {
        check_finite(p, &v, &raw);
        if let Ok(raw2) = p.encode(&v) {
            let v2 = p.decode(&raw2).unwrap_or_else(|e| {
                panic!("{p:?}: {raw:?} → {v:?} → {raw2:?} does not decode: {e}")
            });
            check_finite(p, &v2, &raw2);
            assert!(
                p.same_value(&v, &v2),
                "{p:?}: read-back unstable: {raw:?} → {v:?} → {raw2:?} → {v2:?}"
            );
        }
    }

    // A requested value → registers → value.
    let requested = match p.data_type {
        DataType::Bool => PointValue::Bool(input.bit),
        DataType::Enum => match p
            .options
            .keys()
            .nth(usize::from(input.words[0]) % p.options.len().max(1))
        {
            Some(label) => PointValue::Text(label.clone()),
            None => return,
        },
        _ => {
            let x = input.value.get();
            if !x.is_finite() {
                return;
            }
            PointValue::Number(round_to(x, p.resolution()))
        }
    };
    let value = match p.limit(requested) {
        Limited::Within(v) => v,
        Limited::Clamped(v, _) => v,
        Limited::Refused(_) => return,
    };
    let Ok(raw) = p.encode(&value) else {
        return;
    };
    let back = p
        .decode(&raw)
        .unwrap_or_else(|e| panic!("{p:?}: {value:?} → {raw:?} does not decode: {e}"));
    check_finite(p, &back, &raw);
    // Only where the value's grid is no finer than the registers' (f32: plain points).
    let comparable = match (p.data_type, p.resolution()) {
        (DataType::F32, None) => p.offset == 0.0 && p.scale.abs() >= 1e-30 && p.scale.abs() <= 1e30,
        (DataType::F32, Some(_)) => false,
        (_, Some(r)) => r >= p.scale.abs(),
        (_, None) => false,
    };
    if comparable {
        assert!(
            p.same_value(&value, &back),
            "{p:?}: write check fails: {value:?} → {raw:?} → {back:?}"
        );
    }
});
