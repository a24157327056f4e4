//! Tracing setup for the binaries (libraries only emit events). Logs go to stderr, as
//! human-readable lines or as JSON (one object per line) for log shippers.
//!
//! The filter comes from `SHIKI_LOG`, else `RUST_LOG`, else the binary's default, in
//! `tracing_subscriber::EnvFilter` syntax (`info,shiki_edge::plc_link=debug`). Unless the
//! filter says something about `rumqttd`, `rumqttd=warn` is added: the embedded broker logs
//! every connection at INFO.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variable read first for the log filter.
pub const SHIKI_LOG: &str = "SHIKI_LOG";
/// The variable read when [`SHIKI_LOG`] is not set.
pub const RUST_LOG: &str = "RUST_LOG";
/// Added to every filter that does not mention `rumqttd`.
pub const RUMQTTD_DEFAULT: &str = "rumqttd=warn";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter (from the named variable or the default) does not parse.
    #[error("invalid log filter {filter:?} from {origin}: {source}")]
    InvalidFilter {
        /// `SHIKI_LOG`, `RUST_LOG` or `the default`.
        origin: String,
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was installed before.
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Installs the global subscriber: filter from `SHIKI_LOG` / `RUST_LOG` / `default_filter`,
/// JSON lines when `json`, else plain lines (coloured when stderr is a terminal).
///
/// # Errors
/// An invalid filter (naming where it came from), or a subscriber already installed.
pub fn init(default_filter: &str, json: bool) -> Result<(), LoggingError> {
    let filter = env_filter(
        default_filter,
        std::env::var(SHIKI_LOG).ok().as_deref(),
        std::env::var(RUST_LOG).ok().as_deref(),
    )?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    result.map_err(|e| LoggingError::AlreadyInstalled(e.to_string()))
}

/// The filter directives in force: the first non-blank of `shiki_log`, `rust_log` and
/// `default_filter`, plus [`RUMQTTD_DEFAULT`] unless they mention `rumqttd`. Returns the
/// directives and where they came from.
pub fn filter_directives(
    default_filter: &str,
    shiki_log: Option<&str>,
    rust_log: Option<&str>,
) -> (String, &'static str) {
    let (base, origin) = [(shiki_log, SHIKI_LOG), (rust_log, RUST_LOG)]
        .into_iter()
        .find_map(|(v, name)| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| (v, name))
        })
        .unwrap_or((default_filter.trim(), "the default"));
    let directives = if base.contains("rumqttd") {
        base.to_owned()
    } else if base.is_empty() {
        RUMQTTD_DEFAULT.to_owned()
    } else {
        format!("{base},{RUMQTTD_DEFAULT}")
    };
    (directives, origin)
}

/// Builds the [`EnvFilter`] described at [`filter_directives`].
///
/// # Errors
/// [`LoggingError::InvalidFilter`] naming the variable the bad filter came from.
pub fn env_filter(
    default_filter: &str,
    shiki_log: Option<&str>,
    rust_log: Option<&str>,
) -> Result<EnvFilter, LoggingError> {
    let (directives, origin) = filter_directives(default_filter, shiki_log, rust_log);
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|source| LoggingError::InvalidFilter {
            origin: origin.to_owned(),
            filter: directives,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shiki_log_wins_over_rust_log_over_default() {
        assert_eq!(
            filter_directives("info", Some("debug"), Some("trace")),
            ("debug,rumqttd=warn".to_owned(), SHIKI_LOG)
        );
        assert_eq!(
            filter_directives("info", None, Some("trace")),
            ("trace,rumqttd=warn".to_owned(), RUST_LOG)
        );
        assert_eq!(
            filter_directives("info", Some("  "), None),
            ("info,rumqttd=warn".to_owned(), "the default")
        );
        assert_eq!(filter_directives("", None, None).0, "rumqttd=warn");
    }

    #[test]
    fn an_explicit_rumqttd_directive_is_kept() {
        assert_eq!(
            filter_directives("info,rumqttd=debug", None, None).0,
            "info,rumqttd=debug"
        );
    }

    #[test]
    fn a_bad_filter_names_its_origin() {
        let err = env_filter("info", Some("shiki=loud"), None).expect_err("bad level");
        let msg = err.to_string();
        assert!(
            msg.starts_with("invalid log filter \"shiki=loud,rumqttd=warn\" from SHIKI_LOG"),
            "{msg}"
        );
        env_filter("info,shiki_edge::plc_link=debug", None, None).expect("valid");
    }
}
