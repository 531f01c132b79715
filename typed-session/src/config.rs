//! Settings of the session layer: the cookie, timeouts and signing keys.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent on same-site requests and top-level navigations (the default).
    #[default]
    Lax,
    /// Sent on same-site requests only.
    Strict,
    /// Sent on cross-site requests too; needs `Secure`.
    None,
}

/// Which store a [`SessionConfig`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Driver {
    /// [`MemoryStore`](crate::store::MemoryStore) (the default).
    #[default]
    Memory,
}

/// A key for signing session cookies: at least 32 bytes.
///
/// Its `Debug` output is redacted.
///
/// ```
/// use typed_session::SigningKey;
///
/// assert!(SigningKey::new(b"too short".to_vec()).is_err());
/// let key = SigningKey::new(vec![7u8; 32]).unwrap();
/// assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

impl SigningKey {
    /// A key from its bytes; an error below 32 bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ConfigError::SecretTooShort { len: bytes.len() });
        }
        Ok(SigningKey(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A setting that cannot work, found when the layer is built.
///
/// ```
/// use typed_session::{ConfigError, SessionConfig, SessionLayer};
///
/// let mut config = SessionConfig::default();
/// config.secrets = vec!["hunter2".into()];
/// assert_eq!(SessionLayer::from_config(&config).unwrap_err(), ConfigError::SecretTooShort { len: 7 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A secret shorter than 32 bytes.
    #[error(
        "session secret is {len} bytes; at least 32 are required (generate one with `openssl rand -base64 48`)"
    )]
    SecretTooShort {
        /// The length found.
        len: usize,
    },
    /// `SameSite=None` without `Secure`: browsers drop such cookies.
    #[error("`SameSite=None` requires `Secure`; set secure = true or choose another same_site")]
    SameSiteNoneWithoutSecure,
    /// The `__Host-` prefix needs `Secure`, `Path=/` and no `Domain`.
    #[error("the `__Host-` cookie prefix requires secure = true, path = \"/\" and no domain")]
    HostPrefixMismatch,
    /// The cookie name is empty or has characters not allowed in a cookie name.
    #[error("invalid cookie name {0:?}: use letters, digits and `-`, `_`, `.`")]
    InvalidCookieName(String),
    /// An environment variable could not be read as the setting it holds.
    #[error("environment variable {name} has an invalid value: {reason}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The driver's store is not compiled in.
    #[error("session driver `{0}` needs the `{1}` feature of typed-session")]
    DriverUnavailable(&'static str, &'static str),
    /// A timeout of zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
}

/// All settings of a [`SessionLayer`](crate::SessionLayer), as plain data.
///
/// Deserialize it from your configuration file, or read it with
/// [`SessionConfig::from_env`]. Durations are whole seconds. Every field has
/// the safe default shown in [`SessionConfig::default`].
///
/// ```
/// use typed_session::SessionConfig;
///
/// let config: SessionConfig = serde_json::from_str(r#"{
///     "cookie_name": "shop",
///     "idle_timeout_secs": 1800,
///     "secrets": ["an example secret that is at least 32 bytes long"]
/// }"#).unwrap();
/// assert!(config.secure && config.http_only);
/// let layer = typed_session::SessionLayer::from_config(&config).unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The store: `memory` (the default).
    pub driver: Driver,
    /// Cookie name (default `session`).
    pub cookie_name: String,
    /// `Secure` (default `true`). Turning it off sends the cookie over plain
    /// HTTP, where anyone on the path can read it: only for local development.
    pub secure: bool,
    /// `HttpOnly` (default `true`). Turning it off lets page scripts (and any
    /// XSS) read the session cookie.
    pub http_only: bool,
    /// `SameSite` (default `lax`).
    pub same_site: SameSite,
    /// `Path` (default `/`).
    pub path: String,
    /// `Domain` (default none: the cookie goes to the exact host only).
    pub domain: Option<String>,
    /// `Max-Age` in seconds; none (the default) makes a browser-session cookie.
    pub max_age_secs: Option<u64>,
    /// Prefix the name with `__Host-` (needs `Secure`, `Path=/`, no `Domain`).
    pub host_prefix: bool,
    /// Server-side idle timeout in seconds (default 86,400: 24 hours).
    pub idle_timeout_secs: Option<u64>,
    /// Server-side absolute lifetime in seconds (default 604,800: 7 days).
    pub absolute_timeout_secs: Option<u64>,
    /// Re-send the cookie (refreshing `Max-Age`) on every response that uses the session.
    pub rolling: bool,
    /// Signing secrets, newest first: the first signs, all verify. Each at least 32 bytes.
    pub secrets: Vec<String>,
    /// Most sessions the memory store keeps (default 1,000,000).
    pub memory_capacity: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            driver: Driver::Memory,
            cookie_name: "session".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            max_age_secs: None,
            host_prefix: false,
            idle_timeout_secs: Some(24 * 3600),
            absolute_timeout_secs: Some(7 * 24 * 3600),
            rolling: false,
            secrets: Vec::new(),
            memory_capacity: 1_000_000,
        }
    }
}

