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
        // The PostgreSQL figures too, on a scratch database (made and dropped by the bench).
        .args(["--postgres", &postgres_server()])
        .args([
            "--query-devices",
            "2",
            "--query-days",
            "2",
            "--query-runs",
            "2",
        ])
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
        "ingest (ack_after_commit = false): 1 × 200 telemetry messages of 2 points via the embedded broker",
        "cloud ingest into redb",
        "cloud ingest into PostgreSQL",
        "(200 stored)",
        "query bench: loaded 5760 samples (2 devices × 2 days at 1 min, 13 points each)",
        "query bench: last 24 h, 1-minute points, 2 series (raw samples): p50",
        "query bench: whole range, ~1,000 points, 2 series (hourly rollup): p50",
        "query bench: API read: last 24 h of samples, decoded (Store::telemetry): p50",
        "B per sample",
        "ingest CPU, cloud phase:",
        "verify (embedded broker, 0 ms idle between changes): 2 desired changes",
        "verify (embedded broker, 100 ms idle between changes): 2 desired changes",
        "actors: 10 device actors resident",
    ] {
        assert!(text.contains(figures), "{figures:?} missing from:\n{text}");
    }
}

/// The PostgreSQL server the tests may make scratch databases on.
fn postgres_server() -> String {
    std::env::var("SHIKI_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
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

/// Runs `shiki-cloud ota <args>` with no config and no cloud; (success, stdout, stderr).
fn ota(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("ota")
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ota_keygen_writes_a_private_key_and_a_one_line_public_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("release");
    let (ok, stdout, stderr) = ota(&["keygen".as_ref(), "--out".as_ref(), keys.as_os_str()]);
    assert!(ok, "{stdout}\n{stderr}");
    let secret = keys.join("ota.key");
    let mode = std::fs::metadata(&secret)
        .expect("ota.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = std::fs::read_to_string(keys.join("ota.pub")).expect("ota.pub");
    assert_eq!(public.lines().count(), 1, "{public:?}");
    shiki_shared::ota::TrustedKeys::parse(&[public.trim()]).expect("a public key");
    let key_text = std::fs::read_to_string(&secret).expect("read");
    shiki_shared::ota::ReleaseKey::from_file_text(&key_text).expect("a release key");

    let (ok, _, stderr) = ota(&["keygen".as_ref(), "--out".as_ref(), keys.as_os_str()]);
    assert!(!ok, "a second keygen must fail");
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&secret).expect("read"),
        key_text,
        "the key is untouched"
    );
}

#[test]
fn ota_sign_prints_a_signature_that_verifies_as_its_last_line() {
    use shiki_shared::ota::{Manifest, TrustedKeys};
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, stderr) = ota(&["keygen".as_ref(), "--out".as_ref(), dir.path().as_os_str()]);
    assert!(ok, "{stderr}");
    let build = dir.path().join("shiki-edge");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&build, &bytes).expect("build");
    let key = dir.path().join("ota.key");
    let sign = |version: &str| {
        ota(&[
            "sign".as_ref(),
            "--key".as_ref(),
            key.as_os_str(),
            "--file".as_ref(),
            build.as_os_str(),
            "--version".as_ref(),
            version.as_ref(),
        ])
    };
    let (ok, stdout, stderr) = sign("0.2.0");
    assert!(ok, "{stdout}\n{stderr}");
    let manifest = Manifest::for_bytes("0.2.0", &bytes);
    assert!(stdout.contains(&manifest.sha256), "{stdout}");
    assert!(stdout.contains("200000"), "{stdout}");
    let signature = stdout.lines().last().expect("a last line");
    let public = std::fs::read_to_string(dir.path().join("ota.pub")).expect("ota.pub");
    let trusted = TrustedKeys::parse(&[public.trim()]).expect("key");
    trusted.verify(&manifest, signature).expect("verifies");
    assert!(
        trusted
            .verify(&Manifest::for_bytes("0.2.1", &bytes), signature)
            .is_err()
    );

    let (ok, _, stderr) = sign("0.2 .0");
    assert!(!ok);
    assert!(stderr.contains("cannot be signed"), "{stderr}");
}
