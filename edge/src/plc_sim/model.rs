//! The simulated plant: Modbus memory laid out by a [`RegisterMap`] and a first-order
//! thermal model of an absorption chiller/heater. Plain state, no I/O.

use std::collections::BTreeMap;

use shiki_proto::PointValue;
use tokio_modbus::ExceptionCode;

use crate::register_map::{Raw, RegisterKind, RegisterMap};

/// Sim-only holding register (protocol address 99, "40100") that injects an alarm code:
/// write a non-zero code to raise an alarm (the plant stops), 0 to clear it. Not part of
/// the edge's register map.
pub const SIM_ALARM_REGISTER: u16 = 99;

/// Rated gas flow at full load, m³/h.
const RATED_GAS_M3H: f64 = 40.0;
/// Time constant of the supply water temperature, seconds.
const TAU_SUPPLY_S: f64 = 600.0;
/// Time constant of the return water temperature, seconds.
const TAU_RETURN_S: f64 = 900.0;

/// Modbus memory plus the plant's physical state.
#[derive(Debug)]
pub struct SimModel {
    map: RegisterMap,
    registers: BTreeMap<(RegisterKind, u16), u16>,
    bits: BTreeMap<(RegisterKind, u16), bool>,
    /// Lowest and highest mapped address per table; reads inside answer (gaps read 0),
    /// reads outside answer exception 0x02.
    blocks: BTreeMap<RegisterKind, (u16, u16)>,
    elapsed_s: f64,
    supply_c: f64,
    return_c: f64,
    outdoor_base_c: f64,
    outdoor_c: f64,
    gas_m3h: f64,
    run_hours: f64,
    alarm: u16,
}

impl SimModel {
    /// A plant at rest at `outdoor_c`, settings at typical values (run off, cooling,
    /// 7.0 °C / 45.0 °C setpoints, saving off, demand limit 100 %).
    pub fn new(map: RegisterMap, outdoor_c: f64) -> Self {
        let mut blocks: BTreeMap<RegisterKind, (u16, u16)> = BTreeMap::new();
        for p in map.points() {
            let last = p.address.saturating_add(p.width() - 1);
            let e = blocks.entry(p.kind).or_insert((p.address, last));
            e.0 = e.0.min(p.address);
            e.1 = e.1.max(last);
        }
        let idle = idle_temp(outdoor_c);
        let mut m = Self {
            map,
            registers: BTreeMap::new(),
            bits: BTreeMap::new(),
            blocks,
            elapsed_s: 0.0,
            supply_c: idle,
            return_c: idle,
            outdoor_base_c: outdoor_c,
            outdoor_c,
            gas_m3h: 0.0,
            run_hours: 0.0,
            alarm: 0,
        };
        for (name, v) in [
            ("run", PointValue::Bool(false)),
            ("saving", PointValue::Bool(false)),
            ("mode", PointValue::from("cooling")),
            ("chw_setpoint_c", PointValue::Number(7.0)),
            ("hw_setpoint_c", PointValue::Number(45.0)),
            ("demand_limit_pct", PointValue::Number(100.0)),
        ] {
            m.set_value(name, &v);
        }
        m.publish();
        m
    }

    pub fn map(&self) -> &RegisterMap {
        &self.map
    }

    /// Decoded value of a point, `None` when the map lacks it or it does not decode.
    pub fn value(&self, name: &str) -> Option<PointValue> {
        let p = self.map.point(name)?;
        let raw = if p.kind.is_bit() {
            Raw::Bit(
                self.bits
                    .get(&(p.kind, p.address))
                    .copied()
                    .unwrap_or(false),
            )
        } else {
            Raw::Words(
                (0..p.width())
                    .map(|i| self.register(p.kind, p.address + i).unwrap_or(0))
                    .collect(),
            )
        };
        p.decode(&raw).ok()
    }

