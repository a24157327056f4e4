//! Messages only the PlcLink takes (the shared ones are in [`crate::messages`]).

use actix::{Message, Recipient};

use crate::messages::Readings;

/// Add a subscriber for every future [`Readings`].
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<Readings>);

/// Poll now instead of waiting for the next `poll_interval` tick (the regular schedule
/// continues). Useful after start-up and in tests.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PollNow;
