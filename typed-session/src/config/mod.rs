//! Settings of the session layer as plain data: the backend (a tagged shape
//! that carries each backend's own settings), the cookie, timeouts, secrets
//! and limits; read from serde or from `SESSION_*` environment variables.

mod build;
mod env;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cookies::{CookieSettings, SameSite};
use crate::error::ConfigError;
use crate::keys::SigningKey;
use crate::runtime::DEFAULT_MAX_SESSION_BYTES;

/// Where sessions are kept, with that backend's own settings. In serde
/// form it is tagged by `driver`:
/// `{"driver": "memory", "capacity": 10000}`.
///
/// ```
/// use typed_session::{SessionConfig, StoreConfig};
///
/// let config: SessionConfig = serde_json::from_str(
///     r#"{"store": {"driver": "memory", "capacity": 5000}}"#,
/// ).unwrap();
/// assert!(matches!(&config.store, StoreConfig::Memory(m) if m.capacity == 5000));
/// assert_eq!(config.store.driver(), "memory");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "driver", rename_all = "lowercase")]
#[non_exhaustive]
pub enum StoreConfig {
    /// [`MemoryStore`](crate::store::MemoryStore) (the default; feature `memory-store`).
    Memory(MemoryConfig),
    /// Sessions in files on the local disk (feature `file-store`).
    File(FileConfig),
    /// Sessions in Redis or Redis Cluster (feature `redis-store`).
    Redis(RedisConfig),
    /// The whole session sealed in the cookie (feature `cookie-store`).
    Cookie(CookieModeConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Memory(MemoryConfig::default())
    }
}

impl StoreConfig {
    /// The driver name (`memory`, `file`, `redis`, `cookie`), as in `SESSION_DRIVER`.
    pub fn driver(&self) -> &'static str {
        match self {
            StoreConfig::Memory(_) => "memory",
            StoreConfig::File(_) => "file",
            StoreConfig::Redis(_) => "redis",
            StoreConfig::Cookie(_) => "cookie",
        }
    }

    /// The cargo feature of typed-session that compiles this backend in.
    pub fn feature(&self) -> &'static str {
        feature_of(self.driver())
    }

    /// `Ok` when this backend is compiled in.
    pub fn check_available(&self) -> Result<(), ConfigError> {
        if compiled_in(self.driver()) {
            Ok(())
        } else {
            Err(ConfigError::DriverUnavailable(
                self.driver(),
                self.feature(),
            ))
        }
    }
}

fn feature_of(driver: &str) -> &'static str {
    match driver {
        "memory" => "memory-store",
        "file" => "file-store",
        "redis" => "redis-store",
        _ => "cookie-store",
    }
}

fn compiled_in(driver: &str) -> bool {
    match driver {
        "memory" => cfg!(feature = "memory-store"),
        "file" => cfg!(feature = "file-store"),
        "redis" => cfg!(feature = "redis-store"),
        _ => cfg!(feature = "cookie-store"),
    }
}

/// Settings of the in-process memory store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Most sessions kept (default 1,000,000).
    pub capacity: usize,
    /// Most bytes kept, estimated (default 512 MiB).
    pub max_bytes: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            capacity: 1_000_000,
            max_bytes: 512 << 20,
        }
    }
}

/// Settings of the file store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// The directory of session files (default `storage/sessions`).
    pub path: PathBuf,
    /// Seconds between sweeps of expired files (default 300).
    pub sweep_interval_secs: u64,
    /// Largest record file read, in bytes (default 1 MiB).
    pub max_record_bytes: usize,
    /// Most sessions kept (default 1,000,000); past it anonymous sessions
    /// are evicted, signed-in ones never (see `FileStore`).
    pub capacity: usize,
    /// Most bytes of record files kept (default 1 GiB), with the same policy.
    pub max_bytes: u64,
    /// `full` (default: every acknowledged write survives a power cut) or
    /// `os` (rename-atomic, unsynced: survives a process crash, not a power
    /// cut; much faster writes). See `store::Durability`.
    pub durability: FileDurability,
}

/// [`FileConfig::durability`] as plain data (`full` or `os`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FileDurability {
    /// Synced: survives a power cut (the default).
    #[default]
    Full,
    /// Not synced: survives a process crash.
    Os,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            path: PathBuf::from("storage/sessions"),
            sweep_interval_secs: 300,
            max_record_bytes: 1 << 20,
            capacity: 1_000_000,
            max_bytes: 1 << 30,
            durability: FileDurability::Full,
        }
    }
}

