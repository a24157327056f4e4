//! Rules: cron expressions read as local wall-clock times, their firings precomputed for the
//! validity range (all rules together at most [`MAX_RULE_FIRINGS`]).

use std::str::FromStr;

use chrono::{Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::MAX_RULE_FIRINGS;
use super::dst::dst_message;
use super::settings::Keys;
use super::validity::Validity;
use crate::schedule::CRule;
use crate::schedule::model::{Rule, ScheduleDocument};
use crate::schedule::problems::{ProblemKind, Problems};
use crate::schedule::tz::localize;

/// Accepts the `cron` crate's 6/7-field syntax and 5-field crontab (seconds `0` prepended).
pub(crate) fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let text = if expr.split_whitespace().count() == 5 {
        format!("0 {expr}")
    } else {
        expr.to_owned()
    };
    cron::Schedule::from_str(&text).map_err(|e| e.to_string())
}

/// Compiles the rules in document order, sharing one budget of firings.
pub(super) fn compile(
    doc: &ScheduleDocument,
    validity: &Validity,
    keys: &mut Keys<'_>,
    p: &mut Problems,
) -> Vec<CRule> {
    let mut rules = Vec::with_capacity(doc.rules.len());
    let mut budget = MAX_RULE_FIRINGS;
    for (i, r) in doc.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        let (sets, mask) = keys.settings(&r.settings, &format!("{path}.settings"), p);
        let fires = firings(r, &path, validity, &mut budget, p);
        rules.push(CRule {
            name: if r.name.is_empty() {
                path
            } else {
                r.name.clone()
            },
            mask,
            sets,
            fires,
        });
    }
    rules
}

/// The firings of rule `r` (empty when its cron is invalid, validity is unknown or the
/// budget is spent), taken from `budget`.
fn firings(
    r: &Rule,
    path: &str,
    validity: &Validity,
    budget: &mut usize,
    p: &mut Problems,
) -> Vec<i64> {
    let cpath = format!("{path}.cron");
    let cron = match parse_cron(&r.cron) {
        Ok(cron) => cron,
        Err(e) => {
            p.error(
                ProblemKind::InvalidCron,
                cpath,
                format!(
                    "`{}` is not a cron expression (sec min hour day month weekday [year]): {e}",
                    r.cron
                ),
            );
            return Vec::new();
        }
    };
    let (Some(tz), Some(range), true) = (validity.tz, validity.range, *budget > 0) else {
        return Vec::new();
    };
    match rule_fires(&cron, &tz, range, *budget, &cpath, p) {
        Some(list) => {
            if list.is_empty() {
                p.warning(
                    ProblemKind::RuleNeverFires,
                    cpath,
                    format!("`{}` never fires within validity", r.cron),
                );
            }
            *budget -= list.len();
            list
        }
        None => {
            p.error(
                ProblemKind::TooManyRuleFirings,
                cpath,
                format!(
                    "the rules fire more than {MAX_RULE_FIRINGS} times within validity (this one from its firing {} on); use day profiles for daily patterns",
                    *budget + 1
                ),
            );
            *budget = 0;
            Vec::new()
        }
    }
}

/// The instants at which `cron` fires within validity (local wall-clock times, DST policy
/// applied, distinct, ascending), warning about DST cases; `None` when there are more than
/// `budget`.
fn rule_fires(
    cron: &cron::Schedule,
    tz: &Tz,
    (from, to): (NaiveDate, NaiveDate),
    budget: usize,
    path: &str,
    p: &mut Problems,
) -> Option<Vec<i64>> {
    let start = from.and_time(NaiveTime::MIN);
    let end = (to + Duration::days(1)).and_time(NaiveTime::MIN);
    // the cron crate runs on naive local time (as if UTC): no DST handling of its own
    let after = Utc.from_utc_datetime(&(start - Duration::seconds(1)));
    let mut fires: Vec<i64> = Vec::new();
    let mut last_warned: Option<NaiveDate> = None;
    for fire in cron.after(&after) {
        let naive = fire.naive_utc();
        if naive >= end {
            break;
        }
        let (ts, kind) = localize(tz, naive);
        if let Some((k, msg)) = dst_message(tz, naive, ts, kind)
            && last_warned != Some(naive.date())
        {
            last_warned = Some(naive.date());
            p.warning(k, path, msg);
        }
        if fires.last() != Some(&ts) {
            if fires.len() == budget {
                return None;
            }
            fires.push(ts);
        }
    }
    Some(fires)
}
