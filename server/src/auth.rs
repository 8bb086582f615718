//! Authentication: Basic credentials exchanged for a bearer token in `Handshake`.
//!
//! With no users configured, every call is accepted (the quickstart default). With users, a client
//! either calls `Handshake` with `authorization: Basic …` and receives a token in the
//! `authorization: Bearer …` response header (and the handshake payload), or sends Basic
//! credentials on each call; every other call must carry a valid credential or is refused with
//! UNAUTHENTICATED.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use tonic::metadata::MetadataMap;

use crate::error::Error;

/// Tokens kept at most; the oldest are dropped beyond this.
const MAX_TOKENS: usize = 100_000;

/// Users and token lifetime.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// user → password. Empty: authentication is off.
    pub users: HashMap<String, String>,
    /// How long an issued bearer token is valid.
    pub token_ttl: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        f.debug_struct("AuthConfig")
            .field("users", &users)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

impl AuthConfig {
    /// Parses `user:password` entries separated by commas or new lines (`#` starts a comment).
    pub fn parse_users(text: &str) -> Result<HashMap<String, String>, String> {
        let mut users = HashMap::new();
        for entry in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'))
        {
            let (user, password) = entry
                .split_once(':')
                .ok_or_else(|| format!("user entry {:?} is not user:password", mask(entry)))?;
            if user.is_empty() || password.is_empty() {
                return Err(format!(
                    "user entry {:?} has an empty user or password",
                    mask(entry)
                ));
            }
            users.insert(user.to_string(), password.to_string());
        }
        Ok(users)
    }
}

fn mask(entry: &str) -> String {
    match entry.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".into(),
    }
}

/// Checks credentials and issues tokens.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            tokens: Mutex::default(),
        }
    }

    /// True when users are configured.
    pub fn enabled(&self) -> bool {
        !self.config.users.is_empty()
    }

    /// Handles a `Handshake`: verifies Basic credentials and returns a new bearer token.
    /// `None` when authentication is off.
    pub fn handshake(&self, metadata: &MetadataMap) -> Result<Option<String>, Error> {
        if !self.enabled() {
            return Ok(None);
        }
        let header = authorization(metadata).ok_or_else(|| {
            Error::Unauthenticated(
                "authentication required: send 'authorization: Basic <base64 user:password>' \
                 in the handshake"
                    .into(),
            )
        })?;
        let basic = header.strip_prefix("Basic ").ok_or_else(|| {
            Error::Unauthenticated("the handshake needs Basic credentials".into())
        })?;
        let user = self.verify_basic(basic)?;
        let mut raw = [0_u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let mut tokens = self.tokens.lock().expect("token lock poisoned");
        let now = Instant::now();
        tokens.retain(|_, (_, expiry)| *expiry > now);
        if tokens.len() >= MAX_TOKENS
            && let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, (_, expiry))| *expiry)
                .map(|(t, _)| t.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(token.clone(), (user, now + self.config.token_ttl));
        Ok(Some(token))
    }

    /// Checks the credentials of any call other than `Handshake`.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        let header = authorization(metadata).ok_or_else(|| {
            Error::Unauthenticated(
                "authentication required: send 'authorization: Basic <base64 user:password>', \
                 or the 'authorization: Bearer <token>' a Flight SQL Handshake returned"
                    .into(),
            )
        })?;
        if let Some(token) = header.strip_prefix("Bearer ") {
            let tokens = self.tokens.lock().expect("token lock poisoned");
            return match tokens.get(token.trim()) {
                Some((_, expiry)) if *expiry > Instant::now() => Ok(()),
                Some(_) => Err(Error::Unauthenticated(
                    "the bearer token has expired; handshake again".into(),
                )),
                None => Err(Error::Unauthenticated(
                    "the bearer token is not valid".into(),
                )),
            };
        }
        if let Some(basic) = header.strip_prefix("Basic ") {
            return self.verify_basic(basic).map(|_| ());
        }
        Err(Error::Unauthenticated(
            "unsupported authorization scheme: use Basic or Bearer".into(),
        ))
    }

    fn verify_basic(&self, encoded: &str) -> Result<String, Error> {
        let invalid = || Error::Unauthenticated("invalid user name or password".into());
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| invalid())?;
        let text = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (user, password) = text.split_once(':').ok_or_else(invalid)?;
        let expected = self.config.users.get(user).ok_or_else(invalid)?;
        if constant_time_eq(expected.as_bytes(), password.as_bytes()) {
            Ok(user.to_string())
        } else {
            Err(invalid())
        }
    }
}

fn authorization(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Compares without an early exit, so timing does not reveal how much of a password matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(AuthConfig {
            users: AuthConfig::parse_users("alice:secret, bob:pw:with:colons").unwrap(),
            token_ttl: Duration::from_secs(60),
        })
    }

    fn with_header(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn parse_users_accepts_lists_and_rejects_bad_entries() {
        let users = AuthConfig::parse_users("a:1\n# comment\nb:2,").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["b"], "2");
        let err = AuthConfig::parse_users("nopassword").unwrap_err();
        assert!(err.contains("not user:password"));
        let err = AuthConfig::parse_users("alice:").unwrap_err();
        assert!(err.contains("empty"));
        assert!(
            !AuthConfig::parse_users("x:topsecret,y")
                .unwrap_err()
                .contains("topsecret")
        );
    }

    #[test]
    fn handshake_issues_a_token_that_then_authorizes() {
        let auth = auth();
        let token = auth
            .handshake(&with_header(&basic("alice", "secret")))
            .unwrap()
            .unwrap();
        auth.check(&with_header(&format!("Bearer {token}")))
            .unwrap();
        auth.check(&with_header(&basic("bob", "pw:with:colons")))
            .unwrap();
        assert!(auth.check(&with_header("Bearer forged")).is_err());
        assert!(auth.check(&MetadataMap::new()).is_err());
        assert!(
            auth.handshake(&with_header(&basic("alice", "wrong")))
                .is_err()
        );
        assert!(
            auth.handshake(&with_header(&basic("mallory", "secret")))
                .is_err()
        );
        assert!(auth.handshake(&with_header("Basic !!!")).is_err());
    }

    #[test]
    fn tokens_expire() {
        let auth = Authenticator::new(AuthConfig {
            users: AuthConfig::parse_users("a:b").unwrap(),
            token_ttl: Duration::ZERO,
        });
        let token = auth
            .handshake(&with_header(&basic("a", "b")))
            .unwrap()
            .unwrap();
        let err = auth
            .check(&with_header(&format!("Bearer {token}")))
            .unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn disabled_auth_accepts_everything() {
        let auth = Authenticator::new(AuthConfig::default());
        assert!(!auth.enabled());
        auth.check(&MetadataMap::new()).unwrap();
        assert_eq!(auth.handshake(&MetadataMap::new()).unwrap(), None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn debug_hides_passwords() {
        assert!(!format!("{:?}", auth().config).contains("secret"));
    }
}
