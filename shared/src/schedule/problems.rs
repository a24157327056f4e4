//! Validation problems: what, where, how bad.

use std::fmt;

use serde::Serialize;

/// How bad a problem is: errors make the schedule unusable, warnings describe a policy
/// that was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The document does not have the schedule's shape (a missing field, a wrong type, an
    /// unknown key): found while reading it, before any other check.
    Structure,
    InvalidId,
    UnknownTimeZone,
    InvalidDate,
    InvalidRange,
    InvalidTime,
    TimesNotAscending,
    UnknownProfile,
    UnusedProfile,
    OverlappingSeasons,
    UncoveredDays,
    DateOutsideValidity,
    OverlappingExceptions,
    DuplicateHoliday,
    UnknownSetting,
    NotWritable,
    WrongValueKind,
    OutOfLimits,
    /// A number between two steps of the point's resolution (warning).
    OffResolution,
    TooManySettings,
    /// A list longer than the schedule accepts (see the `MAX_*` constants).
    TooLarge,
    NoDefault,
    InvalidCron,
    RuleNeverFires,
    TooManyRuleFirings,
    /// A local time that does not exist (spring-forward); fires at the end of the gap.
    DstGap,
    /// A local time that occurs twice (fall-back); fires at the first occurrence.
    DstOverlap,
}

/// One problem, located by a json-path-like `path` such as `profiles.summer-weekday[2].time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub kind: ProblemKind,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level} at {}: {}", self.path, self.message)
    }
}

/// Every problem found, errors and warnings, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// `Ok(warnings)` when there is no error, else `Err(every problem)`.
    pub fn into_result(self) -> Result<Vec<Problem>, Vec<Problem>> {
        if self.has_errors() {
            Err(self.problems)
        } else {
            Ok(self.problems)
        }
    }
}

pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn error(
        &mut self,
        kind: ProblemKind,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Error, kind, path.into(), message.into());
    }

    pub(crate) fn warning(
        &mut self,
        kind: ProblemKind,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Warning, kind, path.into(), message.into());
    }

    fn push(&mut self, severity: Severity, kind: ProblemKind, path: String, message: String) {
        self.0.push(Problem {
            severity,
            kind,
            path,
            message,
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }
}
