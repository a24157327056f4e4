//! The uplink's modes and their transitions. Plain code, tested without a broker.
//!
//! | mode \ input       | Connected (backlog > live max) | Connected (small) | CaughtUp | BacklogGrew      | Disconnected | Shutdown     |
//! |--------------------|--------------------------------|-------------------|----------|------------------|--------------|--------------|
//! | `Offline`          | `DrainingBacklog`              | `Online`          | Offline  | Offline          | Offline      | ShuttingDown |
//! | `Online`           | `DrainingBacklog`              | `Online`          | Online   | `DrainingBacklog`| `Offline`    | ShuttingDown |
//! | `DrainingBacklog`  | `DrainingBacklog`              | `Online`          | `Online` | DrainingBacklog  | `Offline`    | ShuttingDown |
//! | `ShuttingDown`     | ShuttingDown                   | ShuttingDown      | ShuttingDown | ShuttingDown | ShuttingDown | ShuttingDown |
//!
//! In `Online` and `DrainingBacklog` the uplink publishes outbox records; in `Offline` it
//! only waits for the next reconnect; in `ShuttingDown` it publishes nothing new.

/// What the uplink is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No broker session; records keep being committed to the outbox.
    Offline,
    /// Connected and caught up: small live batches.
    Online,
    /// Connected with a backlog: large (compressed) batches, oldest first.
    DrainingBacklog,
    /// Stopping: nothing new is published.
    ShuttingDown,
}

/// What happened to the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A broker session started; `backlog` records are waiting.
    Connected {
        backlog: u64,
    },
    /// Everything committed has been published (at most `live_batch_max` pending).
    CaughtUp,
    /// While online, more than `live_batch_max` records piled up.
    BacklogGrew,
    Disconnected,
    Shutdown,
}

impl Mode {
    /// Whether outbox records are published in this mode.
    pub fn sends(self) -> bool {
        matches!(self, Mode::Online | Mode::DrainingBacklog)
    }

    /// The next mode after `input`; `live_batch_max` separates a backlog from live data.
    pub fn next(self, input: Input, live_batch_max: u64) -> Mode {
        if input == Input::Shutdown {
            return Mode::ShuttingDown;
        }
        match self {
            Mode::Offline => offline(input, live_batch_max),
            Mode::Online => online(input, live_batch_max),
            Mode::DrainingBacklog => draining(input, live_batch_max),
            Mode::ShuttingDown => Mode::ShuttingDown,
        }
    }
}

fn on_connect(backlog: u64, live_batch_max: u64) -> Mode {
    if backlog > live_batch_max {
        Mode::DrainingBacklog
    } else {
        Mode::Online
    }
}

fn offline(input: Input, live_batch_max: u64) -> Mode {
    match input {
        Input::Connected { backlog } => on_connect(backlog, live_batch_max),
        _ => Mode::Offline,
    }
}

fn online(input: Input, live_batch_max: u64) -> Mode {
    match input {
        Input::Connected { backlog } => on_connect(backlog, live_batch_max),
        Input::BacklogGrew => Mode::DrainingBacklog,
        Input::Disconnected => Mode::Offline,
        _ => Mode::Online,
    }
}

fn draining(input: Input, live_batch_max: u64) -> Mode {
    match input {
        Input::Connected { backlog } => on_connect(backlog, live_batch_max),
        Input::CaughtUp => Mode::Online,
        Input::Disconnected => Mode::Offline,
        _ => Mode::DrainingBacklog,
    }
}
