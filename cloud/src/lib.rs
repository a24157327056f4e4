//! Shiki cloud: embedded broker, device actors, history store, verification, alerts and
//! the admin API.
//!
//! # Layout
//! - `api`: the admin API (actix-web) and the [`api::Backend`] trait it calls.
//! - `auth`: bearer tokens, hashing and roles.

pub mod api;
pub mod auth;
