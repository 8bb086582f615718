//! Authentication and permissions: Basic credentials exchanged for a bearer token in
//! `Handshake`, a role per user, and a brake on password guessing.
//!
//! With no users configured, every call is accepted with every permission (the quickstart
//! default). With users, a client either calls `Handshake` with `authorization: Basic …` and
//! receives a token in the `authorization: Bearer …` response header (and the handshake payload),
//! or sends Basic credentials on each call; every other call must carry a valid credential or is
//! refused with UNAUTHENTICATED.
//!
//! - **Roles**: a [`Role::Reader`] runs SQL and reads the shop API; a [`Role::Writer`] may also
//!   create purchases and create or update sellers; an [`Role::Admin`] may do everything, including
//!   operator actions. Users are readers unless `AuthConfig::roles` names them.
//! - **Guessing**: failed Basic checks are counted per client address in a token bucket
//!   ([`FAILURE_BURST`] at once, one more every [`FAILURE_REFILL`]); an address that has used up
//!   its bucket is answered RESOURCE_EXHAUSTED without its password being looked at.
//! - **Tokens**: each user holds at most [`MAX_TOKENS_PER_USER`] live tokens; a new one drops the
//!   same user's oldest, never another user's.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use tonic::metadata::MetadataMap;

use crate::error::Error;

/// Live tokens one user may hold; the user's oldest is dropped beyond this.
pub const MAX_TOKENS_PER_USER: usize = 1_000;
/// Failed sign-ins an address may make at once before it is slowed down.
pub const FAILURE_BURST: f64 = 10.0;
/// After the burst, one more attempt an address earns per this much time.
pub const FAILURE_REFILL: Duration = Duration::from_secs(1);
/// Addresses whose failures are remembered at most (full buckets are forgotten first).
const MAX_TRACKED_ADDRESSES: usize = 100_000;
/// Longest token lifetime accepted (a year).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// SQL and the shop API's reads.
    Reader,
    /// A reader who may also create purchases and create or update sellers.
    Writer,
    /// Everything, including operator actions.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "reader" | "read" => Ok(Role::Reader),
            "writer" | "write" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (use reader, writer or admin)"
            )),
        }
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// SQL and the shop API's reads.
    Read,
    /// The shop API's writes.
    Write,
    /// Operator actions.
    Admin,
}

impl Permission {
    fn role(self) -> Role {
        match self {
            Permission::Read => Role::Reader,
            Permission::Write => Role::Writer,
            Permission::Admin => Role::Admin,
        }
    }
}

/// Who made a call, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` when authentication is off.
    pub user: Option<String>,
    pub role: Role,
}

/// Users, their roles and the token lifetime.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// user → password. Empty: authentication is off.
    pub users: HashMap<String, String>,
    /// user → role, for users who are not readers.
    pub roles: HashMap<String, Role>,
    /// How long an issued bearer token is valid (at most [`MAX_TOKEN_TTL`]).
    pub token_ttl: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        f.debug_struct("AuthConfig")
            .field("users", &users)
            .field("roles", &self.roles)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

impl AuthConfig {
    /// Parses `user:password` entries separated by commas or new lines (`#` starts a comment).
    pub fn parse_users(text: &str) -> Result<HashMap<String, String>, String> {
        let mut users = HashMap::new();
        for entry in entries(text) {
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

    /// Parses `user=role` entries separated by commas or new lines.
    pub fn parse_roles(text: &str) -> Result<HashMap<String, Role>, String> {
        entries(text)
            .map(|entry| {
                let (user, role) = entry
                    .split_once('=')
                    .ok_or_else(|| format!("role entry {entry:?} is not user=role"))?;
                let role = role.parse::<Role>()?;
                Ok((user.trim().to_string(), role))
            })
            .collect()
    }

    /// Checks the lifetime and that every user given a role exists.
    pub fn validate(&self) -> Result<(), String> {
        if self.token_ttl.is_zero() || self.token_ttl > MAX_TOKEN_TTL {
            return Err(format!(
                "auth_token_ttl_secs must be between 1 and {} (a year); it is {}",
                MAX_TOKEN_TTL.as_secs(),
                self.token_ttl.as_secs()
            ));
        }
        let mut unknown: Vec<&String> = self
            .roles
            .keys()
            .filter(|u| !self.users.contains_key(*u))
            .collect();
        unknown.sort();
        if !unknown.is_empty() {
            return Err(format!(
                "roles are given for users who are not configured: {unknown:?}"
            ));
        }
        Ok(())
    }
}

fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'))
}

fn mask(entry: &str) -> String {
    match entry.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".into(),
    }
}

/// The tokens of all users.
#[derive(Debug, Default)]
struct Tokens {
    /// token → (user, expiry).
    by_token: HashMap<String, (String, Instant)>,
    /// user → their tokens, oldest first (all tokens live equally long).
    by_user: HashMap<String, VecDeque<String>>,
}

