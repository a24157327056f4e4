//! The outbox writer thread and the async [`OutboxHandle`] actors use.
//!
//! Every request goes through one channel to one thread that owns the store. The thread
//! takes everything queued (up to [`MAX_GROUP`] writes), applies the writes in one
//! transaction with one fsync (group commit), and only then answers each caller. Reads are
//! served in queue order, after the writes queued before them.
//!
//! Acknowledgements are deferred: the thread answers them at once and folds the deletion
//! into the next durable commit (or applies it before a `stats` read or at close). A lost
//! deletion only causes a re-send that the cloud de-duplicates, and this halves the
//! commits (and the bytes written) of an online gateway.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::schedule::StoredSchedules;

use super::{
    NewRecord, OutboxError, OutboxStats, OutboxStore, StoredRecord, Stream, WriteOp, WriteOutcome,
};

/// Most writes grouped into one transaction.
pub const MAX_GROUP: usize = 8192;

/// Last committed seq of each stream, published after every commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub telemetry: u64,
    pub events: u64,
}

impl Committed {
    pub fn get(&self, stream: Stream) -> u64 {
        match stream {
            Stream::Telemetry => self.telemetry,
            Stream::Events => self.events,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;

enum Command {
    Write(WriteOp, Reply<WriteOutcome>),
    Peek {
        stream: Stream,
        from: u64,
        max_count: usize,
        max_bytes: usize,
        reply: Reply<Vec<StoredRecord>>,
    },
    Stats(Reply<OutboxStats>),
    GetDoc(String, Reply<Option<Vec<u8>>>),
    AuditTail(usize, Reply<Vec<(u64, super::AuditEntry)>>),
    LoadSchedules(Reply<StoredSchedules>),
    Close(oneshot::Sender<()>),
}

/// Cloneable async access to the outbox writer thread.
#[derive(Debug, Clone)]
pub struct OutboxHandle {
    tx: mpsc::Sender<Command>,
    committed: watch::Receiver<Committed>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outbox command")
    }
}

impl OutboxHandle {
    /// Starts the writer thread over `store`. The thread ends when every handle is dropped
    /// or [`OutboxHandle::close`] is called; the join handle lets the owner wait for it.
    pub fn start<S: OutboxStore>(store: S) -> Result<(Self, JoinHandle<()>), OutboxError> {
        Self::start_with(store, Duration::ZERO)
    }

    /// Like [`OutboxHandle::start`], but telemetry samples are held up to `commit_interval`
    /// so that several are committed with one fsync (see `outbox.commit_interval`). Events,
    /// documents, reads and close commit held samples at once.
    pub fn start_with<S: OutboxStore>(
        store: S,
        commit_interval: Duration,
    ) -> Result<(Self, JoinHandle<()>), OutboxError> {
        let stats = store.stats()?;
        let (watch_tx, committed) = watch::channel(Committed {
            telemetry: stats.last_telemetry_seq,
            events: stats.last_event_seq,
        });
        let (tx, rx) = mpsc::channel();
        let join = std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer_loop(store, rx, watch_tx, commit_interval))
            .map_err(|e| OutboxError::Storage {
                op: "start writer thread",
                detail: e.to_string(),
            })?;
        Ok((Self { tx, committed }, join))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| OutboxError::WriterGone)?;
        rx.await.map_err(|_| OutboxError::WriterGone)?
    }

    /// Commits one write durably (grouped with whatever else is queued).
    pub async fn write(&self, op: WriteOp) -> Result<WriteOutcome, OutboxError> {
        self.call(|r| Command::Write(op, r)).await
    }

    /// Queues a write now (so writes submitted one after another commit in that order)
    /// and returns a receiver for its outcome.
    pub fn submit(&self, op: WriteOp) -> oneshot::Receiver<Result<WriteOutcome, OutboxError>> {
        let (reply, rx) = oneshot::channel();
        // If the writer is gone the reply sender is dropped and the receiver reports it.
        let _ = self.tx.send(Command::Write(op, reply));
        rx
    }

    /// Appends a record; answers its seq once it is durable.
    pub async fn append(&self, record: NewRecord) -> Result<u64, OutboxError> {
        match self.write(WriteOp::Append(record)).await? {
            WriteOutcome::Appended { seq, .. } => Ok(seq),
            other => Err(OutboxError::Storage {
                op: "append",
                detail: format!("unexpected outcome {other:?}"),
            }),
        }
    }

