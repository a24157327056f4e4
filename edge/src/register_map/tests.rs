use std::collections::BTreeMap;

use shiki_proto::{PointRole, PointValue, ValueKind};

use super::*;

fn point(name: &str, kind: RegisterKind, address: u16, data_type: DataType) -> PointConfig {
    PointConfig {
        name: name.into(),
        kind,
        address,
        data_type,
        word_order: WordOrder::Big,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        writable: false,
        min: None,
        max: None,
        on_out_of_range: OutOfRange::Clamp,
        unit_id: None,
        options: BTreeMap::new(),
        resolution: None,
        description: None,
    }
}

fn config(points: Vec<PointConfig>) -> PlcConfig {
    let mut c = PlcConfig::from_config_toml("[plc]\naddress = \"127.0.0.1:502\"\n")
        .expect("minimal config parses");
    c.points = points;
    c
}

fn words(w: &[u16]) -> Raw {
    Raw::Words(w.to_vec())
}

#[test]
fn decodes_and_encodes_every_type_and_word_order() {
    use DataType::*;
    let cases: Vec<(DataType, WordOrder, Vec<u16>, f64)> = vec![
        (U16, WordOrder::Big, vec![65535], 65535.0),
        (I16, WordOrder::Big, vec![0xFFFE], -2.0),
        (I16, WordOrder::Big, vec![0x8000], -32768.0),
        (U32, WordOrder::Big, vec![0x0001, 0x0002], 65538.0),
        (U32, WordOrder::Little, vec![0x0002, 0x0001], 65538.0),
        (I32, WordOrder::Big, vec![0xFFFF, 0xFFFF], -1.0),
        (I32, WordOrder::Little, vec![0xFFFE, 0xFFFF], -2.0),
        (I32, WordOrder::Big, vec![0xFFFE, 0x7960], -100_000.0),
        (F32, WordOrder::Big, vec![0x4148, 0x0000], 12.5),
        (F32, WordOrder::Little, vec![0x0000, 0x4148], 12.5),
        (F32, WordOrder::Big, vec![0xC148, 0x0000], -12.5),
    ];
    for (t, order, regs, value) in cases {
        let mut p = point("p", RegisterKind::Holding, 0, t);
        p.word_order = order;
        let decoded = p.decode(&words(&regs)).expect("decodes");
        assert_eq!(
            decoded,
            PointValue::Number(value),
            "{t:?} {order:?} {regs:?}"
        );
        assert_eq!(
            p.encode(&decoded).expect("encodes"),
            words(&regs),
            "{t:?} {order:?}"
        );
    }
}

#[test]
fn scale_and_offset_round_trip_including_negative_values() {
    let mut p = point("t", RegisterKind::Input, 0, DataType::I16);
    p.scale = 0.1;
    p.offset = -40.0;
    for v in [-40.0, -12.3, 0.0, 7.0, 99.9] {
        let raw = p.encode(&PointValue::Number(v)).expect("encodes");
        let PointValue::Number(back) = p.decode(&raw).expect("decodes") else {
            panic!("not a number")
        };
        assert!((back - v).abs() < 1e-9, "{v} came back as {back}");
    }
    // 7.0 °C with scale 0.1 is raw 70.
    let mut sp = point("sp", RegisterKind::Holding, 1, DataType::I16);
    sp.scale = 0.1;
    assert_eq!(sp.encode(&PointValue::Number(7.0)), Ok(words(&[70])));
    assert_eq!(
        sp.encode(&PointValue::Number(-5.5)),
        Ok(words(&[(-55i16) as u16]))
    );
}

#[test]
fn values_that_do_not_fit_or_have_the_wrong_type_are_errors() {
    let p = point("u", RegisterKind::Holding, 0, DataType::U16);
    assert!(matches!(
        p.encode(&PointValue::Number(-1.0)),
        Err(CodecError::DoesNotFit { .. })
    ));
    assert!(matches!(
        p.encode(&PointValue::Number(70000.0)),
        Err(CodecError::DoesNotFit { .. })
    ));
    assert!(matches!(
        p.encode(&PointValue::Bool(true)),
        Err(CodecError::WrongType { .. })
    ));
    assert!(matches!(
        p.encode(&PointValue::Number(f64::NAN)),
        Err(CodecError::WrongType { .. })
    ));
    assert!(matches!(
        p.decode(&words(&[1, 2])),
        Err(CodecError::WrongShape { .. })
    ));
}

