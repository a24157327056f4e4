//! Day profiles: entry times in strictly ascending order, their settings, and the references
//! seasons and exceptions make to them (unknown and unused profiles).

use std::collections::BTreeMap;

use chrono::NaiveTime;

use super::parse::parse_time;
use super::settings::Keys;
use crate::schedule::model::ScheduleDocument;
use crate::schedule::problems::{ProblemKind, Problems};
use crate::schedule::{CEntry, CProfile};

/// Compiles every profile, in name order (a profile's position is its id).
pub(super) fn compile(
    doc: &ScheduleDocument,
    keys: &mut Keys<'_>,
    p: &mut Problems,
) -> Vec<CProfile> {
    let mut profiles = Vec::with_capacity(doc.profiles.len());
    for (name, entries) in &doc.profiles {
        let mut centries: Vec<CEntry> = Vec::with_capacity(entries.len());
        let mut mask = 0;
        let mut last: Option<(usize, NaiveTime)> = None;
        for (i, entry) in entries.iter().enumerate() {
            let path = format!("profiles.{name}[{i}]");
            let time = parse_time(&entry.time, &format!("{path}.time"), p);
            if let (Some(t), Some((j, prev))) = (time, last)
                && t <= prev
            {
                p.error(
                    ProblemKind::TimesNotAscending,
                    format!("{path}.time"),
                    format!(
                        "{} is not after {} (profiles.{name}[{j}]); entries must be in ascending time order",
                        entry.time, entries[j].time
                    ),
                );
            }
            if let Some(t) = time {
                last = Some((i, t));
            }
            let (sets, emask) = keys.settings(&entry.settings, &format!("{path}.settings"), p);
            mask |= emask;
            centries.push(CEntry {
                time: time.unwrap_or(NaiveTime::MIN),
                mask: emask,
                sets,
            });
        }
        profiles.push(CProfile {
            name: name.clone(),
            mask,
            entries: centries,
        });
    }
    profiles
}

/// Resolves profile names to ids and remembers which profiles were used.
pub(super) struct ProfileRefs<'d> {
    ids: BTreeMap<&'d str, u16>,
    used: Vec<bool>,
}

impl<'d> ProfileRefs<'d> {
    /// The profiles of `doc`, with ids in the order of [`compile`].
    pub(super) fn new(doc: &'d ScheduleDocument) -> Self {
        let ids: BTreeMap<&str, u16> = doc
            .profiles
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i as u16))
            .collect();
        let used = vec![false; ids.len()];
        ProfileRefs { ids, used }
    }

    /// The id of profile `name` referenced at `path` (`u16::MAX` and an error when unknown).
    pub(super) fn resolve(&mut self, name: &str, path: String, p: &mut Problems) -> u16 {
        match self.ids.get(name) {
            Some(&i) => {
                self.used[usize::from(i)] = true;
                i
            }
            None => {
                let known: Vec<&str> = self.ids.keys().copied().collect();
                p.error(
                    ProblemKind::UnknownProfile,
                    path,
                    format!("unknown profile `{name}` (profiles: {})", known.join(", ")),
                );
                u16::MAX
            }
        }
    }

    /// Warns about every profile no season or exception referenced.
    pub(super) fn warn_unused(&self, p: &mut Problems) {
        for (name, &i) in &self.ids {
            if !self.used[usize::from(i)] {
                p.warning(
                    ProblemKind::UnusedProfile,
                    format!("profiles.{name}"),
                    "no season or exception uses this profile",
                );
            }
        }
    }
}