    /// Deletes records of `stream` up to `up_to` (after their PUBACK).
    pub async fn ack(&self, stream: Stream, up_to: u64) -> Result<u64, OutboxError> {
        match self.write(WriteOp::Ack { stream, up_to }).await? {
            WriteOutcome::Acked { deleted } => Ok(deleted),
            _ => Ok(0),
        }
    }

    pub async fn put_doc(&self, key: &str, value: Vec<u8>) -> Result<(), OutboxError> {
        self.write(WriteOp::PutDoc {
            key: key.to_owned(),
            value,
        })
        .await
        .map(|_| ())
    }

    pub async fn get_doc(&self, key: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        let key = key.to_owned();
        self.call(|r| Command::GetDoc(key, r)).await
    }

    pub async fn peek_from(
        &self,
        stream: Stream,
        from: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, OutboxError> {
        self.call(|reply| Command::Peek {
            stream,
            from,
            max_count,
            max_bytes,
            reply,
        })
        .await
    }

    /// The newest `n` entries of the local audit log, oldest first.
    pub async fn audit_tail(&self, n: usize) -> Result<Vec<(u64, super::AuditEntry)>, OutboxError> {
        self.call(|r| Command::AuditTail(n, r)).await
    }

    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        self.call(Command::Stats).await
    }

    /// Both stored schedule slots.
    pub async fn load_schedules(&self) -> Result<StoredSchedules, OutboxError> {
        self.call(Command::LoadSchedules).await
    }

    /// Replaces both schedule slots in one durable transaction.
    pub async fn save_schedules(&self, pair: StoredSchedules) -> Result<(), OutboxError> {
        self.write(WriteOp::PutSchedules(pair)).await.map(|_| ())
    }

    /// Like [`OutboxHandle::load_schedules`], for a thread that may block (not an async
    /// task): used by the schedule store on the blocking pool.
    pub fn load_schedules_blocking(&self) -> Result<StoredSchedules, OutboxError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::LoadSchedules(reply))
            .map_err(|_| OutboxError::WriterGone)?;
        rx.blocking_recv().map_err(|_| OutboxError::WriterGone)?
    }

    /// Like [`OutboxHandle::save_schedules`], for a thread that may block.
    pub fn save_schedules_blocking(&self, pair: StoredSchedules) -> Result<(), OutboxError> {
        self.submit(WriteOp::PutSchedules(pair))
            .blocking_recv()
            .map_err(|_| OutboxError::WriterGone)?
            .map(|_| ())
    }

    /// Watches the last committed seq of each stream.
    pub fn committed(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    /// Finishes every queued write, then stops the writer thread.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn writer_loop<S: OutboxStore>(
    mut store: S,
    rx: mpsc::Receiver<Command>,
    watch_tx: watch::Sender<Committed>,
    commit_interval: Duration,
) {
    let mut writes: Vec<(WriteOp, Reply<WriteOutcome>)> = Vec::new();
    let mut others: Vec<Command> = Vec::new();
    let mut deferred: Deferred = Deferred::default();
    // When the oldest held (uncommitted) sample arrived.
    let mut held_since: Option<Instant> = None;
    loop {
        let first = match held_since {
            None => match rx.recv() {
                Ok(c) => c,
                Err(_) => break,
            },
            Some(since) => {
                let wait = commit_interval.saturating_sub(since.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        commit(&mut store, &mut writes, &mut deferred, &watch_tx);
                        held_since = None;
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let mut queue = vec![first];
        while queue.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(cmd) => queue.push(cmd),
                Err(_) => break,
            }
        }
        let mut closing = None;
        for cmd in queue {
            match cmd {
                Command::Write(WriteOp::Ack { stream, up_to }, reply) => {
                    deferred.add(stream, up_to);
                    let _ = reply.send(Ok(WriteOutcome::Acked { deleted: 0 }));
                }
                Command::Write(op, reply) => writes.push((op, reply)),
                Command::Close(done) => {
                    closing = Some(done);
                }
                other => {
                    // A read sees every write queued before it.
                    if matches!(other, Command::Stats(_)) {
                        deferred.flush_into(&mut store);
                    }
                    commit(&mut store, &mut writes, &mut deferred, &watch_tx);
                    others.push(other);
                    serve_reads(&store, &mut others);
                }
            }
        }
        let only_samples = writes
            .iter()
            .all(|(op, _)| matches!(op, WriteOp::Append(NewRecord::Sample { .. })));
        let since = *held_since.get_or_insert_with(Instant::now);
        if closing.is_some()
            || commit_interval.is_zero()
            || !only_samples
            || since.elapsed() >= commit_interval
        {
            commit(&mut store, &mut writes, &mut deferred, &watch_tx);
        }
        if writes.is_empty() {
            held_since = None;
        }
        if let Some(done) = closing {
            // Drain what arrived meanwhile so no acknowledged caller is left waiting.
            while let Ok(cmd) = rx.try_recv() {
                match cmd {
                    Command::Write(op, reply) => writes.push((op, reply)),
                    Command::Close(d) => drop(d),
                    other => others.push(other),
                }
            }
            final_flush(&mut store, &mut writes, &mut deferred, &watch_tx);
            serve_reads(&store, &mut others);
            tracing::debug!("outbox writer closed");
            let _ = done.send(());
            return;
        }
    }
    // Every handle was dropped without close: still commit what is held.
    final_flush(&mut store, &mut writes, &mut deferred, &watch_tx);
}

/// Commits held writes, then makes the last acknowledgements durable.
fn final_flush<S: OutboxStore>(
    store: &mut S,
    writes: &mut Vec<(WriteOp, Reply<WriteOutcome>)>,
    deferred: &mut Deferred,
    watch_tx: &watch::Sender<Committed>,
) {
    commit(store, writes, deferred, watch_tx);
    let mut ops = deferred.take();
    if !ops.is_empty() {
        ops.push(WriteOp::PutDoc {
            key: "outbox.closed_at".into(),
            value: chrono::Utc::now().to_rfc3339().into_bytes(),
        });
        if let Err(e) = store.apply(&ops) {
            tracing::warn!(error = %e, "final acknowledgements not stored; records will be re-sent");
        }
    }
}

/// Acknowledgements not yet applied: highest acked seq per stream.
#[derive(Debug, Default)]
struct Deferred(std::collections::BTreeMap<Stream, u64>);

impl Deferred {
    fn add(&mut self, stream: Stream, up_to: u64) {
        let e = self.0.entry(stream).or_insert(up_to);
        *e = (*e).max(up_to);
    }

    fn take(&mut self) -> Vec<WriteOp> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(stream, up_to)| WriteOp::Ack { stream, up_to })
            .collect()
    }

    /// Applies the acknowledgements in a lazily durable transaction of their own.
    fn flush_into<S: OutboxStore>(&mut self, store: &mut S) {
        let acks = self.take();
        if !acks.is_empty()
            && let Err(e) = store.apply(&acks)
        {
            tracing::warn!(error = %e, "acknowledgements not applied; records will be re-sent");
        }
    }
}