#[test]
fn bools_live_in_bits_or_registers() {
    let coil = point("c", RegisterKind::Coil, 0, DataType::Bool);
    assert_eq!(coil.decode(&Raw::Bit(true)), Ok(PointValue::Bool(true)));
    assert_eq!(coil.encode(&PointValue::Bool(false)), Ok(Raw::Bit(false)));
    let reg = point("r", RegisterKind::Holding, 0, DataType::Bool);
    assert_eq!(reg.decode(&words(&[7])), Ok(PointValue::Bool(true)));
    assert_eq!(reg.encode(&PointValue::Bool(true)), Ok(words(&[1])));
}

#[test]
fn enum_maps_labels_and_rejects_unknown_raw_values() {
    let mut p = point("mode", RegisterKind::Holding, 0, DataType::Enum);
    p.options = BTreeMap::from([("heating".into(), 1), ("cooling".into(), 0)]);
    assert_eq!(
        p.decode(&words(&[1])),
        Ok(PointValue::Text("heating".into()))
    );
    assert_eq!(p.encode(&PointValue::from("cooling")), Ok(words(&[0])));
    assert_eq!(
        p.decode(&words(&[7])),
        Err(CodecError::UnknownEnumValue {
            point: "mode".into(),
            raw: 7
        })
    );
    assert!(p.encode(&PointValue::from("auto")).is_err());
    assert_eq!(p.option_labels(), vec!["cooling", "heating"]);
}

#[test]
fn limits_clamp_or_refuse_and_compare_at_resolution() {
    let mut p = point("sp", RegisterKind::Holding, 1, DataType::I16);
    p.scale = 0.1;
    p.writable = true;
    p.min = Some(5.0);
    p.max = Some(12.0);
    assert_eq!(
        p.limit(PointValue::Number(14.0)),
        Limited::Clamped(PointValue::Number(12.0), "clamped to 12.0".into())
    );
    assert_eq!(
        p.limit(PointValue::Number(7.0)),
        Limited::Within(PointValue::Number(7.0))
    );
    assert_eq!(
        p.limit(PointValue::Number(12.04)),
        Limited::Within(PointValue::Number(12.0))
    );
    p.on_out_of_range = OutOfRange::Refuse;
    assert_eq!(
        p.limit(PointValue::Number(4.0)),
        Limited::Refused("refused: 4.0 is below the minimum 5.0".into())
    );
    assert!(p.same_value(&PointValue::Number(7.0), &PointValue::Number(7.04)));
    assert!(p.same_value(&PointValue::Number(0.1 + 0.2), &PointValue::Number(0.3)));
    assert!(!p.same_value(&PointValue::Number(7.0), &PointValue::Number(7.1)));
}

#[test]
fn an_f32_point_without_resolution_is_the_same_value_on_the_edge_and_in_the_cloud() {
    let mut p = point("sp", RegisterKind::Holding, 0, DataType::F32);
    p.writable = true;
    assert_eq!(p.resolution(), None);
    let desired = PointValue::Number(7.3);
    let read_back = p
        .decode(&p.encode(&desired).expect("7.3 fits an f32"))
        .expect("decodes");
    let PointValue::Number(held) = read_back else {
        panic!("a number point decodes to a number")
    };
    // The f32 holds 7.300000190734863; the edge reads it at the f32's own precision.
    assert_ne!(f64::from(7.3_f32), 7.3);
    assert_eq!(held, 7.3, "decoded as the f32's shortest decimal");
    assert!(p.same_value(&desired, &read_back));
    // What the cloud compares: the catalog's resolution for this point, same rule.
    assert!(shiki_shared::resolution::same_number(
        7.3,
        held,
        p.resolution()
    ));
    assert!(!p.same_value(&desired, &PointValue::Number(7.31)));
}

