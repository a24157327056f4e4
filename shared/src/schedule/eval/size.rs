//! The approximate memory a compiled schedule takes (what the edge keeps in memory).

use std::mem::size_of;

use chrono::NaiveDate;

use crate::schedule::{CEntry, CException, CProfile, CRule, CSeason, Problem, Schedule};

fn value_size(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    size_of::<Value>()
        + match v {
            Value::String(s) => s.capacity(),
            Value::Array(a) => a.iter().map(value_size).sum(),
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| k.capacity() + value_size(v) + 16)
                .sum(),
            _ => 0,
        }
}

fn sets_size(sets: &[(u8, serde_json::Value)]) -> usize {
    sets.iter().map(|(_, v)| 8 + value_size(v)).sum()
}

/// Rough memory of a compiled schedule: inline sizes plus heap capacities.
pub(crate) fn approx_size(s: &Schedule) -> usize {
    let str_size = |x: &String| size_of::<String>() + x.capacity();
    size_of::<Schedule>()
        + s.id.capacity()
        + s.hash.capacity()
        + s.keys.iter().map(str_size).sum::<usize>()
        + sets_size(&s.defaults)
        + s.profiles
            .iter()
            .map(|p| {
                size_of::<CProfile>()
                    + p.name.capacity()
                    + p.entries
                        .iter()
                        .map(|e| size_of::<CEntry>() + sets_size(&e.sets))
                        .sum::<usize>()
            })
            .sum::<usize>()
        + s.seasons
            .iter()
            .map(|x| size_of::<CSeason>() + x.name.capacity() + x.days.capacity())
            .sum::<usize>()
        + s.holidays
            .iter()
            .map(|(_, n)| size_of::<(NaiveDate, String)>() + n.capacity())
            .sum::<usize>()
        + s.exceptions
            .iter()
            .map(|e| size_of::<CException>() + e.name.capacity())
            .sum::<usize>()
        + s.rules
            .iter()
            .map(|r| {
                size_of::<CRule>()
                    + r.name.capacity()
                    + sets_size(&r.sets)
                    + r.fires.capacity() * size_of::<i64>()
            })
            .sum::<usize>()
        + s.day_profile.capacity() * size_of::<u16>()
        + s.day_base.capacity() * size_of::<i64>()
        + s.key_days
            .iter()
            .map(|d| size_of::<Vec<u16>>() + d.capacity() * size_of::<u16>())
            .sum::<usize>()
        + s.warnings
            .iter()
            .map(|w| size_of::<Problem>() + w.path.capacity() + w.message.capacity())
            .sum::<usize>()
}
