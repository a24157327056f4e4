//! Web sign-ins held server-side: the browser holds only a random session id in an
//! HttpOnly cookie; tokens never reach the page. Also the logins under way (state, nonce,
//! PKCE verifier) between `/auth/login` and `/auth/callback`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::auth::Caller;

/// Most sessions held; past it the oldest is dropped (that user signs in again).
const MAX_SESSIONS: usize = 10_000;
/// Most logins under way; past it the oldest is dropped.
const MAX_PENDING: usize = 1_000;
/// How long a login may take at the provider.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

/// 256 random bits, base64url.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE `S256` challenge of `verifier`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// For the provider's sign-out (`id_token_hint`).
    pub id_token: String,
    created: Instant,
    expires: Instant,
}

/// Sessions by the SHA-256 of their id (a memory dump does not hand out live sessions).
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session; returns its id (the cookie's value).
    pub fn create(&self, caller: Caller, id_token: String, ttl: Duration) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            key(&id),
            Session {
                caller,
                id_token,
                created: now,
                expires: now + ttl,
            },
        );
        id
    }

    /// The session `id` names, if it is live.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(id);
        match map.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session `id`.
    pub fn remove(&self, id: &str) -> Option<Session> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(id))
    }

    /// How many sessions are live (metrics, tests).
    pub fn live(&self) -> usize {
        let now = Instant::now();
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| s.expires > now)
            .count()
    }
}

/// A login under way.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub verifier: String,
    pub nonce: String,
    pub return_to: String,
    created: Instant,
}

/// Logins under way, by `state`.
#[derive(Debug, Default)]
pub struct PendingLogins {
    inner: Mutex<HashMap<String, PendingLogin>>,
}

impl PendingLogins {
    /// Starts a login; returns its `state`.
    pub fn start(&self, return_to: String) -> (String, PendingLogin) {
        let state = random_token();
        let login = PendingLogin {
            verifier: random_token(),
            nonce: random_token(),
            return_to,
            created: Instant::now(),
        };
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, l| l.created.elapsed() < LOGIN_TTL);
        if map.len() >= MAX_PENDING
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, l)| l.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(state.clone(), login.clone());
        (state, login)
    }

    /// Takes the login `state` names (each state is used once).
    pub fn take(&self, state: &str) -> Option<PendingLogin> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .filter(|l| l.created.elapsed() < LOGIN_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, Via};

    fn alice() -> Caller {
        Caller {
            name: "alice".into(),
            role: Role::Viewer,
            tenant: None,
            via: Via::Session,
        }
    }

    #[test]
    fn a_session_is_found_by_its_id_until_removed_or_expired() {
        let s = Sessions::default();
        let id = s.create(alice(), "idt".into(), Duration::from_secs(60));
        assert_eq!(s.get(&id).map(|x| x.caller.name), Some("alice".into()));
        assert!(s.get("not-an-id").is_none());
        assert!(s.remove(&id).is_some());
        assert!(s.get(&id).is_none());
        let gone = s.create(alice(), "idt".into(), Duration::ZERO);
        assert!(s.get(&gone).is_none(), "expired at once");
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn a_login_state_is_used_once() {
        let p = PendingLogins::default();
        let (state, login) = p.start("/".into());
        assert_eq!(p.take(&state).map(|l| l.verifier), Some(login.verifier));
        assert!(p.take(&state).is_none());
    }

    #[test]
    fn the_pkce_challenge_is_the_unpadded_base64url_sha256_of_the_verifier() {
        // Expected value computed apart: Python's hashlib + base64.urlsafe_b64encode.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXFcMkEjXk"),
            "5w_2x213SBW0gj9Ay2r_NBlQOhiXB6B4Ajt-WglYeN0"
        );
        assert_eq!(random_token().len(), 43);
    }
}
