//! The three steps by which Grafana turns a panel's `rawSql` into the SQL it sends to
//! PostgreSQL, and the interval it computes for a panel.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};

/// A dashboard's time range. Grafana's browser sends both ends in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// The last `span` up to `now` (`now-24h` to `now`), at millisecond precision.
    pub fn last(span: Duration, now: DateTime<Utc>) -> Self {
        let to = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        Self {
            from: to - span,
            to,
        }
    }

    /// `to - from` in milliseconds.
    pub fn span_ms(&self) -> i64 {
        (self.to - self.from).num_milliseconds()
    }
}

/// A panel's query interval (`$__interval`, `$__interval_ms`), as the browser computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub ms: u64,
    /// `secondsToHms`: `5s`, `1m`, `6h`, `30d`, `1y`.
    pub text: String,
}

impl Interval {
    /// `rangeutil.calculateInterval`: the range divided by the panel's max data points
    /// (its width in pixels unless set), rounded to a nice interval, and at least
    /// `min_interval` (the panel's "Min interval", else the data source's `timeInterval`).
    pub fn calculate(
        range: &TimeRange,
        max_data_points: u32,
        min_interval: Option<&str>,
    ) -> anyhow::Result<Self> {
        ensure!(max_data_points > 0, "max data points must be positive");
        let low = match min_interval {
            Some(text) => interval_to_ms(text)?,
            None => 1.0,
        };
        let mut ms = round_interval(range.span_ms() as f64 / f64::from(max_data_points)) as f64;
        if low > ms {
            ms = low;
        }
        Ok(Self {
            ms: ms as u64,
            text: seconds_to_hms(ms / 1000.0),
        })
    }
}

/// `rangeutil.roundInterval`: Grafana's nice intervals, in milliseconds.
pub fn round_interval(ms: f64) -> u64 {
    const STEPS: [(f64, u64); 27] = [
        (10.0, 1),
        (15.0, 10),
        (35.0, 20),
        (75.0, 50),
        (150.0, 100),
        (350.0, 200),
        (750.0, 500),
        (1_500.0, 1_000),
        (3_500.0, 2_000),
        (7_500.0, 5_000),
        (12_500.0, 10_000),
        (17_500.0, 15_000),
        (25_000.0, 20_000),
        (45_000.0, 30_000),
        (90_000.0, 60_000),
        (210_000.0, 120_000),
        (450_000.0, 300_000),
        (750_000.0, 600_000),
        (1_050_000.0, 900_000),
        (1_500_000.0, 1_200_000),
        (2_700_000.0, 1_800_000),
        (5_400_000.0, 3_600_000),
        (9_000_000.0, 7_200_000),
        (16_200_000.0, 10_800_000),
        (32_400_000.0, 21_600_000),
        (86_400_000.0, 43_200_000),
        (604_800_000.0, 86_400_000),
    ];
    for (below, nice) in STEPS {
        if ms < below {
            return nice;
        }
    }
    if ms < 1_814_400_000.0 {
        604_800_000
    } else if ms < 3_628_800_000.0 {
        2_592_000_000
    } else {
        31_536_000_000
    }
}

/// `rangeutil.secondsToHms`: the largest whole unit only (`90 s` → `1m`).
pub fn seconds_to_hms(seconds: f64) -> String {
    let years = (seconds / 31_536_000.0).floor();
    if years != 0.0 {
        return format!("{years}y");
    }
    let days = ((seconds % 31_536_000.0) / 86_400.0).floor();
    if days != 0.0 {
        return format!("{days}d");
    }
    let hours = (((seconds % 31_536_000.0) % 86_400.0) / 3_600.0).floor();
    if hours != 0.0 {
        return format!("{hours}h");
    }
    let minutes = ((((seconds % 31_536_000.0) % 86_400.0) % 3_600.0) / 60.0).floor();
    if minutes != 0.0 {
        return format!("{minutes}m");
    }
    let secs = ((((seconds % 31_536_000.0) % 86_400.0) % 3_600.0) % 60.0).floor();
    if secs != 0.0 {
        return format!("{secs}s");
    }
    let ms = (seconds * 1000.0).floor();
    if ms != 0.0 {
        return format!("{ms}ms");
    }
    "less than a millisecond".to_owned()
}

