//! CSV export of settings history (RFC 4180: comma separated, CRLF line ends, fields with
//! `,` `"` CR or LF quoted and inner quotes doubled).
//!
//! Text that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab or
//! CR) is prefixed with `'` (OWASP "CSV injection"); numbers are written as numbers.

use serde_json::Value;

use super::HistoryEntry;

/// Column names, in order.
pub(crate) const HISTORY_COLUMNS: [&str; 13] = [
    "ts",
    "side",
    "key",
    "old",
    "new",
    "version",
    "actor_kind",
    "actor_name",
    "actor_role",
    "comment",
    "verification",
    "verification_reason",
    "verification_at",
];

/// History entries as a CSV document with a header line.
pub(crate) fn history(entries: &[HistoryEntry]) -> String {
    let mut out = String::with_capacity(64 * (entries.len() + 1));
    push_row(&mut out, HISTORY_COLUMNS.iter().map(|c| (*c).to_owned()));
    for e in entries {
        let kind = serde_label(&e.actor.kind);
        let side = serde_label(&e.side);
        let v = e.verification.as_ref();
        push_row(
            &mut out,
            [
                stamp(e.ts),
                side,
                text(&e.key),
                value(e.old.as_ref()),
                value(e.new.as_ref()),
                e.version.to_string(),
                kind,
                text(&e.actor.name),
                e.actor
                    .role
                    .map(|r| r.as_str().to_owned())
                    .unwrap_or_default(),
                e.comment.as_deref().map(text).unwrap_or_default(),
                v.map(|v| v.outcome.as_str().to_owned()).unwrap_or_default(),
                v.and_then(|v| v.reason.as_deref())
                    .map(text)
                    .unwrap_or_default(),
                v.and_then(|v| v.at)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            ]
            .into_iter(),
        );
    }
    out
}

/// Telemetry as CSV: `seq,ts`, then one column per point (every point any row has, by
/// name); a point a sample lacks is an empty cell.
pub(crate) fn telemetry(rows: &[crate::TelemetryRow]) -> String {
    let points: std::collections::BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.values.keys().map(String::as_str))
        .collect();
    let mut out = String::new();
    push_row(
        &mut out,
        ["seq", "ts"]
            .into_iter()
            .chain(points.iter().copied())
            .map(str::to_owned),
    );
    for r in rows {
        push_row(
            &mut out,
            [r.seq.to_string(), stamp(r.ts)]
                .into_iter()
                .chain(points.iter().map(|p| {
                    let v = r.values.get(*p).and_then(|v| serde_json::to_value(v).ok());
                    value(v.as_ref())
                })),
        );
    }
    out
}

/// Events as CSV: `seq,ts,kind,severity,message,data` (data as compact JSON).
pub(crate) fn events(rows: &[crate::EventRow]) -> String {
    let mut out = String::new();
    push_row(
        &mut out,
        ["seq", "ts", "kind", "severity", "message", "data"]
            .into_iter()
            .map(str::to_owned),
    );
    for e in rows {
        push_row(
            &mut out,
            [
                e.seq.to_string(),
                stamp(e.ts),
                serde_label(&e.kind),
                serde_label(&e.severity),
                text(&e.message),
                value(Some(&e.data)),
            ]
            .into_iter(),
        );
    }
    out
}

/// RFC 3339 in UTC with `Z`, as in the JSON answers.
fn stamp(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn serde_label<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A JSON value as a cell: numbers and booleans as written, strings defused, objects and
/// arrays as compact JSON, absent/null as empty.
fn value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => text(s),
        Some(other) => text(&other.to_string()),
    }
}

/// Free text, defused against formula injection.
fn text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

fn push_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, &f);
    }
    out.push_str("\r\n");
}

fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_separators_are_quoted() {
        let mut s = String::new();
        push_row(
            &mut s,
            ["plain", "a,b", "say \"hi\"", "two\nlines", ""]
                .map(String::from)
                .into_iter(),
        );
        assert_eq!(s, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }

    #[test]
    fn formulas_are_defused_but_numbers_are_not() {
        assert_eq!(text("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(value(Some(&serde_json::json!(-3.5))), "-3.5");
        assert_eq!(value(Some(&serde_json::json!("-3.5"))), "'-3.5");
        assert_eq!(value(None), "");
        assert_eq!(value(Some(&serde_json::json!({"a": 1}))), "{\"a\":1}");
    }
}