fn env_var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_bool(name: &'static str) -> Result<Option<bool>, ConfigError> {
    env_var(name)
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            other => Err(ConfigError::InvalidEnv {
                name,
                reason: format!("expected true or false, found {other:?}"),
            }),
        })
        .transpose()
}

fn env_secs(name: &'static str) -> Result<Option<Option<u64>>, ConfigError> {
    env_var(name)
        .map(|v| {
            let v = v.trim();
            if v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            v.parse::<u64>()
                .map(Some)
                .map_err(|_| ConfigError::InvalidEnv {
                    name,
                    reason: format!("expected whole seconds or `none`, found {v:?}"),
                })
        })
        .transpose()
}

impl SessionConfig {
    /// Reads the settings from `SESSION_*` environment variables over the defaults.
    ///
    /// | variable | setting |
    /// |---|---|
    /// | `SESSION_DRIVER` | `memory` |
    /// | `SESSION_SECRET` | the signing secret (32+ bytes) |
    /// | `SESSION_PREVIOUS_SECRETS` | older secrets still accepted, comma-separated (so they cannot contain commas) |
    /// | `SESSION_COOKIE_NAME` | cookie name |
    /// | `SESSION_SECURE`, `SESSION_HTTP_ONLY`, `SESSION_HOST_PREFIX`, `SESSION_ROLLING` | `true` / `false` |
    /// | `SESSION_SAME_SITE` | `lax`, `strict` or `none` |
    /// | `SESSION_PATH`, `SESSION_DOMAIN` | cookie path and domain |
    /// | `SESSION_MAX_AGE`, `SESSION_IDLE_TIMEOUT`, `SESSION_ABSOLUTE_TIMEOUT` | seconds, or `none` |
    /// | `SESSION_MEMORY_CAPACITY` | sessions |
    ///
    /// The result is checked as [`SessionConfig::validate`] does.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = SessionConfig::default();
        if let Some(driver) = env_var("SESSION_DRIVER") {
            config.driver = match driver.trim().to_ascii_lowercase().as_str() {
                "memory" => Driver::Memory,
                other => {
                    return Err(ConfigError::InvalidEnv {
                        name: "SESSION_DRIVER",
                        reason: format!("unknown or not compiled in: {other:?} (expected memory)"),
                    });
                }
            };
        }
        if let Some(secret) = env_var("SESSION_SECRET") {
            config.secrets = vec![secret];
            if let Some(previous) = env_var("SESSION_PREVIOUS_SECRETS") {
                config.secrets.extend(
                    previous
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        if let Some(name) = env_var("SESSION_COOKIE_NAME") {
            config.cookie_name = name;
        }
        if let Some(v) = env_bool("SESSION_SECURE")? {
            config.secure = v;
        }
        if let Some(v) = env_bool("SESSION_HTTP_ONLY")? {
            config.http_only = v;
        }
        if let Some(v) = env_bool("SESSION_HOST_PREFIX")? {
            config.host_prefix = v;
        }
        if let Some(v) = env_bool("SESSION_ROLLING")? {
            config.rolling = v;
        }
        if let Some(v) = env_var("SESSION_SAME_SITE") {
            config.same_site = match v.trim().to_ascii_lowercase().as_str() {
                "lax" => SameSite::Lax,
                "strict" => SameSite::Strict,
                "none" => SameSite::None,
                other => {
                    return Err(ConfigError::InvalidEnv {
                        name: "SESSION_SAME_SITE",
                        reason: format!("expected lax, strict or none, found {other:?}"),
                    });
                }
            };
        }
        if let Some(v) = env_var("SESSION_PATH") {
            config.path = v;
        }
        if let Some(v) = env_var("SESSION_DOMAIN") {
            config.domain = Some(v);
        }
        if let Some(v) = env_secs("SESSION_MAX_AGE")? {
            config.max_age_secs = v;
        }
        if let Some(v) = env_secs("SESSION_IDLE_TIMEOUT")? {
            config.idle_timeout_secs = v;
        }
        if let Some(v) = env_secs("SESSION_ABSOLUTE_TIMEOUT")? {
            config.absolute_timeout_secs = v;
        }
        if let Some(v) = env_var("SESSION_MEMORY_CAPACITY") {
            config.memory_capacity = v.trim().parse().map_err(|_| ConfigError::InvalidEnv {
                name: "SESSION_MEMORY_CAPACITY",
                reason: format!("expected a number of sessions, found {v:?}"),
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for secret in &self.secrets {
            SigningKey::new(secret.as_bytes().to_vec())?;
        }
        check_cookie_name(&self.cookie_name)?;
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        if self.host_prefix && (!self.secure || self.path != "/" || self.domain.is_some()) {
            return Err(ConfigError::HostPrefixMismatch);
        }
        for (name, value) in [
            ("max_age_secs", self.max_age_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("absolute_timeout_secs", self.absolute_timeout_secs),
        ] {
            if value == Some(0) {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        Ok(())
    }

    pub(crate) fn secs(v: Option<u64>) -> Option<Duration> {
        v.map(Duration::from_secs)
    }
}

pub(crate) fn check_cookie_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidCookieName(name.to_owned()))
    }
}