    /// Set a point as if changed locally at the panel (no limit checks). Returns false when
    /// the point is unknown or the value does not encode.
    pub fn set_value(&mut self, name: &str, value: &PointValue) -> bool {
        let Some(p) = self.map.point(name) else {
            return false;
        };
        match p.encode(value) {
            Ok(Raw::Bit(b)) => {
                self.bits.insert((p.kind, p.address), b);
            }
            Ok(Raw::Words(w)) => {
                for (i, word) in (p.address..).zip(w) {
                    self.registers.insert((p.kind, i), word);
                }
            }
            Err(_) => return false,
        }
        true
    }

    /// Raw register of a table (holding or input).
    pub fn register(&self, kind: RegisterKind, address: u16) -> Option<u16> {
        if kind == RegisterKind::Holding && address == SIM_ALARM_REGISTER {
            return Some(self.alarm);
        }
        self.registers.get(&(kind, address)).copied()
    }

    /// Raise (non-zero) or clear (0) an alarm; a plant in alarm stops.
    pub fn set_alarm(&mut self, code: u16) {
        self.alarm = code;
        self.publish();
    }

    fn check_range(&self, kind: RegisterKind, start: u16, count: u16) -> Result<(), ExceptionCode> {
        let end = u32::from(start) + u32::from(count);
        match self.blocks.get(&kind) {
            Some((lo, hi)) if count > 0 && start >= *lo && end <= u32::from(*hi) + 1 => Ok(()),
            _ => Err(ExceptionCode::IllegalDataAddress),
        }
    }

    /// Read registers (holding or input).
    pub fn read_registers(
        &self,
        kind: RegisterKind,
        start: u16,
        count: u16,
    ) -> Result<Vec<u16>, ExceptionCode> {
        if kind == RegisterKind::Holding && start == SIM_ALARM_REGISTER && count == 1 {
            return Ok(vec![self.alarm]);
        }
        self.check_range(kind, start, count)?;
        Ok((start..start + count)
            .map(|a| self.registers.get(&(kind, a)).copied().unwrap_or(0))
            .collect())
    }

    /// Read bits (coils or discrete inputs).
    pub fn read_bits(
        &self,
        kind: RegisterKind,
        start: u16,
        count: u16,
    ) -> Result<Vec<bool>, ExceptionCode> {
        self.check_range(kind, start, count)?;
        Ok((start..start + count)
            .map(|a| self.bits.get(&(kind, a)).copied().unwrap_or(false))
            .collect())
    }

