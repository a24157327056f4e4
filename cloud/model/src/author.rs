//! [`Author`]: who made a settings change (an operator, an API key with its role, the
//! schedule, the device), and its stored form [`AuthorRecord`].

use std::fmt;

use serde::{Deserialize, Serialize};
use shiki_proto::DeviceId;

use crate::Role;

/// Who made a settings change, recorded with every history entry. Stored as
/// [`AuthorRecord`] (`{"kind", "name"?, "role"?}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "AuthorRecord")]
pub enum Author {
    /// A person by name (written by tools; the API records [`Author::User`] or
    /// [`Author::ApiKey`]).
    Operator(String),
    /// Someone signed in at the identity provider (OIDC), with the role it held.
    User { name: String, role: Option<Role> },
    /// An API token: its name and the role it held when it acted (`None` only in entries
    /// recorded before roles were kept).
    ApiKey { name: String, role: Option<Role> },
    /// The yearly schedule (also: an override that expired).
    Schedule,
    /// The device itself (reported changes), by its id.
    Device(DeviceId),
}

impl Author {
    /// Someone signed in at the identity provider, acting with `role`.
    pub fn user(name: impl Into<String>, role: Role) -> Self {
        Author::User {
            name: name.into(),
            role: Some(role),
        }
    }

    /// An API token acting with `role`.
    pub fn api_key(name: impl Into<String>, role: Role) -> Self {
        Author::ApiKey {
            name: name.into(),
            role: Some(role),
        }
    }
}

/// `kind:name`, as schedules record who set them (`set_by`); the role is not part of it.
impl fmt::Display for Author {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Author::Operator(n) => write!(f, "operator:{n}"),
            Author::User { name, .. } => write!(f, "user:{name}"),
            Author::ApiKey { name, .. } => write!(f, "api-key:{name}"),
            Author::Schedule => f.write_str("schedule"),
            Author::Device(id) => write!(f, "device:{id}"),
        }
    }
}

/// How an [`Author`] is stored: `{"kind", "name"?, "role"?}`. Entries written before roles
/// and device ids were kept have neither; [`AuthorRecord::into_author`] reads them too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorRecord {
    kind: AuthorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AuthorKind {
    Operator,
    User,
    ApiKey,
    Schedule,
    Device,
}

impl From<Author> for AuthorRecord {
    fn from(actor: Author) -> Self {
        let (kind, name, role) = match actor {
            Author::Operator(name) => (AuthorKind::Operator, Some(name), None),
            Author::User { name, role } => (AuthorKind::User, Some(name), role),
            Author::ApiKey { name, role } => (AuthorKind::ApiKey, Some(name), role),
            Author::Schedule => (AuthorKind::Schedule, None, None),
            Author::Device(id) => (AuthorKind::Device, Some(id.to_string()), None),
        };
        AuthorRecord { kind, name, role }
    }
}

impl AuthorRecord {
    /// The author of a history entry of `device` (an old device entry names no id: it is
    /// `device`, the only device that reports its own changes).
    pub fn into_author(self, device: &DeviceId) -> Author {
        match self.kind {
            AuthorKind::Operator => Author::Operator(self.name.unwrap_or_default()),
            AuthorKind::User => Author::User {
                name: self.name.unwrap_or_default(),
                role: self.role,
            },
            AuthorKind::ApiKey => Author::ApiKey {
                name: self.name.unwrap_or_default(),
                role: self.role,
            },
            AuthorKind::Schedule => Author::Schedule,
            AuthorKind::Device => Author::Device(
                self.name
                    .and_then(|n| DeviceId::new(n).ok())
                    .unwrap_or_else(|| device.clone()),
            ),
        }
    }
}