/// Settings of the Redis store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (default
    /// `redis://127.0.0.1:6379`); for a Cluster, one or more node addresses
    /// separated by commas. May hold a password: redacted in `Debug`.
    pub url: String,
    /// Connect to a Redis Cluster through the node(s) in `url` (default `false`).
    pub cluster: bool,
    /// Prefix of every key (default `session:`).
    pub prefix: String,
    /// Milliseconds to wait for a connection (default 2,000).
    pub connect_timeout_ms: u64,
    /// Milliseconds to wait for one command (default 1,000).
    pub command_timeout_ms: u64,
    /// Records to keep a local copy of, kept exact by Redis' invalidation
    /// messages and header checks (default `0`: none). See
    /// `RedisStore::with_local_cache` for what it costs and saves.
    pub local_cache: usize,
    /// A PEM file with the root certificate to trust for `rediss://`
    /// instead of the system's roots (feature `redis-tls`; default none).
    pub root_certificate_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".to_owned(),
            cluster: false,
            prefix: "session:".to_owned(),
            connect_timeout_ms: 2_000,
            command_timeout_ms: 1_000,
            local_cache: 0,
            root_certificate_file: None,
        }
    }
}

impl RedisConfig {
    /// `url` with every node's credentials (user, password) and query
    /// replaced by `<redacted>`: what logs and start-up lines may show.
    ///
    /// ```
    /// use typed_session::RedisConfig;
    ///
    /// let mut c = RedisConfig::default();
    /// c.url = "redis://a:p@ss@10.0.0.1:7000,redis://:s3cret@10.0.0.2:7000/0".into();
    /// assert_eq!(
    ///     c.redacted_url(),
    ///     "redis://<redacted>@10.0.0.1:7000,redis://<redacted>@10.0.0.2:7000/0"
    /// );
    /// ```
    pub fn redacted_url(&self) -> String {
        redact_urls(&self.url)
    }
}

/// Each comma-separated URL with its userinfo (everything before the last
/// `@` of what follows `scheme://`: a password may itself hold `@` or `/`)
/// and its query (`?password=...`) redacted.
fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|one| {
            let (scheme, rest) = match one.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, one),
            };
            let rest = match rest.rfind('@') {
                Some(at) => format!("<redacted>@{}", &rest[at + 1..]),
                None => rest.to_owned(),
            };
            let rest = match rest.split_once('?') {
                Some((before, _)) => format!("{before}?<redacted>"),
                None => rest,
            };
            match scheme {
                Some(scheme) => format!("{scheme}://{rest}"),
                None => rest,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may carry passwords.
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("local_cache", &self.local_cache)
            .field("root_certificate_file", &self.root_certificate_file)
            .finish()
    }
}

/// Settings of the encrypted-cookie mode (the secrets are the config's `secrets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CookieModeConfig {
    /// Compress the sealed session when that makes the cookie smaller (default `false`).
    pub compress: bool,
}

