//! Passwords and guessing: Argon2id hashes (the seed accounts are hashed
//! at start-up), verified off the async threads, and a bounded throttle:
//! after 10 failed logins for one email from one client within 15
//! minutes, login for that email from that client is refused (`429`, code
//! 2004) until the window ends, the right password included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Failed logins allowed per email and client within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The throttle's window, from the first failure.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most (email, client) pairs the throttle remembers.
const MAX_TRACKED: usize = 10_000;

/// An Argon2id hash of `password` (default parameters: 19 MiB, 2 passes),
/// as a PHC string with a random salt.
pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        // Hashing with the default parameters and a fresh salt cannot fail.
        .unwrap_or_default()
}

/// Whether `password` matches the PHC string `hash` (the comparison is
/// constant-time inside the Argon2 crate). CPU-heavy: call it from a
/// blocking thread ([`verify_off_thread`]).
pub fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// [`verify`] on Tokio's blocking pool. Without a hash (no such account),
/// a fixed hash is checked anyway, so that an unknown email takes as long
/// as a wrong password.
pub async fn verify_off_thread(hash: Option<String>, password: String) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY.get_or_init(|| self::hash("no account")).clone());
        verify(&hash, &password) && known
    })
    .await
    .unwrap_or(false)
}

/// Failed logins per (email, client), bounded in memory.
#[derive(Clone, Debug, Default)]
pub struct Throttle(Arc<Mutex<HashMap<(String, String), Failures>>>);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

impl Throttle {
    fn key(email: &str, client: &str) -> (String, String) {
        (email.trim().to_ascii_lowercase(), client.to_owned())
    }

    /// `Err(wait)` while `client` may not try `email` again.
    pub fn check(&self, email: &str, client: &str) -> Result<(), Duration> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&Self::key(email, client)) {
            Some(f) if f.count >= MAX_FAILURES && f.since.elapsed() < WINDOW => {
                Err(WINDOW - f.since.elapsed())
            }
            _ => Ok(()),
        }
    }

    /// A failed login.
    pub fn failed(&self, email: &str, client: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = Self::key(email, client);
        if !map.contains_key(&key) && map.len() >= MAX_TRACKED {
            map.retain(|_, f| f.since.elapsed() < WINDOW);
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(key).or_insert(Failures {
            count: 0,
            since: Instant::now(),
        });
        if entry.since.elapsed() >= WINDOW {
            *entry = Failures {
                count: 0,
                since: Instant::now(),
            };
        }
        entry.count += 1;
    }

    /// A successful login clears the count.
    pub fn succeeded(&self, email: &str, client: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&Self::key(email, client));
    }

    /// Pairs remembered (bounded by 10,000).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash("alice-password");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, "alice-password"));
        assert!(!verify(&h, "alice-passwore"));
        assert!(!verify("not a hash", "alice-password"));
        assert_ne!(h, hash("alice-password"), "a fresh salt each time");
    }

    #[test]
    fn ten_failures_block_that_email_from_that_client() {
        let t = Throttle::default();
        for _ in 0..MAX_FAILURES {
            assert!(t.check("a@example.com", "1.2.3.4").is_ok());
            t.failed("A@example.com", "1.2.3.4");
        }
        assert!(t.check("a@example.com", "1.2.3.4").is_err());
        assert!(t.check("b@example.com", "1.2.3.4").is_ok(), "another email");
        assert!(
            t.check("a@example.com", "5.6.7.8").is_ok(),
            "another client"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::default();
        for n in 0..MAX_TRACKED + 500 {
            t.failed(&format!("u{n}@example.com"), "1.2.3.4");
        }
        assert!(t.len() <= MAX_TRACKED);
    }
}

/// The client a login comes from: its IP address when the server was
/// started with connect info (`into_make_service_with_connect_info`), else
/// one shared bucket. Behind a proxy, this would be the address the proxy
/// reports (not done in the demo: a header anyone can set is no key).
#[derive(Debug, Clone)]
pub struct Client(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        Ok(Client(ip))
    }
}