/// Failed attempts of one address.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant) -> f64 {
        let earned = now.duration_since(self.at).as_secs_f64() / FAILURE_REFILL.as_secs_f64();
        (self.tokens + earned).min(FAILURE_BURST)
    }
}

/// Checks credentials and permissions, and issues tokens.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    tokens: Mutex<Tokens>,
    failures: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            tokens: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// True when users are configured.
    pub fn enabled(&self) -> bool {
        !self.config.users.is_empty()
    }

    /// Handles a `Handshake`: verifies Basic credentials and returns a new bearer token.
    /// `None` when authentication is off.
    pub fn handshake(
        &self,
        metadata: &MetadataMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<String>, Error> {
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
        let user = self.verify_basic(basic, peer)?;
        let mut raw = [0_u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let expiry = now
            .checked_add(self.config.token_ttl)
            .unwrap_or(now + MAX_TOKEN_TTL);
        let mut tokens = self.tokens.lock().expect("token lock poisoned");
        let Tokens { by_token, by_user } = &mut *tokens;
        let mine = by_user.entry(user.clone()).or_default();
        while let Some(oldest) = mine.front() {
            let expired = by_token.get(oldest).is_none_or(|(_, e)| *e <= now);
            if !expired && mine.len() < MAX_TOKENS_PER_USER {
                break;
            }
            if let Some(oldest) = mine.pop_front() {
                by_token.remove(&oldest);
            }
        }
        mine.push_back(token.clone());
        by_token.insert(token.clone(), (user, expiry));
        Ok(Some(token))
    }

    /// Checks the credentials of any call other than `Handshake`, and that the caller may do
    /// what the call needs.
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        peer: Option<IpAddr>,
        need: Permission,
    ) -> Result<Principal, Error> {
        let principal = self.authenticate(metadata, peer)?;
        if principal.role >= need.role() {
            return Ok(principal);
        }
        Err(Error::Forbidden(format!(
            "user {} is a {} and may not do this; it needs the {} role (--auth-roles)",
            principal.user.as_deref().unwrap_or("?"),
            principal.role.name(),
            need.role().name()
        )))
    }

    /// Who sent the credentials of `metadata`.
    fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer: Option<IpAddr>,
    ) -> Result<Principal, Error> {
        if !self.enabled() {
            return Ok(Principal {
                user: None,
                role: Role::Admin,
            });
        }
        let header = authorization(metadata).ok_or_else(|| {
            Error::Unauthenticated(
                "authentication required: send 'authorization: Basic <base64 user:password>', \
                 or the 'authorization: Bearer <token>' a Flight SQL Handshake returned"
                    .into(),
            )
        })?;
        let user = if let Some(token) = header.strip_prefix("Bearer ") {
            let tokens = self.tokens.lock().expect("token lock poisoned");
            match tokens.by_token.get(token.trim()) {
                Some((user, expiry)) if *expiry > Instant::now() => user.clone(),
                Some(_) => {
                    return Err(Error::Unauthenticated(
                        "the bearer token has expired; handshake again".into(),
                    ));
                }
                None => {
                    return Err(Error::Unauthenticated(
                        "the bearer token is not valid".into(),
                    ));
                }
            }
        } else if let Some(basic) = header.strip_prefix("Basic ") {
            self.verify_basic(basic, peer)?
        } else {
            return Err(Error::Unauthenticated(
                "unsupported authorization scheme: use Basic or Bearer".into(),
            ));
        };
        let role = self
            .config
            .roles
            .get(&user)
            .copied()
            .unwrap_or(Role::Reader);
        Ok(Principal {
            user: Some(user),
            role,
        })
    }

    fn verify_basic(&self, encoded: &str, peer: Option<IpAddr>) -> Result<String, Error> {
        self.check_not_throttled(peer)?;
        let checked = self.check_password(encoded);
        if checked.is_err() {
            self.count_failure(peer);
        }
        checked
    }

    fn check_password(&self, encoded: &str) -> Result<String, Error> {
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

    /// Refuses an address that has used up its failed attempts.
    fn check_not_throttled(&self, peer: Option<IpAddr>) -> Result<(), Error> {
        let failures = self.failures.lock().expect("failures lock poisoned");
        let Some(bucket) = failures.get(&peer) else {
            return Ok(());
        };
        let left = bucket.refilled(Instant::now());
        if left >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - left) * FAILURE_REFILL.as_secs_f64())
            .ceil()
            .max(1.0);
        Err(Error::TooManyAttempts(Duration::from_secs_f64(wait)))
    }

    fn count_failure(&self, peer: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("failures lock poisoned");
        if failures.len() >= MAX_TRACKED_ADDRESSES && !failures.contains_key(&peer) {
            failures.retain(|_, b| b.refilled(now) < FAILURE_BURST);
        }
        let bucket = failures.entry(peer).or_insert(Bucket {
            tokens: FAILURE_BURST,
            at: now,
        });
        *bucket = Bucket {
            tokens: (bucket.refilled(now) - 1.0).max(0.0),
            at: now,
        };
    }
}