/// All settings of a [`SessionLayer`](crate::SessionLayer), as plain data.
///
/// Deserialize it from your configuration file, or read it with
/// [`SessionConfig::from_env`]. Durations are whole seconds. Every field has
/// the safe default shown in [`SessionConfig::default`]. Its `Debug` output
/// redacts the secrets.
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
/// assert!(!format!("{config:?}").contains("example secret"));
/// let layer = typed_session::SessionLayer::from_config(&config).unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The backend and its settings (default: the memory store).
    pub store: StoreConfig,
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
    /// `Max-Age` in seconds (at most 400 days are sent); none (the default)
    /// makes a browser-session cookie.
    pub max_age_secs: Option<u64>,
    /// The `__Host-` name prefix. Unset (the default), it is on whenever it
    /// can be (`Secure`, `Path=/`, no `Domain`): browsers then refuse a cookie
    /// of that name set by a sibling subdomain or over plain HTTP. `false`
    /// turns it off (the cookie is then named exactly `cookie_name`); `true`
    /// requires `Secure`, `Path=/` and no `Domain`.
    pub host_prefix: Option<bool>,
    /// Server-side idle timeout in seconds (default 86,400: 24 hours).
    pub idle_timeout_secs: Option<u64>,
    /// Server-side absolute lifetime in seconds (default 604,800: 7 days).
    pub absolute_timeout_secs: Option<u64>,
    /// Re-send the cookie (refreshing `Max-Age`) on every response that uses the session.
    pub rolling: bool,
    /// Secrets, newest first: the first signs, all verify. Each at least 32
    /// bytes, and not an obvious placeholder (see `SigningKey::new`).
    pub secrets: Vec<String>,
    /// Accept weak secrets (a short pattern repeated, plain words, little
    /// estimated entropy) with a `warn` log instead of refusing to start
    /// (default `false`; `SESSION_ALLOW_WEAK_SECRETS`). What it costs: a
    /// guessable secret lets anyone forge session ids and, in cookie mode,
    /// read and forge sessions. For a migration period only.
    pub allow_weak_secrets: bool,
    /// Largest encoded session, in bytes (default 65,536); a write past it
    /// is refused with a `413`.
    pub max_session_bytes: usize,
    /// Start without checking the store (default `false`;
    /// `SESSION_STORE_LAZY`). By default `SessionLayer::from_config` checks
    /// it once (Redis: connect, `PING`, load the scripts; files: the
    /// directory writable) and fails naming the setting and the cause. Lazy
    /// suits orchestrators that start the app and its store at once; the
    /// first failures are then `503`s, logged at `warn` with the cause.
    pub lazy_store: bool,
    /// Where the settings came from: errors name the environment variable
    /// or the field.
    #[serde(skip)]
    origin: Origin,
    /// What `from_env` found odd but not wrong (see [`SessionConfig::warnings`]).
    #[serde(skip)]
    warnings: Vec<String>,
}

/// Where a [`SessionConfig`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Origin {
    /// Code or a configuration file: errors name the field (`secrets[1]`).
    #[default]
    Data,
    /// `SessionConfig::from_env`: errors name the variable.
    Env,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            store: StoreConfig::default(),
            cookie_name: "session".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            max_age_secs: None,
            host_prefix: None,
            idle_timeout_secs: Some(24 * 3600),
            absolute_timeout_secs: Some(7 * 24 * 3600),
            rolling: false,
            secrets: Vec::new(),
            allow_weak_secrets: false,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            lazy_store: false,
            origin: Origin::Data,
            warnings: Vec::new(),
        }
    }
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("store", &self.store)
            .field("cookie_name", &self.cookie_name)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .field("same_site", &self.same_site)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("max_age_secs", &self.max_age_secs)
            .field("host_prefix", &self.host_prefix)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("absolute_timeout_secs", &self.absolute_timeout_secs)
            .field("rolling", &self.rolling)
            .field(
                "secrets",
                &format_args!("[<{} redacted>]", self.secrets.len()),
            )
            .field("allow_weak_secrets", &self.allow_weak_secrets)
            .field("lazy_store", &self.lazy_store)
            .field("max_session_bytes", &self.max_session_bytes)
            .finish()
    }
}

impl SessionConfig {
    /// Reads the settings from environment variables over the defaults.
    ///
    #[doc = include_str!("env.md")]
    ///
    /// A backend variable set for a backend that is not compiled in is an
    /// error naming its cargo feature; variables of another compiled-in
    /// backend than the selected one are ignored, with a warning
    /// ([`warnings`](Self::warnings)), or refused with
    /// `SESSION_STRICT_CONFIG=true`. The result is checked as
    /// [`SessionConfig::validate`] does.
    pub fn from_env() -> Result<Self, ConfigError> {
        SessionConfig::from_env_with_default(StoreConfig::default())
    }

    /// [`from_env`](Self::from_env), with `store` as the backend when
    /// `SESSION_DRIVER` is not set (its variables still apply): for an app
    /// whose embedded default is not the memory store.
    ///
    /// ```
    /// use typed_session::{FileConfig, SessionConfig, StoreConfig};
    ///
    /// # if std::env::var_os("SESSION_DRIVER").is_none() {
    /// let config = SessionConfig::from_env_with_default(StoreConfig::File(FileConfig::default())).unwrap();
    /// assert_eq!(config.store.driver(), "file");
    /// # }
    /// ```
    pub fn from_env_with_default(store: StoreConfig) -> Result<Self, ConfigError> {
        env::read(store)
    }

