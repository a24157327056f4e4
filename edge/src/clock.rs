//! A small clock abstraction so time can be injected in tests. (To be replaced by
//! `shiki_shared::clock` once the shared crate lands.)

use chrono::{DateTime, Utc};

/// Wall-clock time source.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
