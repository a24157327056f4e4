//! Over-the-air updates of `shiki-edge` (see docs/adr/edge-ota-trial-and-rollback.md).

pub mod download;
#[cfg(test)]
mod download_tests;
pub mod state;
#[cfg(test)]
mod state_tests;
pub mod verify;
