//! Error types. Sources are kept (`Error::source`), never flattened to strings.

use std::error::Error as StdError;
use std::fmt;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A write that a field or struct rule refused; the session keeps its old value.
///
/// Returned by `set_x`, `update_x` and `update`. It implements
/// `IntoResponse` as `422 Unprocessable Entity`, so a handler can use `?` on
/// it directly. The response body names the field and a generic reason
/// (`invalid value for session field `n``), never the rule's message, which
/// may name internals: to show it, answer with [`message`](Self::message)
/// yourself. `Display` (for logs and handlers) includes the message.
///
/// A field rule may take the field's borrowed form: `fn(&[T])` for a
/// `Vec<T>`, `fn(&str)` for a `String`, `fn(&Option<T>)` for an option.
///
/// ```
/// use typed_session::{SessionSchema, TypedSession};
///
/// fn small(n: &u32) -> Result<(), String> {
///     if *n <= 10 { Ok(()) } else { Err(format!("{n} is more than 10")) }
/// }
///
/// #[derive(SessionSchema)]
/// struct Counter {
///     #[session(validate = small)]
///     n: u32,
/// }
///
/// let session = TypedSession::detached(Counter { n: 1 });
/// let err = session.set_n(11).unwrap_err();
/// assert_eq!(err.field(), Some("n"));
/// assert_eq!(err.to_string(), "invalid session field `n`: 11 is more than 10");
/// assert_eq!(session.n(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    field: Option<&'static str>,
    kind: ValidationKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ValidationKind {
    Invalid(String),
    Readonly,
}

impl ValidationError {
    /// A field rule failed with `message`.
    pub fn field_invalid(field: &'static str, message: impl fmt::Display) -> Self {
        ValidationError {
            field: Some(field),
            kind: ValidationKind::Invalid(message.to_string()),
        }
    }

    /// The struct-level rule failed with `message`.
    pub fn struct_invalid(message: impl fmt::Display) -> Self {
        ValidationError {
            field: None,
            kind: ValidationKind::Invalid(message.to_string()),
        }
    }

    pub(crate) fn readonly(field: &'static str) -> Self {
        ValidationError {
            field: Some(field),
            kind: ValidationKind::Readonly,
        }
    }

    /// The field whose rule failed, or `None` for the struct rule.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// The message of the failed rule.
    pub fn message(&self) -> &str {
        match &self.kind {
            ValidationKind::Invalid(message) => message,
            ValidationKind::Readonly => "the field is read-only",
        }
    }

    /// `true` when the write was refused because it changed a read-only field.
    pub fn is_readonly(&self) -> bool {
        self.kind == ValidationKind::Readonly
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.field, &self.kind) {
            (Some(field), ValidationKind::Readonly) => write!(
                f,
                "session field `{field}` is read-only; set it with `regenerate_with`"
            ),
            (Some(field), ValidationKind::Invalid(m)) => {
                write!(f, "invalid session field `{field}`: {m}")
            }
            (None, _) => write!(f, "invalid session: {}", self.message()),
        }
    }
}

impl StdError for ValidationError {}

impl ValidationError {
    /// The body of its `422` response: the field and a generic reason.
    pub(crate) fn public_text(&self) -> String {
        match (&self.field, &self.kind) {
            (Some(field), ValidationKind::Readonly) => {
                format!("session field `{field}` is read-only")
            }
            (Some(field), ValidationKind::Invalid(_)) => {
                format!("invalid value for session field `{field}`")
            }
            (None, _) => "invalid session value".to_owned(),
        }
    }
}

/// A migration step of stored data failed, or no step exists.
///
/// Migration functions (`#[session(migrate(from = K, with = path))]`) return
/// it; [`MigrationError::new`] takes a message and
/// [`MigrationError::with_source`] keeps a cause.
///
/// ```
/// use typed_session::MigrationError;
/// use typed_session::serde_json::Value; // re-exported: no extra dependency
///
/// fn v1_to_v2(mut data: Value) -> Result<Value, MigrationError> {
///     let obj = data.as_object_mut().ok_or_else(|| MigrationError::new("not an object"))?;
///     let user = obj.remove("user").unwrap_or(Value::Null);
///     obj.insert("user_id".into(), user);
///     Ok(data)
/// }
/// # assert!(v1_to_v2(Value::Null).is_err());
/// ```
#[derive(Debug)]
pub struct MigrationError {
    message: String,
    source: Option<BoxError>,
}