/// `rangeutil.intervalToMs` (`describeInterval`): a bare number is seconds; otherwise the
/// first `<integer>[.<digits>]<unit>` in the text, of which only the integer part counts.
pub fn interval_to_ms(text: &str) -> anyhow::Result<f64> {
    // `Number(str)` decides, `parseInt(str, 10)` counts: "1e3" is 1 second.
    let trimmed = text.trim();
    if let Ok(n) = trimmed.parse::<f64>()
        && n != 0.0
        && n.is_finite()
    {
        let sign = usize::from(trimmed.starts_with(['-', '+']));
        let digits = trimmed[sign..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let count: f64 = trimmed[..sign + digits]
            .parse()
            .with_context(|| format!("invalid interval {text:?}"))?;
        return Ok(1000.0 * count);
    }
    let b = text.as_bytes();
    for start in 0..b.len() {
        let mut i = start;
        if b[i] == b'-' {
            i += 1;
        }
        let digits = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits {
            continue;
        }
        let count: f64 = text[start..i].parse().context("interval count")?;
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        let seconds = if text[i..].starts_with("ms") {
            0.001
        } else {
            match b.get(i) {
                Some(b'y') => 31_536_000.0,
                Some(b'M') => 2_592_000.0,
                Some(b'w') => 604_800.0,
                Some(b'd') => 86_400.0,
                Some(b'h') => 3_600.0,
                Some(b'm') => 60.0,
                Some(b's') => 1.0,
                _ => continue,
            }
        };
        return Ok(seconds * 1000.0 * count);
    }
    bail!(
        "invalid interval {text:?}: a number of seconds or a count with a unit (ms, s, m, h, d, w, M, y)"
    )
}

/// The value of a template variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarValue {
    /// A single-value variable.
    Single(String),
    /// A multi-value (or include-all) variable: every selected value.
    Multi(Vec<String>),
}

/// What Grafana knows when it expands one query.
#[derive(Debug, Clone)]
pub struct QueryContext {
    pub range: TimeRange,
    /// The panel's interval; `None` for template variable queries (Grafana sends 0).
    pub interval: Option<Interval>,
    /// Dashboard template variables by name.
    pub vars: BTreeMap<String, VarValue>,
    /// Wall-clock time of the server: `d`, `w`, `M` and `y` intervals count from it.
    pub now: DateTime<Utc>,
}

/// How `$__timeGroup(col, interval, fill)` asked Grafana to fill missing buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    Null,
    Previous,
    Value(f64),
}

/// A query as Grafana sends it to PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub sql: String,
    /// Set by a third `$__timeGroup` argument: Grafana then resamples the frame.
    pub fill: Option<Fill>,
}

/// All three steps: browser variables, server globals, server macros.
pub fn expand(raw_sql: &str, ctx: &QueryContext) -> anyhow::Result<Expanded> {
    let sql = replace_variables(raw_sql, ctx)?;
    let sql = interpolate_globals(&sql, ctx);
    expand_macros(&sql, ctx)
}

// ---------------------------------------------------------------------------------------
// step 1: the browser (TemplateSrv.replace with SqlDatasource.interpolateVariable)

/// One match of TemplateSrv's variable regex:
/// `\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\${(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?}`.
struct VarRef<'a> {
    name: &'a str,
    field_path: Option<&'a str>,
    format: Option<&'a str>,
    len: usize,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn word_len(s: &[u8]) -> usize {
    s.iter().take_while(|b| is_word(**b)).count()
}

