//! Child processes that are killed when the test drops them, with their output in a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

/// Path of a workspace binary (`shiki-edge`, `shiki-cloud`) of the same profile as the test
/// (or as the running binary, e.g. `shiki-chaos`). Builds it with cargo when it is not
/// there yet.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>; a binary of this
    // crate runs from target/<profile>/ itself.
    let parent = exe.parent().context("the executable has no directory")?;
    let dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent
            .parent()
            .context("test executable has no target/<profile> directory")?
    } else {
        parent
    };
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let pkg = name.to_owned();
        let status = Command::new(cargo)
            .args(["build", "-p", &pkg, "--bin", name])
            .status()
            .with_context(|| format!("running cargo build for {name}"))?;
        anyhow::ensure!(status.success(), "cargo build of {name} failed");
    }
    anyhow::ensure!(path.exists(), "{} not found after build", path.display());
    Ok(path)
}

/// A free TCP port on 127.0.0.1, for servers that cannot bind port 0 and report it
/// (rumqttd). Racy by nature: callers retry on a clash.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding port 0")?;
    Ok(l.local_addr()?.port())
}

/// A running child process; SIGKILLed on drop. Its stdout and stderr go to `log`.
#[derive(Debug)]
pub struct Child {
    name: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `bin` with `args`, logging to `<log_dir>/<name>.log` (appending, so a restarted
    /// process keeps its earlier output).
    pub fn spawn(
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .env("SHIKI_LOG", "info,rumqttd=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} {}", bin.display(), args.join(" ")))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process output so far (for assertions and failure messages).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a power cut would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> anyhow::Result<Option<i32>> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("sending SIGTERM")?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", self.name);
        let status = self.child.wait().context("waiting for exit")?;
        Ok(status.code())
    }
}

#[allow(
    clippy::print_stderr,
    reason = "test harness: a failing test shows its child's output"
)]
impl Drop for Child {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill9();
        }
        if std::thread::panicking() {
            tracing::error!(name = %self.name, output = %self.output(), "child output");
            eprintln!(
                "----- {} output ({}) -----\n{}",
                self.name,
                self.log.display(),
                self.output()
            );
        }
    }
}