fn commit<S: OutboxStore>(
    store: &mut S,
    writes: &mut Vec<(WriteOp, Reply<WriteOutcome>)>,
    deferred: &mut Deferred,
    watch_tx: &watch::Sender<Committed>,
) {
    if writes.is_empty() {
        return;
    }
    let (ops, replies): (Vec<_>, Vec<_>) = std::mem::take(writes).into_iter().unzip();
    // Deferred acknowledgements ride along with this durable commit.
    let acks = deferred.take();
    let n_acks = acks.len();
    let all: Vec<WriteOp> = acks.into_iter().chain(ops).collect();
    match store.apply(&all).map(|mut o| o.split_off(n_acks)) {
        Ok(outcomes) => {
            let mut committed = *watch_tx.borrow();
            let mut changed = false;
            for o in &outcomes {
                if let WriteOutcome::Appended { stream, seq } = o {
                    changed = true;
                    match stream {
                        Stream::Telemetry => committed.telemetry = committed.telemetry.max(*seq),
                        Stream::Events => committed.events = committed.events.max(*seq),
                    }
                }
            }
            if changed {
                // The quota may have appended a DataDropped event: read the counters back.
                if let Ok(stats) = store.stats() {
                    committed.telemetry = stats.last_telemetry_seq;
                    committed.events = stats.last_event_seq;
                }
                watch_tx.send_replace(committed);
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, writes = replies.len(), "outbox group commit failed");
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn serve_reads<S: OutboxStore>(store: &S, others: &mut Vec<Command>) {
    for cmd in others.drain(..) {
        match cmd {
            Command::Peek {
                stream,
                from,
                max_count,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(store.peek_from(stream, from, max_count, max_bytes));
            }
            Command::Stats(reply) => {
                let _ = reply.send(store.stats());
            }
            Command::GetDoc(key, reply) => {
                let _ = reply.send(store.get_doc(&key));
            }
            Command::AuditTail(n, reply) => {
                let _ = reply.send(store.audit_tail(n));
            }
            Command::LoadSchedules(reply) => {
                let _ = reply.send(store.load_schedules());
            }
            Command::Write(..) | Command::Close(_) => {}
        }
    }
}