impl MigrationError {
    /// A failed migration with a message.
    pub fn new(message: impl fmt::Display) -> Self {
        MigrationError {
            message: message.to_string(),
            source: None,
        }
    }

    /// A failed migration caused by `source`.
    pub fn with_source(
        message: impl fmt::Display,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        MigrationError {
            message: message.to_string(),
            source: Some(source.into()),
        }
    }

    #[doc(hidden)]
    pub fn missing_step(from: u32, version: u32) -> Self {
        MigrationError::new(format_args!(
            "no migration from version {from} (this code writes version {version})"
        ))
    }
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for MigrationError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<serde_json::Error> for MigrationError {
    fn from(err: serde_json::Error) -> Self {
        MigrationError::with_source("stored data did not match the migration's input", err)
    }
}

/// Why stored session data could not be used as it is.
///
/// ```
/// use typed_session::{LoadError, SessionSchema, TypedSession};
///
/// #[derive(SessionSchema)]
/// struct Visit { count: u32 }
///
/// let not_json = br#"{"v":1,"c":0,"t":0,"d":{"count":"#;
/// assert!(matches!(TypedSession::<Visit>::import(not_json), Err(LoadError::Corrupt(_))));
///
/// // A newer version's record is read field by field (a rolling deploy).
/// let from_the_future = br#"{"v":9,"c":0,"t":0,"d":{"count":1,"added_in_v9":true}}"#;
/// assert_eq!(TypedSession::<Visit>::import(from_the_future).unwrap().count(), 1);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The record is not valid JSON of the expected shape.
    #[error("stored session is corrupt")]
    Corrupt(#[source] serde_json::Error),
    /// The record was written by newer code (a higher `version`), and the
    /// layer refuses such records
    /// ([`NewerSchema::Reject`](crate::NewerSchema::Reject)).
    #[error("stored session has version {found}, newer than version {known} of this code")]
    FutureVersion {
        /// The version found in the record.
        found: u32,
        /// The version this code writes.
        known: u32,
    },
    /// A migration step failed.
    #[error("migrating the stored session from version {from} failed")]
    Migration {
        /// The version the failed step started from.
        from: u32,
        /// What the step reported.
        #[source]
        source: MigrationError,
    },
    /// A field with `on_invalid = "destroy"` (or the struct rule) failed; the
    /// session must be discarded.
    #[error("stored session failed validation and is discarded")]
    Destroy(#[source] FieldError),
    /// A field with `on_invalid = "reject"` failed; the request is refused.
    #[error("stored session failed validation and the request is rejected")]
    Reject(#[source] FieldError),
}

/// One stored field that failed to parse or to validate on load.
#[derive(Debug, thiserror::Error)]
#[error("stored session field `{field}` is invalid")]
pub struct FieldError {
    field: &'static str,
    #[source]
    source: Option<BoxError>,
}

impl FieldError {
    pub(crate) fn new(field: &'static str, source: Option<BoxError>) -> Self {
        FieldError { field, source }
    }

    /// The Rust name of the field, or `"<struct>"` for the struct rule.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

/// A session store failed (I/O, connection, protocol). The source is kept.
///
/// ```
/// use typed_session::StoreError;
///
/// let err = StoreError::new(std::io::Error::other("disk full"));
/// assert_eq!(err.to_string(), "session store failed");
/// assert!(std::error::Error::source(&err).is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("session store failed")]
pub struct StoreError {
    #[source]
    source: BoxError,
}

impl StoreError {
    /// Wraps the store's own error.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        StoreError {
            source: source.into(),
        }
    }
}

/// Everything that can go wrong when a session is saved or changed.
///
/// It implements `IntoResponse`: a store failure answers `503` with a
/// generic body (the cause is logged), a validation error `422`.
///
/// ```
/// use typed_session::{Error, SessionSchema, TypedSession};
///
/// #[derive(SessionSchema)]
/// struct Visit { count: u32 }
///
/// # async fn run() {
/// let session = TypedSession::detached(Visit { count: 0 });
/// assert!(matches!(session.save().await, Err(Error::Detached)));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be serialized.
    #[error("session data could not be serialized")]
    Serialize(#[source] serde_json::Error),
    /// Other requests kept changing the same session; the save gave up after several merges.
    #[error("the session was changed concurrently too often; the save gave up")]
    Conflict,
    /// The session was destroyed (here or by another request); nothing was saved.
    #[error("the session was destroyed; nothing was saved")]
    Destroyed,
    /// A validation rule refused a write.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Stored data could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The session is not attached to a [`SessionLayer`](crate::SessionLayer) (a detached session).
    #[error("the session is detached: it has no store to save to")]
    Detached,
    /// The encoded session is larger than the layer's limit
    /// ([`SessionLayer::with_max_session_bytes`](crate::SessionLayer::with_max_session_bytes));
    /// nothing was saved. Answered `413 Payload Too Large` if the handler lets it through.
    #[error(
        "the session is {size} bytes encoded, more than the limit of {limit}; nothing was saved"
    )]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The session was written by a newer version of the code (a rolling
    /// deploy, or a rollback), and this request changed a field whose
    /// stored value this code could not read: writing it would replace the
    /// newer code's data with an older shape. Nothing was saved. Answered
    /// `409 Conflict` if the handler lets it through; see
    /// [`NewerSchema`](crate::NewerSchema).
    #[error(
        "session field `{field}` was written by version {version} of the code in a shape this version cannot read; nothing was saved"
    )]
    NewerSchema {
        /// The Rust name of the field.
        field: &'static str,
        /// The record's version.
        version: u32,
    },
    /// In cookie mode, the sealed session would make the `Set-Cookie`
    /// `name=value` longer than browsers keep (4096 bytes); nothing was
    /// sent, and the browser keeps its previous cookie. Answered `500` (the
    /// cause logged) if the handler lets it through: keep cookie sessions
    /// small, or move to a server-side store.
    #[error(
        "the sealed session cookie would be {size} bytes, more than the limit of {limit}; nothing was saved"
    )]
    CookieTooLarge {
        /// The `name=value` size the session would need.
        size: usize,
        /// The limit (4096).
        limit: usize,
    },
}

