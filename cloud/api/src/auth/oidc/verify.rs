//! Verifying a JWT from the provider: header, key, signature, then `iss`, `aud`, `exp`, `nbf`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::keys::{KeyError, KeyKind, ProviderKeys};

/// The claims of a verified token.
pub type Claims = Map<String, Value>;

/// Why a token was refused; [`Refusal::reason`] is the machine-readable `reason` of the 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a signed JWT: {0}")]
    Malformed(String),
    #[error("unsigned tokens (alg \"none\") are never accepted")]
    AlgNone,
    #[error(
        "HMAC-signed tokens (alg {0:?}) are not accepted: the provider's keys are public keys; \
         configure the provider to sign with RS256, PS256, ES256 or EdDSA"
    )]
    Hmac(String),
    #[error("alg {0:?} is not supported (RS256/384/512, PS256/384/512, ES256/384, EdDSA are)")]
    UnsupportedAlg(String),
    #[error("the token names no key (kid) and the provider publishes several")]
    NoKid,
    #[error(
        "the provider publishes no key {0:?}: the token is not from this issuer, or its key was retired"
    )]
    UnknownKid(String),
    #[error("alg {alg:?} does not fit the provider's key {kid:?}")]
    WrongKeyType { alg: String, kid: String },
    #[error("the signature does not verify against the provider's key")]
    BadSignature,
    #[error("the token expired; get a new one from the identity provider")]
    Expired,
    #[error("the token is not valid yet (nbf in the future beyond the allowed clock skew)")]
    NotYetValid,
    #[error("the token was issued by {got:?}, not by the configured issuer {want:?}")]
    WrongIssuer { got: String, want: String },
    #[error("the token is for audience {got}, not {want:?}")]
    WrongAudience { got: String, want: String },
    #[error("the token lacks the {0:?} claim")]
    MissingClaim(String),
}

impl Refusal {
    /// The `reason` of the 401 body.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::AlgNone => "alg_none",
            Refusal::Hmac(_) => "hmac_not_accepted",
            Refusal::UnsupportedAlg(_) => "unsupported_alg",
            Refusal::NoKid => "missing_kid",
            Refusal::UnknownKid(_) => "unknown_kid",
            Refusal::WrongKeyType { .. } => "wrong_key_type",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongIssuer { .. } => "wrong_issuer",
            Refusal::WrongAudience { .. } => "wrong_audience",
            Refusal::MissingClaim(_) => "missing_claim",
        }
    }
}

/// A token could not be checked, or was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    Refused(Refusal),
    /// The provider's keys cannot be fetched and none are held.
    Unavailable(String),
}

impl From<Refusal> for VerifyError {
    fn from(r: Refusal) -> Self {
        VerifyError::Refused(r)
    }
}

/// True when `token` has the shape of a JWS (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Verifies `token`: signed by one of the issuer's keys with an asymmetric algorithm,
/// issued by `issuer`, for `audience`, within its validity (± `leeway`).
pub async fn verify(
    keys: &ProviderKeys,
    token: &str,
    issuer: &str,
    audience: &str,
    leeway: Duration,
) -> Result<Claims, VerifyError> {
    let (alg, kid) = header(token)?;
    let key = match keys.key(kid.as_deref()).await {
        Ok(key) => key,
        Err(KeyError::UnknownKid(kid)) => return Err(Refusal::UnknownKid(kid).into()),
        Err(KeyError::NoKid) => return Err(Refusal::NoKid.into()),
        Err(KeyError::Unavailable(reason)) => return Err(VerifyError::Unavailable(reason)),
    };
    let fits = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => key.kind == KeyKind::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => key.kind == KeyKind::Ec,
        Algorithm::EdDSA => key.kind == KeyKind::Okp,
        _ => false,
    } && key.alg.as_deref().is_none_or(|a| a == format!("{alg:?}"));
    if !fits {
        return Err(Refusal::WrongKeyType {
            alg: format!("{alg:?}"),
            kid: kid.unwrap_or_default(),
        }
        .into());
    }
    let mut validation = Validation::new(alg);
    validation.leeway = leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.set_issuer(&[issuer]);
    // The audience is checked below: Cognito access tokens carry `client_id`, not `aud`.
    validation.validate_aud = false;
    let claims = match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::InvalidSignature => Refusal::BadSignature,
                ErrorKind::ExpiredSignature => Refusal::Expired,
                ErrorKind::ImmatureSignature => Refusal::NotYetValid,
                ErrorKind::InvalidIssuer => Refusal::WrongIssuer {
                    got: unverified_claim(token, "iss").unwrap_or_default(),
                    want: issuer.to_owned(),
                },
                ErrorKind::MissingRequiredClaim(c) => Refusal::MissingClaim(c.clone()),
                ErrorKind::InvalidAlgorithm => Refusal::WrongKeyType {
                    alg: format!("{alg:?}"),
                    kid: kid.unwrap_or_default(),
                },
                _ => Refusal::Malformed(e.to_string()),
            }
            .into());
        }
    };
    check_audience(&claims, audience)?;
    Ok(claims)
}

