//! The `shiki-cloud` binary: readable help, first start prints the admin token once,
//! SIGTERM flushes the store and exits cleanly, the store reopens, and `bench` prints its
//! figures.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_shiki-cloud");

/// Asserts that `shiki-cloud <subcommand> --help` mentions every one of `flags`.
fn assert_help_lists(subcommand: &str, flags: &[&str]) {
    let out = Command::new(BIN)
        .args([subcommand, "--help"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in flags {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn serve_help_lists_every_override() {
    assert_help_lists(
        "serve",
        &[
            "--config",
            "--data-dir",
            "--mqtt-listen",
            "--mqtt-url",
            "--api-listen",
        ],
    );
}

#[test]
fn bench_help_lists_every_option() {
    assert_help_lists(
        "bench",
        &[
            "--devices",
            "--messages",
            "--changes",
            "--only",
            "--mqtt-url",
            "--ack-on-receipt",
            "--ack-after-commit",
            "--rounds",
        ],
    );
}

#[test]
fn a_small_bench_prints_the_figures_of_every_benchmark() {
    let out = Command::new(BIN)
        .args(["bench", "--devices", "10", "--changes", "2"])
        .args(["--messages", "200", "--rounds", "1"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for figures in [
        "ingest round 1: bare subscriber",
        "ingest (ack_after_commit = false): 1 × 200 telemetry messages via the embedded broker",
        "(200 stored)",
        "ingest CPU, cloud phase:",
        "verify (embedded broker, 0 ms idle between changes): 2 desired changes",
        "verify (embedded broker, 100 ms idle between changes): 2 desired changes",
        "actors: 10 device actors resident",
    ] {
        assert!(text.contains(figures), "{figures:?} missing from:\n{text}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts `serve`, returns the first stdout line (or None) and the exit status after SIGTERM.
fn serve_once(data: &std::path::Path) -> (Option<String>, std::process::ExitStatus) {
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--mqtt-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--api-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env_remove("SHIKI_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let out_tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(format!("OUT {line}"));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(format!("ERR {line}"));
        }
    });
    // Wait for "started" in the log.
    let mut token = None;
    let mut note = |line: &str| {
        if let Some(l) = line.strip_prefix("OUT ")
            && l.starts_with("shiki_")
        {
            token = Some(l.to_owned());
        }
    };
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server starts");
        note(&line);
        if line.contains("shiki-cloud started") {
            break;
        }
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let mut flushed = false;
    // Until both pipes close (the process exited).
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        note(&line);
        flushed |= line.contains("store flushed");
    }
    let status = child.wait().expect("exits");
    assert!(flushed, "no flush message before exit");
    (token, status)
}

#[test]
fn first_start_prints_an_admin_token_once_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (token, status) = serve_once(dir.path());
    assert!(status.success(), "{status:?}");
    let token = token.expect("admin token printed on first start");
    assert_eq!(token.len(), "shiki_".len() + 64);
    // Second start: the store reopens and no new token is printed.
    let (again, status) = serve_once(dir.path());
    assert!(status.success());
    assert_eq!(again, None);
}
