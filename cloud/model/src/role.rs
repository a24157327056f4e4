//! Roles and what they may do.

use serde::{Deserialize, Serialize};

/// What a token may do. Ordered: each role can do everything the roles before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read devices, history, telemetry and events.
    Viewer,
    /// Viewer, plus change desired state (and later upload schedules).
    Operator,
    /// Everything, including managing tokens.
    Admin,
}

impl Role {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// True when this role includes the rights of `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

/// A role name that is not `viewer`, `operator` or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected viewer, operator or admin")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    /// Parses the lowercase name ([`Role::as_str`]); anything else is an error, never a
    /// fallback to a weaker or stronger role.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_parses_back_from_its_name_and_nothing_else_parses() {
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).expect("serialises"),
                serde_json::json!(role.as_str())
            );
        }
        for bad in ["", "Admin", "root", "viewer "] {
            let err = bad.parse::<Role>().expect_err(bad);
            assert!(
                err.to_string()
                    .contains("expected viewer, operator or admin")
            );
        }
        assert!(serde_json::from_str::<Role>("\"superuser\"").is_err());
    }
}
