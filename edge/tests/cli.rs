//! The command line as operators script against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn edge(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shiki-edge"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("SHIKI_MQTT_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run shiki-edge")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge.example.toml")
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("edge.toml");
    std::fs::write(&p, text).expect("write");
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_config_accepts_the_example() {
    let ex = example();
    let o = edge(
        &["check-config", "--config", ex.to_str().expect("utf8")],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok"));
}

#[test]
fn check_config_names_the_file_and_the_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("device_id = \"gw\"\n[mqtt]\nurll = \"x\"\n", "urll"),
        (
            "device_id = \"gw\"\n[telemetry]\ninterval = \"10ms\"\n",
            "telemetry.interval",
        ),
        (
            "device_id = \"gw\"\n[mqtt]\nurl = \"http://x\"\n",
            "mqtt.url",
        ),
        ("device_id = \"g w\"\n", "device id"),
        (
            "device_id = \"gw\"\n[outbox]\nquota_mib = 0\n",
            "outbox.quota_mib",
        ),
    ];
    for (text, key) in cases {
        let path = write(dir.path(), text);
        let o = edge(
            &["check-config", "--config", path.to_str().expect("utf8")],
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{text}");
        let err = stderr(&o);
        assert!(
            err.contains(key) && err.contains("edge.toml"),
            "{key}: {err}"
        );
    }
}

#[test]
fn environment_overrides_are_validated_too() {
    let ex = example();
    let o = edge(
        &["check-config", "--config", ex.to_str().expect("utf8")],
        &[("SHIKI_MQTT_URL", "tcp://nope")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("mqtt.url"), "{}", stderr(&o));
}

#[test]
fn schedule_file_is_checked_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/schedule.example.json");
    let text = std::fs::read_to_string(example()).expect("example");
    let with_file = |file: &Path| {
        text.replace(
            "# file = \"deploy/schedule.example.json\"",
            &format!("file = {:?}", file.display().to_string()),
        )
    };
    let path = write(dir.path(), &with_file(&good));
    let o = edge(
        &["check-config", "--config", path.to_str().expect("utf8")],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let bad = dir.path().join("schedule.json");
    std::fs::write(&bad, "{\"id\": \"x\"}").expect("write");
    let path = write(dir.path(), &with_file(&bad));
    let o = edge(
        &["check-config", "--config", path.to_str().expect("utf8")],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("schedule.file") && err.contains("schedule.json"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let o = edge(&["run", "--config", "/nonexistent/edge.toml"], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/edge.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_lists_the_commands_and_run_flags() {
    let o = edge(&["--help"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    for word in ["run", "check-config", "plc-sim", "bench"] {
        assert!(out.contains(word), "{word}: {out}");
    }
    let o = edge(&["run", "--help"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--config",
        "--device-id",
        "--mqtt-url",
        "--plc",
        "--data-dir",
        "--telemetry-interval",
    ] {
        assert!(out.contains(flag), "{flag}: {out}");
    }
}

#[test]
fn version_prints_the_package_version_in_a_normal_build() {
    let o = edge(&["--version"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.trim(),
        format!("shiki-edge {}", env!("CARGO_PKG_VERSION"))
    );
}