#[test]
fn decoded_values_are_at_the_point_resolution() {
    let mut p = point("supply_c", RegisterKind::Input, 0, DataType::I16);
    p.scale = 0.1;
    for (raw, text) in [
        (244u16, "24.4"),
        (74, "7.4"),
        (3, "0.3"),
        ((-123i16) as u16, "-12.3"),
    ] {
        let PointValue::Number(v) = p.decode(&Raw::Words(vec![raw])).expect("decodes") else {
            panic!("a number")
        };
        assert_eq!(v.to_string(), text, "raw {raw}");
    }
    let mut f = point("flow", RegisterKind::Input, 0, DataType::F32);
    f.resolution = Some(0.01);
    let bits = 18.634_f32.to_bits();
    let PointValue::Number(v) = f
        .decode(&Raw::Words(vec![(bits >> 16) as u16, bits as u16]))
        .expect("decodes")
    else {
        panic!("a number")
    };
    assert_eq!(v.to_string(), "18.63");
}

#[test]
fn validation_names_the_bad_point() {
    let ok = point("a", RegisterKind::Holding, 0, DataType::U16);
    let cases: Vec<(Vec<PointConfig>, &str)> = vec![
        (
            vec![ok.clone(), ok.clone()],
            "point name \"a\" is used twice",
        ),
        (
            vec![ok.clone(), {
                let mut b = point("b", RegisterKind::Holding, 0, DataType::U32);
                b.address = 0;
                b
            }],
            "points \"a\" and \"b\" overlap",
        ),
        (
            vec![{
                let mut b = point("b", RegisterKind::Input, 0, DataType::U16);
                b.writable = true;
                b
            }],
            "point \"b\": input points cannot be writable",
        ),
        (
            vec![{
                let mut b = point("b", RegisterKind::Holding, 0, DataType::U16);
                b.min = Some(10.0);
                b.max = Some(5.0);
                b
            }],
            "point \"b\": min 10 is greater than max 5",
        ),
        (
            vec![{
                let mut b = point("b", RegisterKind::Holding, 0, DataType::U16);
                b.writable = true;
                b
            }],
            "point \"b\": writable numeric points need min and max",
        ),
        (
            vec![point("b", RegisterKind::Holding, 0, DataType::Enum)],
            "point \"b\": type = \"enum\" needs options",
        ),
        (
            vec![point("b", RegisterKind::Coil, 0, DataType::U16)],
            "point \"b\": coils and discrete inputs hold type = \"bool\" only",
        ),
        (
            vec![point("b", RegisterKind::Holding, 65535, DataType::F32)],
            "point \"b\": address runs past 65535",
        ),
    ];
    for (points, expected) in cases {
        let err = RegisterMap::new(config(points))
            .expect_err(expected)
            .to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
    // The same address in different tables or unit ids does not overlap.
    let mut other_unit = ok.clone();
    other_unit.name = "b".into();
    other_unit.unit_id = Some(2);
    let mut coil = point("c", RegisterKind::Coil, 0, DataType::Bool);
    coil.writable = true;
    RegisterMap::new(config(vec![ok, other_unit, coil])).expect("valid");
}

#[test]
fn reads_are_grouped_per_unit_and_table_within_limits_and_gaps() {
    let mut points = vec![
        point("h0", RegisterKind::Holding, 0, DataType::U16),
        point("h1", RegisterKind::Holding, 1, DataType::F32),
        point("h_gap", RegisterKind::Holding, 10, DataType::U16), // gap 7 from 3
        point("h_far", RegisterKind::Holding, 30, DataType::U16), // gap 19: new request
        point("i0", RegisterKind::Input, 0, DataType::U16),
        point("c0", RegisterKind::Coil, 5, DataType::Bool),
        point("c1", RegisterKind::Coil, 1999, DataType::Bool),
        point("c2", RegisterKind::Coil, 2005, DataType::Bool), // gap 5: merged with c1
    ];
    let mut u2 = point("u2", RegisterKind::Holding, 0, DataType::U16);
    u2.unit_id = Some(2);
    points.push(u2);
    let plan = plan_reads(&points, 1, 8);
    let summary: Vec<(u8, RegisterKind, u16, u16, Vec<usize>)> = plan
        .iter()
        .map(|r| (r.unit_id, r.kind, r.start, r.count, r.points.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, RegisterKind::Holding, 0, 11, vec![0, 1, 2]),
            (1, RegisterKind::Holding, 30, 1, vec![3]),
            (1, RegisterKind::Input, 0, 1, vec![4]),
            (1, RegisterKind::Coil, 5, 1, vec![5]),
            (1, RegisterKind::Coil, 1999, 7, vec![6, 7]),
            (2, RegisterKind::Holding, 0, 1, vec![8]),
        ]
    );
    // With no gap allowed only adjacent points merge.
    assert_eq!(plan_reads(&points[..3], 1, 0).len(), 2);
    // 125-register limit.
    let many: Vec<PointConfig> = (0..130u16)
        .map(|i| point(&format!("p{i}"), RegisterKind::Input, i, DataType::U16))
        .collect();
    let plan = plan_reads(&many, 1, 8);
    assert_eq!(
        plan.iter().map(|r| r.count).collect::<Vec<_>>(),
        vec![125, 5]
    );
    assert_eq!(plan[0].describe(), "input register 30001..30125 (unit 1)");
    // 2000-bit limit.
    let bits: Vec<PointConfig> = (0..2001u16)
        .map(|i| point(&format!("b{i}"), RegisterKind::Discrete, i, DataType::Bool))
        .collect();
    let plan = plan_reads(&bits, 1, 8);
    assert_eq!(
        plan.iter().map(|r| r.count).collect::<Vec<_>>(),
        vec![2000, 1]
    );
}