/// The token's `alg` (refusing `none`, HMAC and unknown ones) and `kid`.
fn header(token: &str) -> Result<(Algorithm, Option<String>), Refusal> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(Refusal::Malformed(format!(
            "{} dot-separated parts, a signed JWT has 3",
            parts.len()
        )));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| Refusal::Malformed("the header is not base64url".into()))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| Refusal::Malformed("the header is not a JSON object".into()))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::Malformed("the header has no alg".into()))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(Refusal::AlgNone);
    }
    if alg.to_ascii_uppercase().starts_with("HS") {
        return Err(Refusal::Hmac(alg.to_owned()));
    }
    let parsed = alg
        .parse::<Algorithm>()
        .map_err(|_| Refusal::UnsupportedAlg(alg.to_owned()))?;
    if header.contains_key("crit") {
        return Err(Refusal::Malformed(
            "the header has critical extensions (crit) this verifier does not know".into(),
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Refusal::Malformed("kid is not a string".into())),
    };
    Ok((parsed, kid))
}

/// `aud` (a string or a list) must contain `audience`; a token without `aud` must carry
/// `client_id` = `audience` (Cognito access tokens).
fn check_audience(claims: &Claims, audience: &str) -> Result<(), Refusal> {
    let wrong = |got: String| Refusal::WrongAudience {
        got,
        want: audience.to_owned(),
    };
    match claims.get("aud") {
        Some(Value::String(a)) if a == audience => Ok(()),
        Some(Value::Array(list)) if list.iter().any(|a| a.as_str() == Some(audience)) => Ok(()),
        Some(other) => Err(wrong(other.to_string())),
        None => match claims.get("client_id") {
            Some(Value::String(c)) if c == audience => Ok(()),
            Some(other) => Err(wrong(format!("none (client_id {other})"))),
            None => Err(wrong("none".into())),
        },
    }
}

/// A claim read without verification, only to say what was wrong after the signature held.
fn unverified_claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    claims.get(name).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with_header(header: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode("{}")
        )
    }

    #[test]
    fn alg_none_hmac_and_unknown_algs_are_refused_before_any_key_is_fetched() {
        assert_eq!(
            header(&token_with_header(r#"{"alg":"none"}"#)),
            Err(Refusal::AlgNone)
        );
        assert_eq!(
            header(&token_with_header(r#"{"alg":"NONE"}"#)),
            Err(Refusal::AlgNone)
        );
        assert_eq!(
            header(&token_with_header(r#"{"alg":"HS256","kid":"k"}"#)),
            Err(Refusal::Hmac("HS256".into()))
        );
        assert_eq!(
            header(&token_with_header(r#"{"alg":"RS1"}"#)),
            Err(Refusal::UnsupportedAlg("RS1".into()))
        );
        assert!(matches!(
            header(&token_with_header(r#"{"alg":"RS256","crit":["x"]}"#)),
            Err(Refusal::Malformed(_))
        ));
        assert_eq!(
            header(&token_with_header(r#"{"alg":"ES256","kid":"a"}"#)),
            Ok((Algorithm::ES256, Some("a".into())))
        );
        assert!(matches!(header("a.b"), Err(Refusal::Malformed(_))));
        assert!(matches!(header("!!.b.c"), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn audience_is_aud_or_for_tokens_without_aud_client_id() {
        let claims = |v: Value| v.as_object().cloned().expect("object");
        let ok = |c: Value| check_audience(&claims(c), "shiki-api");
        assert_eq!(ok(serde_json::json!({"aud": "shiki-api"})), Ok(()));
        assert_eq!(ok(serde_json::json!({"aud": ["x", "shiki-api"]})), Ok(()));
        assert_eq!(ok(serde_json::json!({"client_id": "shiki-api"})), Ok(()));
        assert!(ok(serde_json::json!({"aud": "other"})).is_err());
        // An aud that does not match is not rescued by client_id.
        assert!(ok(serde_json::json!({"aud": "other", "client_id": "shiki-api"})).is_err());
        assert!(ok(serde_json::json!({})).is_err());
    }
}
