//! `SHIKI_*` environment overrides: `SHIKI_MQTT__URL=mqtts://…` sets `mqtt.url`.

use toml::{Table, Value};

use super::ConfigError;

/// Variables under the prefix that are not config keys: `SHIKI_LOG` (the log filter),
/// `SHIKI_LOG_FORMAT` and `SHIKI_CONFIG` (the config file path, read by the binaries).
pub const RESERVED: &[&str] = &["LOG", "LOG_FORMAT", "CONFIG"];

/// One override taken from the environment.
#[derive(Debug, Clone)]
pub(crate) struct EnvOverride {
    /// The variable's name, for error messages.
    pub var: String,
    /// The key path, lower case (`["mqtt", "url"]`).
    pub key: Vec<String>,
    /// The raw text of the variable.
    pub raw: String,
    /// The value as set in the table: a TOML scalar when `raw` parses as one, else a string.
    pub value: Value,
}

impl EnvOverride {
    /// The dotted key path (`mqtt.url`), as `serde_path_to_error` prints paths.
    pub fn dotted(&self) -> String {
        self.key.join(".")
    }
}

/// The overrides among `vars` that start with `prefix`, in name order (so the result does
/// not depend on the environment's order).
pub(crate) fn collect(
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<EnvOverride> {
    let mut out: Vec<EnvOverride> = vars
        .into_iter()
        .filter_map(|(var, raw)| {
            let rest = var.strip_prefix(prefix)?;
            if rest.is_empty() || RESERVED.contains(&rest) {
                return None;
            }
            let key: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if key.iter().any(String::is_empty) {
                return None;
            }
            let value = parse_value(&raw);
            Some(EnvOverride {
                var,
                key,
                raw,
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

/// `raw` as a TOML value when it is one (`8883`, `true`, `1.5`, `["a", "b"]`, `"quoted"`),
/// otherwise as a plain string.
pub(crate) fn parse_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

/// Sets the override's key in `table`, creating intermediate tables.
pub(crate) fn apply(table: &mut Table, ov: &EnvOverride) -> Result<(), ConfigError> {
    let Some((last, parents)) = ov.key.split_last() else {
        return Ok(());
    };
    let mut current = table;
    for (depth, part) in parents.iter().enumerate() {
        let slot = current
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match slot {
            Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Env {
                    var: ov.var.clone(),
                    reason: format!(
                        "`{}` is a value in the config file, not a table, so it has no key `{}`",
                        ov.key[..=depth].join("."),
                        ov.key[depth + 1..].join(".")
                    ),
                });
            }
        };
    }
    current.insert(last.clone(), ov.value.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn collects_prefixed_variables_as_lower_case_key_paths() {
        let found = collect(
            "SHIKI_",
            vars(&[
                ("SHIKI_PLC__POLL_INTERVAL", "10s"),
                ("SHIKI_MQTT__URL", "mqtts://broker:8883"),
                ("SHIKI_LOG", "debug"),
                ("SHIKI_CONFIG", "/etc/shiki/edge.toml"),
                ("SHIKI_BAD____KEY", "x"),
                ("PATH", "/usr/bin"),
            ]),
        );
        let keys: Vec<String> = found.iter().map(EnvOverride::dotted).collect();
        assert_eq!(keys, ["mqtt.url", "plc.poll_interval"]);
    }

    #[test]
    fn values_parse_as_toml_when_they_can() {
        assert_eq!(parse_value("8883"), Value::Integer(8883));
        assert_eq!(parse_value("true"), Value::Boolean(true));
        assert_eq!(parse_value("1.5"), Value::Float(1.5));
        assert_eq!(parse_value("10s"), Value::String("10s".into()));
        assert_eq!(parse_value("\"8883\""), Value::String("8883".into()));
        assert_eq!(
            parse_value("[\"a\", \"b\"]"),
            Value::Array(vec![Value::String("a".into()), Value::String("b".into())])
        );
        assert_eq!(
            parse_value("1\nother = 2"),
            Value::String("1\nother = 2".into()),
            "no smuggling of extra keys"
        );
    }

    #[test]
    fn apply_creates_tables_and_refuses_to_descend_into_values() {
        let mut table: Table = "mqtt = \"flat\"".parse().expect("valid TOML");
        let ovs = collect(
            "SHIKI_",
            vars(&[("SHIKI_PLC__MODBUS__UNIT", "3"), ("SHIKI_MQTT__URL", "x")]),
        );
        let err = apply(&mut table, &ovs[0]).expect_err("mqtt is a string");
        assert_eq!(
            err.to_string(),
            "environment variable SHIKI_MQTT__URL: `mqtt` is a value in the config file, not a table, so it has no key `url`"
        );
        apply(&mut table, &ovs[1]).expect("creates plc.modbus");
        assert_eq!(table["plc"]["modbus"]["unit"], Value::Integer(3));
    }
}