fn var_ref_at(s: &str) -> Option<VarRef<'_>> {
    let b = s.as_bytes();
    if b.first() == Some(&b'$') {
        let n = word_len(&b[1..]);
        if n > 0 {
            return Some(VarRef {
                name: &s[1..1 + n],
                field_path: None,
                format: None,
                len: 1 + n,
            });
        }
        if b.get(1) != Some(&b'{') {
            return None;
        }
        let n = word_len(&b[2..]);
        if n == 0 {
            return None;
        }
        let name = &s[2..2 + n];
        let mut i = 2 + n;
        let mut field_path = None;
        if b.get(i) == Some(&b'.') {
            let len = b[i + 1..]
                .iter()
                .take_while(|c| !matches!(c, b':' | b'^' | b'}'))
                .count();
            if len > 0 {
                field_path = Some(&s[i + 1..i + 1 + len]);
                i += 1 + len;
            }
        }
        let mut format = None;
        if b.get(i) == Some(&b':') {
            let len = b[i + 1..].iter().take_while(|c| **c != b'}').count();
            if len > 0 {
                format = Some(&s[i + 1..i + 1 + len]);
                i += 1 + len;
            }
        }
        if b.get(i) != Some(&b'}') {
            return None;
        }
        return Some(VarRef {
            name,
            field_path,
            format,
            len: i + 1,
        });
    }
    if !s.starts_with("[[") {
        return None;
    }
    let n = word_len(&b[2..]);
    if n == 0 {
        return None;
    }
    let name = &s[2..2 + n];
    let mut i = 2 + n;
    let mut format = None;
    if b.get(i) == Some(&b':') {
        let len = word_len(&b[i + 1..]);
        if len > 0 {
            format = Some(&s[i + 1..i + 1 + len]);
            i += 1 + len;
        }
    }
    if !s[i..].starts_with("]]") {
        return None;
    }
    Some(VarRef {
        name,
        field_path: None,
        format,
        len: i + 2,
    })
}

/// What a variable reference stands for: a text value, a number, or several values.
enum Resolved {
    Text(String),
    Number(u64),
    Many(Vec<String>),
}

