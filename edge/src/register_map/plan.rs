//! Read planning: as few Modbus read requests as possible for a point list.
//!
//! Points of the same unit id and table are sorted by address and merged greedily into one
//! request while the request stays within the protocol limit (125 registers, 2000 bits) and
//! the unmapped run between two points is at most `max_gap` registers (or bits). Reading a
//! small gap costs a few bytes; reading a large one risks "illegal data address" answers
//! from PLCs that do not map the whole range. `max_gap = 0` merges only adjacent points.

use super::{PointConfig, RegisterKind};

/// Most registers one read request may ask for (Modbus read holding/input registers).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Most bits one read request may ask for (Modbus read coils/discrete inputs).
pub const MAX_READ_BITS: u16 = 2000;

/// One planned read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub unit_id: u8,
    pub kind: RegisterKind,
    pub start: u16,
    pub count: u16,
    /// Indices (into the point list) of the points this request covers.
    pub points: Vec<usize>,
}

impl ReadRequest {
    /// For people: "holding registers 40001..40012 (unit 1)".
    pub fn describe(&self) -> String {
        let first = self.kind.describe(self.start);
        if self.count <= 1 {
            format!("{first} (unit {})", self.unit_id)
        } else {
            let last = self
                .kind
                .describe(self.start.saturating_add(self.count - 1));
            let last_num = last.rsplit(' ').next().unwrap_or_default();
            format!("{first}..{last_num} (unit {})", self.unit_id)
        }
    }
}

/// Plan grouped reads for `points`; `default_unit` applies to points without `unit_id`.
pub fn plan_reads(points: &[PointConfig], default_unit: u8, max_gap: u16) -> Vec<ReadRequest> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| {
        let p = &points[i];
        (p.unit_id.unwrap_or(default_unit), p.kind, p.address)
    });
    let mut plan: Vec<ReadRequest> = Vec::new();
    for i in order {
        let p = &points[i];
        let unit_id = p.unit_id.unwrap_or(default_unit);
        let start = u32::from(p.address);
        let end = start + u32::from(p.width());
        let limit = u32::from(if p.kind.is_bit() {
            MAX_READ_BITS
        } else {
            MAX_READ_REGISTERS
        });
        if let Some(cur) = plan.last_mut()
            && cur.unit_id == unit_id
            && cur.kind == p.kind
        {
            let cur_start = u32::from(cur.start);
            let cur_end = cur_start + u32::from(cur.count);
            let gap = start.saturating_sub(cur_end);
            let new_end = cur_end.max(end);
            if gap <= u32::from(max_gap) && new_end - cur_start <= limit {
                cur.count = (new_end - cur_start) as u16;
                cur.points.push(i);
                continue;
            }
        }
        plan.push(ReadRequest {
            unit_id,
            kind: p.kind,
            start: p.address,
            count: p.width(),
            points: vec![i],
        });
    }
    plan
}