    /// Checks that the settings can work together and that the backend is
    /// compiled in. An error names the setting at fault
    /// ([`ConfigError::setting`]): the environment variable when the
    /// configuration came from [`from_env`](Self::from_env), else the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.checked().map(drop)
    }

    /// [`validate`](Self::validate), giving the keys derived on the way:
    /// what building a layer needs, checked once.
    pub(crate) fn checked(&self) -> Result<Vec<SigningKey>, ConfigError> {
        let keys = self.signing_keys()?;
        self.cookie_settings().validate().map_err(|e| {
            let (field, var) = match &e {
                ConfigError::InvalidCookieName(_) => ("cookie_name", "SESSION_COOKIE_NAME"),
                ConfigError::SameSiteNoneWithoutSecure => ("same_site", "SESSION_SAME_SITE"),
                ConfigError::HostPrefixMismatch => ("host_prefix", "SESSION_HOST_PREFIX"),
                ConfigError::InvalidCookieAttribute {
                    attribute: "path", ..
                } => ("path", "SESSION_PATH"),
                _ => ("domain", "SESSION_DOMAIN"),
            };
            self.named(field, var, e)
        })?;
        for (field, var, value) in [
            ("max_age_secs", "SESSION_MAX_AGE", self.max_age_secs),
            (
                "idle_timeout_secs",
                "SESSION_IDLE_TIMEOUT",
                self.idle_timeout_secs,
            ),
            (
                "absolute_timeout_secs",
                "SESSION_ABSOLUTE_TIMEOUT",
                self.absolute_timeout_secs,
            ),
        ] {
            if value == Some(0) {
                return Err(self.named(field, var, ConfigError::ZeroDuration(field)));
            }
        }
        if self.max_session_bytes == 0 {
            return Err(self.named(
                "max_session_bytes",
                "SESSION_MAX_SESSION_BYTES",
                ConfigError::ZeroSize("max_session_bytes"),
            ));
        }
        if matches!(self.store, StoreConfig::Cookie(_)) && self.secrets.is_empty() {
            return Err(self.named(
                "secrets",
                "SESSION_SECRET",
                ConfigError::SecretRequired("cookie"),
            ));
        }
        self.store
            .check_available()
            .map_err(|e| self.named("store.driver", "SESSION_DRIVER", e))?;
        Ok(keys)
    }

    /// What [`from_env`](Self::from_env) found odd but not wrong: variables
    /// of another driver than the one chosen (ignored; an error with
    /// `SESSION_STRICT_CONFIG=true`), the default Redis URL in use.
    /// [`SessionLayer::from_config`](crate::SessionLayer::from_config) logs
    /// each at `warn`; print them in your start-up line.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// `err`, named after the setting at fault: `var` for a configuration
    /// read from the environment, `field` otherwise.
    pub(crate) fn named(&self, field: &str, var: &str, err: ConfigError) -> ConfigError {
        ConfigError::Setting {
            setting: match self.origin {
                Origin::Env => var.to_owned(),
                Origin::Data => field.to_owned(),
            },
            cause: Box::new(err),
        }
    }

    /// The secrets as keys, newest first; an error names the entry.
    pub(crate) fn signing_keys(&self) -> Result<Vec<SigningKey>, ConfigError> {
        self.secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let key = match self.allow_weak_secrets {
                    true => SigningKey::allowing_weak(s.as_bytes().to_vec()),
                    false => SigningKey::new(s.as_bytes().to_vec()),
                };
                key.map_err(|e| {
                    let var = match i {
                        0 => "SESSION_SECRET".to_owned(),
                        n => format!("SESSION_PREVIOUS_SECRETS (entry {n})"),
                    };
                    self.named(&format!("secrets[{i}]"), &var, e)
                })
            })
            .collect()
    }

    pub(crate) fn cookie_settings(&self) -> CookieSettings {
        let mut c = CookieSettings::new(self.cookie_name.clone());
        c.host_prefix = self.host_prefix;
        c.secure = self.secure;
        c.http_only = self.http_only;
        c.same_site = self.same_site;
        c.path = self.path.clone();
        c.domain = self.domain.clone();
        c.max_age = self.max_age_secs.map(Duration::from_secs);
        c.refresh();
        c
    }

    pub(crate) fn secs(v: Option<u64>) -> Option<Duration> {
        v.map(Duration::from_secs)
    }
}