    /// Write holding registers. Every register must belong to a writable point, and every
    /// point touched must decode within its `min`/`max` (else 0x03, nothing written).
    pub fn write_registers(&mut self, start: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        if start == SIM_ALARM_REGISTER && words.len() == 1 {
            self.set_alarm(words[0]);
            return Ok(());
        }
        let mut scratch = self.registers.clone();
        for (a, w) in (start..).zip(words) {
            let owner = self.map.points().iter().find(|p| {
                p.kind == RegisterKind::Holding
                    && p.writable
                    && (p.address..p.address.saturating_add(p.width())).contains(&a)
            });
            if owner.is_none() {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            scratch.insert((RegisterKind::Holding, a), *w);
        }
        let end = u32::from(start) + words.len() as u32;
        for p in self.map.points().iter().filter(|p| {
            p.kind == RegisterKind::Holding
                && u32::from(p.address) < end
                && u32::from(p.address) + u32::from(p.width()) > u32::from(start)
        }) {
            let raw = Raw::Words(
                (0..p.width())
                    .map(|i| {
                        scratch
                            .get(&(RegisterKind::Holding, p.address + i))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect(),
            );
            match p.decode(&raw) {
                Ok(PointValue::Number(v)) => {
                    let too_low = p.min.is_some_and(|min| v < min - 1e-9);
                    let too_high = p.max.is_some_and(|max| v > max + 1e-9);
                    if too_low || too_high {
                        return Err(ExceptionCode::IllegalDataValue);
                    }
                }
                Ok(_) => {}
                Err(_) => return Err(ExceptionCode::IllegalDataValue),
            }
        }
        self.registers = scratch;
        self.publish();
        Ok(())
    }

    /// Write one coil of a writable coil point.
    pub fn write_coil(&mut self, address: u16, value: bool) -> Result<(), ExceptionCode> {
        let known = self
            .map
            .points()
            .iter()
            .any(|p| p.kind == RegisterKind::Coil && p.writable && p.address == address);
        if !known {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        self.bits.insert((RegisterKind::Coil, address), value);
        self.publish();
        Ok(())
    }

    fn bool_of(&self, name: &str) -> bool {
        matches!(self.value(name), Some(PointValue::Bool(true)))
    }

    fn number_of(&self, name: &str, default: f64) -> f64 {
        match self.value(name) {
            Some(PointValue::Number(n)) => n,
            _ => default,
        }
    }

    fn heating(&self) -> bool {
        matches!(self.value("mode"), Some(PointValue::Text(m)) if m == "heating")
    }

    /// Whether the plant is operating: run commanded and no alarm.
    pub fn running(&self) -> bool {
        self.bool_of("run") && self.alarm == 0
    }

    /// Advance the model by `dt_s` simulated seconds.
    pub fn step(&mut self, dt_s: f64) {
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return;
        }
        self.elapsed_s += dt_s;
        // Outdoor air: a daily swing of ±4 K around the starting temperature.
        let day = std::f64::consts::TAU * self.elapsed_s / 86_400.0;
        self.outdoor_c = self.outdoor_base_c + 4.0 * day.sin();
        let idle = idle_temp(self.outdoor_c);
        let heating = self.heating();
        let demand = (self.number_of("demand_limit_pct", 100.0) / 100.0).clamp(0.0, 1.0);
        let saving = self.bool_of("saving");
        let (supply_target, return_target, load) = if self.running() {
            let (sp, relax) = if heating {
                (self.number_of("hw_setpoint_c", 45.0), -2.0)
            } else {
                (self.number_of("chw_setpoint_c", 7.0), 1.0)
            };
            let sp = if saving { sp + relax } else { sp };
            // With less capacity the machine only gets part of the way to its setpoint.
            let supply = idle + (sp - idle) * (0.5 + 0.5 * demand);
            let load = ((self.outdoor_c - 18.0).abs() / 15.0).clamp(0.2, 1.0);
            let delta_t = if heating { -8.0 } else { 5.0 } * load;
            (supply, supply + delta_t, load * demand)
        } else {
            (idle, idle, 0.0)
        };
        let k = |tau: f64| 1.0 - (-dt_s / tau).exp();
        self.supply_c += (supply_target - self.supply_c) * k(TAU_SUPPLY_S);
        self.return_c += (return_target - self.return_c) * k(TAU_RETURN_S);
        self.gas_m3h = if self.running() {
            RATED_GAS_M3H * (0.2 + 0.8 * load)
        } else {
            0.0
        };
        if self.running() {
            self.run_hours += dt_s / 3600.0;
        }
        self.publish();
    }

    /// Write the physical state into the reading points.
    fn publish(&mut self) {
        let readings = [
            ("running", PointValue::Bool(self.running())),
            ("supply_c", PointValue::Number(self.supply_c)),
            ("return_c", PointValue::Number(self.return_c)),
            ("outdoor_c", PointValue::Number(self.outdoor_c)),
            ("alarm_code", PointValue::Number(f64::from(self.alarm))),
            ("gas_m3h", PointValue::Number(self.gas_m3h)),
            ("run_hours_h", PointValue::Number(self.run_hours.floor())),
        ];
        for (name, v) in readings {
            self.set_value(name, &v);
        }
    }
}

/// Water temperature of a stopped plant: drifts toward the building, part-way to outdoor.
fn idle_temp(outdoor_c: f64) -> f64 {
    22.0 + (outdoor_c - 22.0) * 0.3
}
