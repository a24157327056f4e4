//! Bearer-token authentication for the admin API.
//!
//! Tokens are `shiki_` followed by 64 hex digits (256 random bits). Only the SHA-256 of a
//! token is stored; a token is looked up by its hash. `SHIKI_ADMIN_TOKEN`, when configured,
//! always authenticates as admin.

mod role;
mod token;

pub use role::Role;
pub use token::{TOKEN_PREFIX, generate_token, hash_token};
