//! Crash test: a real `shiki-edge` process is killed with SIGKILL while buffering (broker
//! unreachable) and while draining its backlog, restarted, and a subscriber on the broker
//! sees every telemetry seq exactly once after de-duplication, in order.

#![allow(clippy::print_stderr)] // diagnostics of the agent process on failure

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Proxy, SeqLog, Subscriber, broker, unique_device};
use shiki_edge::outbox::{NewRecord, OutboxOptions, OutboxStore, RedbOutbox, WriteOp};
use shiki_proto::{Channel, DeviceId, Topics};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);
const PREFILL: u64 = 3000;

struct Agent {
    child: Child,
    ready: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Telemetry seqs the agent logged as committed.
    committed: mpsc::UnboundedReceiver<u64>,
    max_committed: u64,
}

impl Agent {
    fn start(config: &Path, interval: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shiki-edge"))
            .args(["run", "--config"])
            .arg(config)
            .args(["--telemetry-interval", interval])
            .env("SHIKI_LOG", "info,shiki_edge::telemetry=trace")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start shiki-edge");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, committed) = mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("shiki-edge running") {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(());
                    }
                } else if line.contains("committed") && line.contains("stream=telemetry") {
                    let seq = line
                        .split("seq=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|s| s.parse::<u64>().ok());
                    if let Some(seq) = seq {
                        let _ = tx.send(seq);
                    }
                } else if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("agent: {line}");
                }
            }
        });
        Self {
            child,
            ready: Some(ready),
            committed,
            max_committed: 0,
        }
    }

    /// Waits until the agent logged a committed telemetry seq >= `seq`; returns the first
    /// seq it logged in this wait.
    async fn wait_committed(&mut self, seq: u64) -> u64 {
        let mut first = None;
        while self.max_committed < seq {
            let s = tokio::time::timeout(WAIT, self.committed.recv())
                .await
                .expect("agent commits samples within the timeout")
                .expect("agent running");
            first.get_or_insert(s);
            self.max_committed = self.max_committed.max(s);
        }
        first.unwrap_or(self.max_committed)
    }

    async fn kill9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let status = self.child.wait().await.expect("wait");
        assert!(!status.success(), "killed");
    }

    async fn terminate(mut self) {
        if let Some(ready) = self.ready.take() {
            tokio::time::timeout(WAIT, ready)
                .await
                .expect("agent running within the timeout")
                .expect("agent logged that it runs");
        }
        let pid = self.child.id().expect("pid").to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill -TERM");
        assert!(ok.success());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits after SIGTERM within the timeout")
            .expect("wait");
        assert!(status.success(), "clean exit after SIGTERM: {status}");
    }
}

fn write_config(dir: &Path, device: &str, url: &str) -> std::path::PathBuf {
    let path = dir.join("edge.toml");
    let text = format!(
        "device_id = \"{device}\"\n\
         data_dir = \"{}\"\n\
         [mqtt]\n\
         url = \"{url}\"\n\
         keep_alive = \"5s\"\n\
         reconnect_min = \"100ms\"\n\
         reconnect_max = \"300ms\"\n\
         max_inflight_batches = 1\n\
         backlog_batch_bytes = 16384\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

async fn read_telemetry(sub: &mut Subscriber, log: &mut SeqLog, distinct: usize) {
    while log.distinct() < distinct {
        let m = sub.next(WAIT).await;
        log.add_batch(&m.payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seq_arrives_exactly_once_across_sigkill_while_buffering_and_draining() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = unique_device("crash");
    // A slow link (100 ms per chunk towards the broker) so draining takes a while.
    let proxy = Proxy::start(broker(), Duration::from_millis(100), false).await;
    let config = write_config(dir.path(), &device, &proxy.url());
    let topic = Topics::default().topic_for(
        &DeviceId::new(device.clone()).expect("id"),
        &Channel::Telemetry,
    );
    let mut sub = Subscriber::start(&device, &[topic]).await;
    let mut log = SeqLog::default();

    // A backlog from an earlier outage.
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    {
        let mut store =
            RedbOutbox::open(&dir.path().join("data/edge.redb"), OutboxOptions::default())
                .expect("open");
        let ops: Vec<_> = (0..PREFILL)
            .map(|_| {
                WriteOp::Append(NewRecord::Sample {
                    ts: chrono::Utc::now(),
                    values: Default::default(),
                })
            })
            .collect();
        store.apply(&ops).expect("prefill");
    }

    // 1. Buffering (broker unreachable): SIGKILL.
    let mut a = Agent::start(&config, "100ms");
    a.wait_committed(PREFILL + 10).await;
    let before_kill = a.max_committed;
    a.kill9().await;

    // 2. Restart: seqs continue without reuse; then the link comes back and, while the
    //    backlog drains, SIGKILL again.
    let mut a = Agent::start(&config, "100ms");
    let first = a.wait_committed(before_kill + 5).await;
    assert!(
        first > before_kill,
        "seq {first} reused after restart (had {before_kill})"
    );
    proxy.restore();
    read_telemetry(&mut sub, &mut log, 300).await;
    let seen_at_kill = log.distinct();
    a.kill9().await;
    assert!(
        (seen_at_kill as u64) < PREFILL,
        "killed while draining ({seen_at_kill} seen)"
    );

    // 3. Restart with the link up: it drains and goes on sampling; stop it with SIGTERM.
    let mut a = Agent::start(&config, "100ms");
    let target = a
        .wait_committed(before_kill + 30)
        .await
        .max(before_kill + 30);
    read_telemetry(&mut sub, &mut log, target as usize).await;
    a.terminate().await;

    // 4. Whatever was committed last is delivered by one more (idle) run.
    let last = {
        let store = RedbOutbox::open(&dir.path().join("data/edge.redb"), OutboxOptions::default())
            .expect("reopen after exit");
        store.stats().expect("stats").last_telemetry_seq
    };
    let a = Agent::start(&config, "1h");
    read_telemetry(&mut sub, &mut log, last as usize).await;
    a.terminate().await;

    let dups = log.assert_exactly_once_in_order(last);
    eprintln!(
        "crash test: {last} seqs, {} publishes, {dups} duplicates removed",
        log.publishes
    );
}