#[test]
fn registers_are_described_in_the_4xxxx_convention() {
    assert_eq!(RegisterKind::Holding.describe(11), "holding register 40012");
    assert_eq!(RegisterKind::Input.describe(0), "input register 30001");
    assert_eq!(RegisterKind::Coil.describe(0), "coil 00001");
    assert_eq!(RegisterKind::Discrete.describe(9), "discrete input 10010");
    assert_eq!(
        RegisterKind::Holding.describe(9999),
        "holding register 410000"
    );
}

#[test]
fn example_config_plc_section_parses_and_validates() {
    let text = include_str!("../../../deploy/edge.example.toml");
    let map = RegisterMap::from_config_toml(text).expect("deploy/edge.example.toml [plc] is valid");
    assert_eq!(
        map.config().endpoint(),
        Endpoint::Tcp("127.0.0.1:5020".into())
    );
    for name in [
        "run",
        "mode",
        "chw_setpoint_c",
        "hw_setpoint_c",
        "saving",
        "demand_limit_pct",
        "supply_c",
        "return_c",
        "outdoor_c",
        "running",
        "alarm_code",
        "gas_m3h",
    ] {
        assert!(map.point(name).is_some(), "default map lacks {name}");
    }
    let catalog = map.catalog();
    let sp = catalog.point("chw_setpoint_c").expect("in catalog");
    assert_eq!(sp.role, PointRole::Setting);
    assert_eq!(
        (sp.min, sp.max, sp.resolution),
        (Some(5.0), Some(12.0), Some(0.1))
    );
    let mode = catalog.point("mode").expect("in catalog");
    assert_eq!(mode.kind, ValueKind::Enum);
    assert_eq!(mode.options, vec!["cooling", "heating"]);
    assert_eq!(
        catalog.point("supply_c").map(|p| p.role),
        Some(PointRole::Reading)
    );
    // Four tables, one request each.
    assert_eq!(map.plan_reads().len(), 4);
}

#[test]
fn serial_addresses_select_rtu() {
    let mut c = config(vec![]);
    c.address = "/dev/ttyUSB0".into();
    assert_eq!(c.endpoint(), Endpoint::Rtu("/dev/ttyUSB0".into()));
    c.address = "plc.local:502".into();
    assert_eq!(c.endpoint(), Endpoint::Tcp("plc.local:502".into()));
}