/// A setting that cannot work, found when the layer is built.
///
/// ```
/// use typed_session::{ConfigError, SessionConfig, SessionLayer};
///
/// let mut config = SessionConfig::default();
/// config.secrets = vec!["hunter2".into()];
/// let err = SessionLayer::from_config(&config).unwrap_err();
/// assert_eq!(err.inner(), &ConfigError::SecretTooShort { len: 7 });
/// assert_eq!(err.to_string().split(':').next(), Some("secrets[0]"));
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
    /// A secret made of one repeated byte (`"aaaa..."`): a placeholder, not a key.
    #[error("session secret is one byte repeated; use a random secret (`openssl rand -base64 48`)")]
    SecretNotRandom,
    /// A secret that is an obvious placeholder: few different characters,
    /// a short pattern repeated, plain words, or little estimated entropy.
    #[error(
        "session secret is weak ({reason}); use a random secret (`openssl rand -base64 48`), or allow it explicitly (`allow_weak_secrets`, SESSION_ALLOW_WEAK_SECRETS=true) for a migration period"
    )]
    SecretWeak {
        /// What makes it weak.
        reason: &'static str,
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
    /// A cookie `Path` or `Domain` with characters that would end the
    /// attribute or inject another (`;`, `,`, spaces, control characters).
    #[error("invalid cookie {attribute} {value:?}: no `;`, `,`, whitespace or control characters")]
    InvalidCookieAttribute {
        /// `path` or `domain`.
        attribute: &'static str,
        /// The value given.
        value: String,
    },
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
    /// The configured store cannot be used (for the file store: the
    /// directory cannot be created or written).
    #[error("session store `{driver}` cannot start: {reason}")]
    StoreUnavailable {
        /// The driver.
        driver: &'static str,
        /// What failed, with its cause.
        reason: String,
    },
    /// A variable of a backend that is not compiled in.
    #[error(
        "environment variable {name} configures the `{driver}` session driver, which needs the `{feature}` feature of typed-session"
    )]
    EnvForMissingDriver {
        /// The variable.
        name: &'static str,
        /// The driver it belongs to.
        driver: &'static str,
        /// The cargo feature that compiles the driver in.
        feature: &'static str,
    },
    /// A backend that needs a secret (cookie mode seals with it) has none.
    #[error(
        "session driver `{0}` needs a secret (set `secrets`, or SESSION_SECRET; generate one with `openssl rand -base64 48`)"
    )]
    SecretRequired(&'static str),
    /// A timeout of zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A size of zero (`max_session_bytes`).
    #[error("{0} must be at least one byte")]
    ZeroSize(&'static str),
    /// The error of one setting, named as it was given: the environment
    /// variable (`SESSION_PREVIOUS_SECRETS (entry 2)`, `REDIS_URL=...` with
    /// the password redacted) for a configuration read by
    /// `SessionConfig::from_env`, else the field path (`secrets[1]`).
    #[error("{setting}: {cause}")]
    Setting {
        /// The variable or field, as the user wrote it.
        setting: String,
        /// What is wrong with it.
        cause: Box<ConfigError>,
    },
}

impl ConfigError {
    /// What is wrong, without the setting's name: the error itself, or the
    /// cause inside [`ConfigError::Setting`].
    ///
    /// ```
    /// use typed_session::{ConfigError, SessionConfig, SessionLayer};
    ///
    /// let mut config = SessionConfig::default();
    /// config.secrets = vec!["hunter2".into()];
    /// let err = SessionLayer::from_config(&config).unwrap_err();
    /// assert_eq!(err.inner(), &ConfigError::SecretTooShort { len: 7 });
    /// assert_eq!(err.setting(), Some("secrets[0]"));
    /// ```
    pub fn inner(&self) -> &ConfigError {
        match self {
            ConfigError::Setting { cause, .. } => cause.inner(),
            other => other,
        }
    }

    /// The environment variable or field the error is about, when known.
    pub fn setting(&self) -> Option<&str> {
        match self {
            ConfigError::Setting { setting, .. } => Some(setting),
            _ => None,
        }
    }
}

/// The error and its sources, for logs. Only for errors that carry no
/// session data (store and I/O errors); parse and validation errors go
/// through [`describe_for_log`].
pub(crate) fn error_chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        // Some errors repeat their source in their own message.
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A description of a load, parse or validation failure that is safe to
/// log: serde's messages quote the offending input and a rule's message may
/// quote the value, so neither is included; what is left is the field, the
/// kind of failure and, for JSON, its category and position.
pub(crate) fn describe_for_log(err: &(dyn StdError + 'static)) -> String {
    if let Some(e) = err.downcast_ref::<serde_json::Error>() {
        let category = match e.classify() {
            serde_json::error::Category::Io => "i/o",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "type or value",
            serde_json::error::Category::Eof => "unexpected end",
        };
        return format!(
            "JSON {category} error at line {} column {}",
            e.line(),
            e.column()
        );
    }
    if let Some(e) = err.downcast_ref::<ValidationError>() {
        return match (e.field(), e.is_readonly()) {
            (_, true) => "read-only field changed".to_owned(),
            (Some(field), false) => format!("field `{field}` failed its validation rule"),
            (None, false) => "the struct failed its validation rule".to_owned(),
        };
    }
    if let Some(e) = err.downcast_ref::<FieldError>() {
        return match e.source() {
            Some(source) => format!("field `{}`: {}", e.field(), describe_for_log(source)),
            None => format!("field `{}` is invalid", e.field()),
        };
    }
    if err.downcast_ref::<MigrationError>().is_some() {
        return "a migration step failed".to_owned();
    }
    if let Some(e) = err.downcast_ref::<LoadError>() {
        return match e {
            LoadError::Corrupt(j) => format!("corrupt record ({})", describe_for_log(j)),
            LoadError::FutureVersion { found, known } => {
                format!("record version {found} is newer than {known}")
            }
            LoadError::Migration { from, .. } => format!("migration from version {from} failed"),
            LoadError::Destroy(f) => format!("discarded: {}", describe_for_log(f)),
            LoadError::Reject(f) => format!("rejected: {}", describe_for_log(f)),
        };
    }
    if let Some(e) = err.downcast_ref::<Error>() {
        return match e {
            Error::Serialize(j) => format!("serialization failed ({})", describe_for_log(j)),
            Error::Load(l) => describe_for_log(l),
            Error::Validation(v) => describe_for_log(v),
            other => error_chain(other),
        };
    }
    error_chain(err)
}

/// Why the session core could not load a request's session; the extractor
/// answers each with its [`SessionRejection`](crate::SessionRejection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadRefused {
    /// The store (or the revocation list) failed.
    StoreUnavailable,
    /// A stored field with `on_invalid = "reject"` failed.
    InvalidSession,
    /// Written by a newer version, with `on_newer_schema(Reject)`.
    NewerVersion,
}