/// The client's IP address, from the connection information tonic puts in every request.
pub fn peer_ip(extensions: &tonic::codegen::http::Extensions) -> Option<IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    extensions
        .get::<TcpConnectInfo>()
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        })
        .and_then(TcpConnectInfo::remote_addr)
        .map(|addr| addr.ip())
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
            roles: AuthConfig::parse_roles("bob=writer").unwrap(),
            token_ttl: Duration::from_secs(60),
        })
    }

    const READ: Permission = Permission::Read;
    const PEER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    impl Authenticator {
        fn check(&self, metadata: &MetadataMap) -> Result<Principal, Error> {
            self.authorize(metadata, PEER, READ)
        }
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
            .handshake(&with_header(&basic("alice", "secret")), PEER)
            .unwrap()
            .unwrap();
        auth.check(&with_header(&format!("Bearer {token}")))
            .unwrap();
        auth.check(&with_header(&basic("bob", "pw:with:colons")))
            .unwrap();
        assert!(auth.check(&with_header("Bearer forged")).is_err());
        assert!(auth.check(&MetadataMap::new()).is_err());
        assert!(
            auth.handshake(&with_header(&basic("alice", "wrong")), PEER)
                .is_err()
        );
        assert!(
            auth.handshake(&with_header(&basic("mallory", "secret")), PEER)
                .is_err()
        );
        assert!(auth.handshake(&with_header("Basic !!!"), PEER).is_err());
    }

    #[test]
    fn tokens_expire() {
        let auth = Authenticator::new(AuthConfig {
            users: AuthConfig::parse_users("a:b").unwrap(),
            token_ttl: Duration::ZERO,
            ..AuthConfig::default()
        });
        let token = auth
            .handshake(&with_header(&basic("a", "b")), PEER)
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
        let anyone = auth
            .authorize(&MetadataMap::new(), None, Permission::Admin)
            .unwrap();
        assert_eq!(anyone.role, Role::Admin);
        assert_eq!(auth.handshake(&MetadataMap::new(), None).unwrap(), None);
    }

    #[test]
    fn roles_allow_what_they_name() {
        let auth = auth();
        let alice = with_header(&basic("alice", "secret"));
        let bob = with_header(&basic("bob", "pw:with:colons"));
        assert_eq!(auth.check(&alice).unwrap().role, Role::Reader);
        let err = auth.authorize(&alice, PEER, Permission::Write).unwrap_err();
        assert!(
            matches!(&err, Error::Forbidden(m) if m.contains("writer")),
            "{err}"
        );
        assert_eq!(
            auth.authorize(&bob, PEER, Permission::Write).unwrap().role,
            Role::Writer
        );
        assert!(auth.authorize(&bob, PEER, Permission::Admin).is_err());
        assert!(AuthConfig::parse_roles("x=superuser").is_err());
        assert!(AuthConfig::parse_roles("x").is_err());
    }

    #[test]
    fn configurations_are_validated() {
        let mut config = AuthConfig {
            users: AuthConfig::parse_users("a:b").unwrap(),
            token_ttl: Duration::from_secs(10_000_000_000_000_000_000),
            ..AuthConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("auth_token_ttl_secs")
        );
        config.token_ttl = Duration::from_secs(60);
        config.validate().unwrap();
        config.roles = AuthConfig::parse_roles("nobody=admin").unwrap();
        assert!(config.validate().unwrap_err().contains("nobody"));
    }

    #[test]
    fn guessing_is_braked_per_address() {
        let auth = auth();
        let wrong = with_header(&basic("alice", "guess"));
        let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)));
        for _ in 0..FAILURE_BURST as usize {
            assert!(matches!(auth.check(&wrong), Err(Error::Unauthenticated(_))));
        }
        // The address is now slowed down, even with the right password ...
        assert!(matches!(
            auth.check(&with_header(&basic("alice", "secret"))),
            Err(Error::TooManyAttempts(_))
        ));
        // ... but another address is not.
        auth.authorize(&with_header(&basic("alice", "secret")), other, READ)
            .unwrap();
    }

    #[test]
    fn many_handshakes_of_one_user_keep_other_users_tokens() {
        let auth = auth();
        let bob = auth
            .handshake(&with_header(&basic("bob", "pw:with:colons")), PEER)
            .unwrap()
            .unwrap();
        let alice = with_header(&basic("alice", "secret"));
        let first = auth.handshake(&alice, PEER).unwrap().unwrap();
        for _ in 0..MAX_TOKENS_PER_USER + 10 {
            auth.handshake(&alice, PEER).unwrap();
        }
        auth.check(&with_header(&format!("Bearer {bob}"))).unwrap();
        assert!(
            auth.check(&with_header(&format!("Bearer {first}")))
                .is_err()
        );
        let tokens = auth.tokens.lock().unwrap();
        assert_eq!(tokens.by_user["alice"].len(), MAX_TOKENS_PER_USER);
        assert_eq!(tokens.by_token.len(), MAX_TOKENS_PER_USER + 1);
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
