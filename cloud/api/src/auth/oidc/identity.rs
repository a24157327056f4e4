//! From verified claims to a [`Caller`]: name, role (from the groups claim through
//! `role_map`), tenant.

use serde_json::Value;

use super::OidcConfig;
use super::verify::Claims;
use crate::auth::{Caller, Role, Via};

/// A verified identity that maps to no role, or carries an unusable tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{name:?} is signed in, but none of its groups ({claim}: {groups:?}) is mapped to a \
         Shiki role; an admin adds one to auth.oidc.role_map"
    )]
    NoRole {
        name: String,
        claim: String,
        groups: Vec<String>,
    },
    #[error("the token's {claim} claim is not a tenant name: {reason}")]
    BadTenant { claim: String, reason: String },
}

/// The caller the claims describe.
pub fn caller(cfg: &OidcConfig, claims: &Claims, via: Via) -> Result<Caller, IdentityError> {
    let name = [cfg.name_claim.as_str(), "email", "sub"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .unwrap_or("unknown")
        .to_owned();
    let groups = groups(claims, &cfg.roles_claim);
    let role: Option<Role> = groups
        .iter()
        .filter_map(|g| cfg.role_map.get(g).copied())
        .max();
    let Some(role) = role else {
        return Err(IdentityError::NoRole {
            name,
            claim: cfg.roles_claim.clone(),
            groups,
        });
    };
    let tenant = match &cfg.tenant_claim {
        None => None,
        Some(claim) => match path(claims, claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => {
                if !crate::devices::valid_tenant(t) {
                    return Err(IdentityError::BadTenant {
                        claim: claim.clone(),
                        reason: format!(
                            "{t:?} is not 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '@' or '-'"
                        ),
                    });
                }
                Some(t.clone())
            }
            Some(other) => {
                return Err(IdentityError::BadTenant {
                    claim: claim.clone(),
                    reason: format!("expected a string, got {other}"),
                });
            }
        },
    };
    Ok(Caller {
        name,
        role,
        tenant,
        via,
    })
}

/// The caller's groups: the claim at `claim` (dots reach into objects), a list of strings
/// or one string.
fn groups(claims: &Claims, claim: &str) -> Vec<String> {
    match path(claims, claim) {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn path<'a>(claims: &'a Claims, claim: &str) -> Option<&'a Value> {
    // A claim whose name itself holds dots (`cognito:groups` has none, but URLs do) wins.
    if let Some(v) = claims.get(claim) {
        return Some(v);
    }
    let mut parts = claim.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> OidcConfig {
        let mut cfg: OidcConfig = toml::from_str(
            r#"
            issuer = "https://idp.example"
            audience = "shiki-api"
            role_map = { "viewers" = "viewer", "ops" = "operator", "admins" = "admin" }
            "#,
        )
        .expect("config");
        cfg.tenant_claim = Some("tenant".into());
        cfg
    }

    fn claims(v: Value) -> Claims {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn the_strongest_mapped_group_wins_and_unmapped_groups_are_ignored() {
        let c = caller(
            &cfg(),
            &claims(json!({"sub": "s1", "preferred_username": "alice", "groups": ["x", "viewers", "ops"]})),
            Via::Oidc,
        )
        .expect("caller");
        assert_eq!(
            (c.name.as_str(), c.role, c.tenant),
            ("alice", Role::Operator, None)
        );
    }

    #[test]
    fn no_mapped_group_is_refused_with_the_groups_it_had() {
        let err = caller(
            &cfg(),
            &claims(json!({"sub": "s1", "groups": ["x"]})),
            Via::Oidc,
        )
        .expect_err("no role");
        assert!(err.to_string().contains("role_map"), "{err}");
        assert!(err.to_string().contains("\"x\""), "{err}");
    }

    #[test]
    fn a_nested_roles_claim_and_a_single_string_group_are_read() {
        let mut cfg = cfg();
        cfg.roles_claim = "realm_access.roles".into();
        let c = caller(
            &cfg,
            &claims(json!({"sub": "s1", "email": "a@x", "realm_access": {"roles": ["admins"]}})),
            Via::Oidc,
        )
        .expect("caller");
        assert_eq!((c.name.as_str(), c.role), ("a@x", Role::Admin));
        cfg.roles_claim = "groups".into();
        let c = caller(
            &cfg,
            &claims(json!({"sub": "s1", "groups": "ops"})),
            Via::Oidc,
        )
        .expect("caller");
        assert_eq!((c.name.as_str(), c.role), ("s1", Role::Operator));
    }

    #[test]
    fn the_tenant_claim_confines_and_a_bad_one_is_refused() {
        let c = caller(
            &cfg(),
            &claims(json!({"sub": "s1", "groups": ["viewers"], "tenant": "acme"})),
            Via::Oidc,
        )
        .expect("caller");
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        assert!(matches!(
            caller(
                &cfg(),
                &claims(json!({"sub": "s1", "groups": ["viewers"], "tenant": 7})),
                Via::Oidc
            ),
            Err(IdentityError::BadTenant { .. })
        ));
        assert!(matches!(
            caller(
                &cfg(),
                &claims(json!({"sub": "s1", "groups": ["viewers"], "tenant": "no spaces allowed"})),
                Via::Oidc
            ),
            Err(IdentityError::BadTenant { .. })
        ));
    }
}