fn quote_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Step 1: template variables and the browser's `$__interval` / `$__interval_ms`. An
/// unknown name (a server macro such as `$__timeFilter`) is left as it is.
pub fn replace_variables(sql: &str, ctx: &QueryContext) -> anyhow::Result<String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(pos) = rest.find(['$', '[']) {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let Some(r) = var_ref_at(rest) else {
            out.push_str(&rest[..1]);
            rest = &rest[1..];
            continue;
        };
        let value = match (r.name, &ctx.interval) {
            ("__interval", Some(i)) => Some(Resolved::Text(i.text.clone())),
            ("__interval_ms", Some(i)) => Some(Resolved::Number(i.ms)),
            (name, _) => ctx.vars.get(name).map(|v| match v {
                VarValue::Single(s) => Resolved::Text(s.clone()),
                VarValue::Multi(vs) => Resolved::Many(vs.clone()),
            }),
        };
        match value {
            None => out.push_str(&rest[..r.len]),
            Some(value) => {
                ensure!(
                    r.field_path.is_none(),
                    "variable {} with a field path is not supported",
                    r.name
                );
                out.push_str(&format_value(value, r.format)?);
            }
        }
        rest = &rest[r.len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn format_value(value: Resolved, format: Option<&str>) -> anyhow::Result<String> {
    let many = |v: Resolved| match v {
        Resolved::Text(s) => vec![s],
        Resolved::Number(n) => vec![n.to_string()],
        Resolved::Many(vs) => vs,
    };
    Ok(match format {
        // SqlDatasource.interpolateVariable: a single value is inserted with its quotes
        // doubled (the query supplies the quotes); several are quoted and comma-joined.
        None => match value {
            Resolved::Text(s) => s.replace('\'', "''"),
            Resolved::Number(n) => n.to_string(),
            Resolved::Many(vs) => vs
                .iter()
                .map(|v| quote_literal(v))
                .collect::<Vec<_>>()
                .join(","),
        },
        Some("raw") | Some("csv") => many(value).join(","),
        Some("sqlstring") => many(value)
            .iter()
            .map(|v| quote_literal(v))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => bail!("variable format {other:?} is not one this expander knows"),
    })
}

// ---------------------------------------------------------------------------------------
// step 2: the server's global substitutions (sqleng.Interpolate)

/// Step 2: plain text replacement of `$__interval_ms`, `$__interval`,
/// `$__unixEpochFrom()` and `$__unixEpochTo()`.
pub fn interpolate_globals(sql: &str, ctx: &QueryContext) -> String {
    let ms = ctx.interval.as_ref().map_or(0, |i| i.ms);
    sql.replace("$__interval_ms", &ms.to_string())
        .replace("$__interval", &format_interval(ms))
        .replace(
            "$__unixEpochFrom()",
            &ctx.range.from.timestamp().to_string(),
        )
        .replace("$__unixEpochTo()", &ctx.range.to.timestamp().to_string())
}

/// `gtime.FormatInterval`.
pub fn format_interval(ms: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (365 * 86_400_000, "y"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (unit, suffix) in UNITS {
        if ms >= unit {
            return format!("{}{suffix}", ms / unit);
        }
    }
    if ms >= 1 {
        format!("{ms}ms")
    } else {
        "1ms".to_owned()
    }
}

// ---------------------------------------------------------------------------------------
// step 3: the server's macros (grafana-postgresql-datasource/macros.go)

/// Step 3: every `$__name(args)` (regex `\$([_a-zA-Z0-9]+)\(([^\)]*)\)`) is expanded; an
/// unknown name or bad arguments fail the query, as in Grafana.
pub fn expand_macros(sql: &str, ctx: &QueryContext) -> anyhow::Result<Expanded> {
    let mut out = String::with_capacity(sql.len());
    let mut fill = None;
    let mut last = 0;
    let mut search = 0;
    while let Some(pos) = sql[search..].find('$') {
        let start = search + pos;
        let b = sql.as_bytes();
        let name_len = b[start + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        let open = start + 1 + name_len;
        let close = if name_len > 0 && b.get(open) == Some(&b'(') {
            sql[open + 1..].find(')').map(|p| open + 1 + p)
        } else {
            None
        };
        let Some(close) = close else {
            search = start + 1;
            continue;
        };
        let whole = &sql[start..=close];
        let mut name = &sql[start + 1..open];
        // Before Grafana 5.3 `$__timeGroup` added `AS "time"`; a `,` right after the
        // first occurrence of the same macro text still selects that form.
        if name == "__timeGroup"
            && let Some(index) = sql.find(whole)
            && sql.as_bytes().get(index + whole.len()) == Some(&b',')
        {
            name = "__timeGroupAlias";
        }
        let args: Vec<&str> = sql[open + 1..close]
            .split(',')
            .map(|a| a.trim_matches(' '))
            .collect();
        let (text, f) =
            evaluate_macro(name, &args, ctx).with_context(|| format!("expanding {whole}"))?;
        if f.is_some() {
            fill = f;
        }
        out.push_str(&sql[last..start]);
        out.push_str(&text);
        last = close + 1;
        search = close + 1;
    }
    out.push_str(&sql[last..]);
    Ok(Expanded { sql: out, fill })
}

fn evaluate_macro(
    name: &str,
    args: &[&str],
    ctx: &QueryContext,
) -> anyhow::Result<(String, Option<Fill>)> {
    let from = ctx.range.from;
    let to = ctx.range.to;
    // `strings.Split` always yields at least one (possibly empty) argument.
    let col = args.first().copied().unwrap_or_default();
    let text = match name {
        "__time" => format!("{col} AS \"time\""),
        "__timeEpoch" => format!("extract(epoch from {col}) as \"time\""),
        "__timeFilter" => format!(
            "{col} BETWEEN '{}' AND '{}'",
            go_rfc3339_nano(from),
            go_rfc3339_nano(to)
        ),
        "__timeFrom" => format!("'{}'", go_rfc3339_nano(from)),
        "__timeTo" => format!("'{}'", go_rfc3339_nano(to)),
        "__timeGroup" | "__unixEpochGroup" => {
            ensure!(
                args.len() >= 2,
                "macro {name} needs time column and interval and optional fill value"
            );
            let ns = parse_interval(args[1].trim_matches('\''), ctx.now)
                .with_context(|| format!("error parsing interval {}", args[1]))?;
            let fill = if args.len() == 3 {
                Some(fill_mode(args[2])?)
            } else {
                None
            };
            let s = go_float(go_seconds(ns));
            let text = if name == "__timeGroup" {
                format!("floor(extract(epoch from {col})/{s})*{s}")
            } else {
                format!("floor(({col})/{s})*{s}")
            };
            return Ok((text, fill));
        }
        "__timeGroupAlias" | "__unixEpochGroupAlias" => {
            let (text, fill) = evaluate_macro(name.trim_end_matches("Alias"), args, ctx)?;
            return Ok((format!("{text} AS \"time\""), fill));
        }
        "__unixEpochFilter" => format!(
            "{col} >= {} AND {col} <= {}",
            from.timestamp(),
            to.timestamp()
        ),
        "__unixEpochNanoFilter" => format!(
            "{col} >= {} AND {col} <= {}",
            unix_nanos(from)?,
            unix_nanos(to)?
        ),
        "__unixEpochNanoFrom" => unix_nanos(from)?.to_string(),
        "__unixEpochNanoTo" => unix_nanos(to)?.to_string(),
        other => bail!("unknown macro {other:?}"),
    };
    Ok((text, None))
}

fn unix_nanos(t: DateTime<Utc>) -> anyhow::Result<i64> {
    t.timestamp_nanos_opt()
        .context("time out of the range of nanosecond timestamps")
}

/// `sqleng.SetupFillmode`.
fn fill_mode(arg: &str) -> anyhow::Result<Fill> {
    Ok(match arg {
        "NULL" => Fill::Null,
        "previous" => Fill::Previous,
        other => Fill::Value(
            other
                .parse()
                .with_context(|| format!("error parsing fill value {other}"))?,
        ),
    })
}

/// Go's `time.Time.Format(time.RFC3339Nano)` of a UTC time: no trailing zeros in the
/// fraction, no fraction when it is zero.
pub fn go_rfc3339_nano(t: DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Go's `time.Duration.Seconds()`.
fn go_seconds(ns: i64) -> f64 {
    (ns / 1_000_000_000) as f64 + (ns % 1_000_000_000) as f64 / 1e9
}

/// Go's `%v` of a float64: the shortest representation, in `%e` form (`2.592e+06`) when
/// the decimal exponent is below -4 or at least 6.
pub fn go_float(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} writes an integer exponent");
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// `gtime.ParseInterval`: `<n>d`, `<n>w`, `<n>M`, `<n>y` count calendar time from `now`
/// (UTC); anything else is a Go duration (`90s`, `1h30m`, `250ms`). In nanoseconds.
pub fn parse_interval(text: &str, now: DateTime<Utc>) -> anyhow::Result<i64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && text.len() == digits + 1 {
        let n: i32 = text[..digits].parse().context("interval count")?;
        let (years, months, days) = match &text[digits..] {
            "d" => (0, 0, n),
            "w" => (0, 0, n * 7),
            "M" => (0, n, 0),
            "y" => (n, 0, 0),
            _ => return go_parse_duration(text),
        };
        let later = go_add_date(now, years, months, days)?;
        return (later - now)
            .num_nanoseconds()
            .context("interval too long for a duration");
    }
    go_parse_duration(text)
}

/// Go's `Time.AddDate`: out-of-range days and months roll over (Jan 31 + 1 month is
/// March 2 or 3, Feb 29 + 1 year is March 1).
fn go_add_date(
    t: DateTime<Utc>,
    years: i32,
    months: i32,
    days: i32,
) -> anyhow::Result<DateTime<Utc>> {
    let month0 = t.month0() as i32 + months;
    let year = t.year() + years + month0.div_euclid(12);
    let month = month0.rem_euclid(12) as u32 + 1;
    let first = NaiveDate::from_ymd_opt(year, month, 1).context("date out of range")?;
    let date = first + Duration::days(i64::from(t.day() as i32 - 1 + days));
    Ok(date.and_time(t.time()).and_utc())
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub fn go_parse_duration(text: &str) -> anyhow::Result<i64> {
    let invalid = || anyhow::anyhow!("time: invalid duration {text:?}");
    let (neg, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: i64 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int: i64 = if int_len > 0 {
            s[..int_len].parse().map_err(|_| invalid())?
        } else {
            0
        };
        s = &s[int_len..];
        let mut frac = 0_i64;
        let mut scale = 1.0_f64;
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            for d in rest[..frac_len].bytes() {
                if scale < 1e18 {
                    frac = frac * 10 + i64::from(d - b'0');
                    scale *= 10.0;
                }
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|c| *c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(anyhow::anyhow!("time: missing unit in duration {text:?}"));
        }
        let unit: i64 = match &s[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => bail!("time: unknown unit {other:?} in duration {text:?}"),
        };
        s = &s[unit_len..];
        let whole = int.checked_mul(unit).ok_or_else(invalid)?;
        let part = (frac as f64 * (unit as f64 / scale)) as i64;
        total = total
            .checked_add(whole)
            .and_then(|t| t.checked_add(part))
            .ok_or_else(invalid)?;
    }
    Ok(if neg { -total } else { total })
}