#[test]
fn docs_points_md_lists_the_default_map() {
    let map = RegisterMap::from_config_toml(include_str!("../../../deploy/edge.example.toml"))
        .expect("valid");
    let table = points_table(&map);
    let doc = include_str!("../../../docs/points.md");
    assert!(
        doc.contains(&table),
        "docs/points.md is out of date; its table should be:\n{table}"
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn data_type() -> impl Strategy<Value = DataType> {
        prop_oneof![
            Just(DataType::U16),
            Just(DataType::I16),
            Just(DataType::U32),
            Just(DataType::I32),
            Just(DataType::F32),
        ]
    }

    proptest! {
        /// Any registers a PLC sends decode and encode back to the same registers
        /// (for every type, word order and a decimal scale/offset).
        #[test]
        fn registers_round_trip_through_engineering_values(
            t in data_type(),
            little in any::<bool>(),
            w0 in any::<u16>(),
            w1 in any::<u16>(),
            scaled in any::<bool>(),
        ) {
            let mut p = point("p", RegisterKind::Holding, 0, t);
            p.word_order = if little { WordOrder::Little } else { WordOrder::Big };
            if scaled && t != DataType::F32 {
                p.scale = 0.1;
                p.offset = -40.0;
            }
            let words = if p.width() == 2 { vec![w0, w1] } else { vec![w0] };
            let raw = Raw::Words(words);
            // NaN and infinity (f32 only here) are decode errors: JSON cannot carry them.
            let value = match p.decode(&raw) {
                Err(CodecError::NotFinite { .. }) if t == DataType::F32 => {
                    return Err(TestCaseError::reject("not a finite f32"));
                }
                decoded => decoded.expect("any other registers decode"),
            };
            prop_assert_eq!(p.encode(&value), Ok(raw));
        }
    }
}

/// Found by the `register_map` fuzz target: an f32 register holding NaN or infinity, or a
/// scale that overflows, decoded to a non-finite number; the sample holding it was written
/// as JSON `null` and the whole sample was then skipped as corrupt by the uplink. Such a
/// reading is a decode error of that point (an error of the poll), never a value.
#[test]
fn a_register_value_json_cannot_carry_is_a_decode_error() {
    let f32_point = point("f", RegisterKind::Holding, 0, DataType::F32);
    for w in [[0x7fc0, 0x0000], [0x7f80, 0x0000], [0xff80, 0x0000]] {
        match f32_point.decode(&words(&w)) {
            Err(CodecError::NotFinite { point, words, .. }) => {
                assert_eq!(point, "f");
                assert_eq!(words, w.to_vec());
            }
            other => panic!("{w:04x?} decoded as {other:?}"),
        }
    }
    let mut huge = point("u", RegisterKind::Input, 0, DataType::U32);
    huge.scale = 1e300;
    assert!(matches!(
        huge.decode(&words(&[0xffff, 0xffff])),
        Err(CodecError::NotFinite { .. })
    ));
    // The fuzzer's input: a subnormal resolution no longer turns a finite value infinite.
    let mut tiny = point("t", RegisterKind::Input, 0, DataType::U16);
    tiny.offset = -7.343562278240081e211;
    tiny.resolution = Some(2.9839e-319);
    assert_eq!(
        tiny.decode(&words(&[0])),
        Ok(PointValue::Number(-7.343562278240081e211))
    );
}

/// Found by fuzzing (`fuzz/fuzz_targets/register_map.rs`): with scale 0.1 and offset
/// −273.15 (kelvin), readings were rounded to tenths away from the register's grid, so a
/// value written back read as another and a write never verified.
#[test]
fn an_offset_off_the_resolution_is_refused_and_a_step_that_divides_it_round_trips() {
    let mut kelvin = point("k", RegisterKind::Holding, 0, DataType::U16);
    kelvin.scale = 0.1;
    kelvin.offset = -273.15;
    let err = RegisterMap::new(config(vec![kelvin.clone()]))
        .expect_err("offset off the 0.1 grid")
        .to_string();
    assert!(
        err.contains("offset -273.15 is not a multiple of the resolution 0.1")
            && err.contains("resolution = 0.05"),
        "{err}"
    );
    kelvin.resolution = Some(0.05);
    RegisterMap::new(config(vec![kelvin.clone()])).expect("0.05 divides both");
    for raw in [0u16, 1, 2731, 2980, 65535] {
        let read = kelvin.decode(&words(&[raw])).expect("decodes");
        let written = kelvin.encode(&read).expect("encodes");
        assert_eq!(written, words(&[raw]), "raw {raw} read as {read:?}");
    }
    // Scale 2, offset 1 (the fuzzer's input): the default resolution (the scale) is refused.
    let mut odd = point("o", RegisterKind::Holding, 0, DataType::U16);
    odd.scale = 2.0;
    odd.offset = 1.0;
    assert!(RegisterMap::new(config(vec![odd.clone()])).is_err());
    odd.resolution = Some(1.0);
    RegisterMap::new(config(vec![odd])).expect("1 divides both");
}
