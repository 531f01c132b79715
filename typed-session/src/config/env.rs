//! `SessionConfig::from_env`: one table of variables ([`VARS`]) from which
//! the parsing, the "belongs to another driver" warning, the rustdoc of
//! `from_env` and the README's table all come (a unit test checks that the
//! two tables are the rendering of this one; `TYPED_SESSION_BLESS=1`
//! rewrites them).

use std::path::PathBuf;

use super::{
    CookieModeConfig, FileConfig, FileDurability, MemoryConfig, Origin, RedisConfig, SessionConfig,
    StoreConfig, compiled_in, feature_of,
};
use crate::cookies::SameSite;
use crate::error::ConfigError;

/// One environment variable.
pub(super) struct Var {
    pub(super) name: &'static str,
    /// The driver whose settings it holds; `None` for every driver.
    driver: Option<&'static str>,
    /// What it takes, for the table.
    #[cfg_attr(not(test), allow(dead_code))]
    takes: &'static str,
    /// What it sets, for the table.
    #[cfg_attr(not(test), allow(dead_code))]
    doc: &'static str,
    /// Applies a (non-empty) value; `Err` says what was expected.
    apply: fn(&mut SessionConfig, &str) -> Result<(), String>,
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, found {other:?}")),
    }
}

fn seconds_or_none(v: &str) -> Result<Option<u64>, String> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("expected whole seconds or `none`, found {v:?}"))
}

fn number<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected {what}, found {v:?}"))
}

fn memory(c: &mut SessionConfig) -> Option<&mut MemoryConfig> {
    match &mut c.store {
        StoreConfig::Memory(m) => Some(m),
        _ => None,
    }
}

fn file(c: &mut SessionConfig) -> Option<&mut FileConfig> {
    match &mut c.store {
        StoreConfig::File(f) => Some(f),
        _ => None,
    }
}

fn redis(c: &mut SessionConfig) -> Option<&mut RedisConfig> {
    match &mut c.store {
        StoreConfig::Redis(r) => Some(r),
        _ => None,
    }
}

fn cookie(c: &mut SessionConfig) -> Option<&mut CookieModeConfig> {
    match &mut c.store {
        StoreConfig::Cookie(k) => Some(k),
        _ => None,
    }
}

/// Every variable `from_env` reads, in the order of the tables.
/// `SESSION_DRIVER`, `SESSION_STRICT_CONFIG` and `SESSION_PREVIOUS_SECRETS`
/// are read first or with another (see `from_env_with_default`), and are
/// listed for the tables only (their `apply` does nothing).
pub(super) const VARS: &[Var] = &[
    Var {
        name: "SESSION_DRIVER",
        driver: None,
        takes: "`memory`, `file`, `redis` or `cookie`",
        doc: "the store (default `memory`, or the app's embedded default); empty is an error",
        apply: |_, _| Ok(()),
    },
    Var {
        name: "SESSION_SECRET",
        driver: None,
        takes: "32+ bytes",
        doc: "the secret: signs ids, seals cookies; an obvious placeholder is refused (generate one with `openssl rand -base64 48`)",
        apply: |c, v| {
            c.secrets = vec![v.to_owned()];
            Ok(())
        },
    },
    Var {
        name: "SESSION_PREVIOUS_SECRETS",
        driver: None,
        takes: "comma-separated secrets",
        doc: "older secrets still accepted (rotation); read with `SESSION_SECRET`",
        apply: |_, _| Ok(()),
    },
    Var {
        name: "SESSION_ALLOW_WEAK_SECRETS",
        driver: None,
        takes: "`true` / `false`",
        doc: "a weak secret is a warning, not an error (a guessable secret lets anyone forge sessions)",
        apply: |c, v| {
            c.allow_weak_secrets = boolean(v)?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_COOKIE_NAME",
        driver: None,
        takes: "a cookie name",
        doc: "the cookie's name (default `session`, sent as `__Host-session`)",
        apply: |c, v| {
            c.cookie_name = v.to_owned();
            Ok(())
        },
    },
    Var {
        name: "SESSION_SECURE",
        driver: None,
        takes: "`true` / `false`",
        doc: "`Secure` (default `true`)",
        apply: |c, v| {
            c.secure = boolean(v)?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_HTTP_ONLY",
        driver: None,
        takes: "`true` / `false`",
        doc: "`HttpOnly` (default `true`)",
        apply: |c, v| {
            c.http_only = boolean(v)?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_SAME_SITE",
        driver: None,
        takes: "`lax`, `strict` or `none`",
        doc: "`SameSite` (default `lax`)",
        apply: |c, v| {
            c.same_site = match v.trim().to_ascii_lowercase().as_str() {
                "lax" => SameSite::Lax,
                "strict" => SameSite::Strict,
                "none" => SameSite::None,
                other => return Err(format!("expected lax, strict or none, found {other:?}")),
            };
            Ok(())
        },
    },
    Var {
        name: "SESSION_PATH",
        driver: None,
        takes: "a path",
        doc: "`Path` (default `/`)",
        apply: |c, v| {
            c.path = v.to_owned();
            Ok(())
        },
    },
    Var {
        name: "SESSION_DOMAIN",
        driver: None,
        takes: "a domain",
        doc: "`Domain` (default none: this host only)",
        apply: |c, v| {
            c.domain = Some(v.to_owned());
            Ok(())
        },
    },
    Var {
        name: "SESSION_HOST_PREFIX",
        driver: None,
        takes: "`true` / `false`",
        doc: "the `__Host-` prefix (default: whenever it can be)",
        apply: |c, v| {
            c.host_prefix = Some(boolean(v)?);
            Ok(())
        },
    },
    Var {
        name: "SESSION_MAX_AGE",
        driver: None,
        takes: "seconds or `none`",
        doc: "`Max-Age` (default none: a browser-session cookie)",
        apply: |c, v| {
            c.max_age_secs = seconds_or_none(v)?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_IDLE_TIMEOUT",
        driver: None,
        takes: "seconds or `none`",
        doc: "idle timeout (default 24 h)",
        apply: |c, v| {
            c.idle_timeout_secs = seconds_or_none(v)?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_ABSOLUTE_TIMEOUT",
        driver: None,
        takes: "seconds or `none`",
        doc: "absolute lifetime (default 7 days)",
        apply: |c, v| {
            c.absolute_timeout_secs = seconds_or_none(v)?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_ROLLING",
        driver: None,
        takes: "`true` / `false`",
        doc: "re-send the cookie on every response that used the session (default `false`)",
        apply: |c, v| {
            c.rolling = boolean(v)?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_MAX_SESSION_BYTES",
        driver: None,
        takes: "bytes",
        doc: "the largest stored session (default 64 KiB)",
        apply: |c, v| {
            c.max_session_bytes = number(v, "a number of bytes")?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_STORE_LAZY",
        driver: None,
        takes: "`true` / `false`",
        doc: "start without checking the store (by default a store that cannot start is a start-up error naming the variable)",
        apply: |c, v| {
            c.lazy_store = boolean(v)?;
            Ok(())
        },
    },
    Var {
        name: "SESSION_STRICT_CONFIG",
        driver: None,
        takes: "`true` / `false`",
        doc: "another driver's variable is an error, not a warning",
        apply: |_, _| Ok(()),
    },
    Var {
        name: "SESSION_MEMORY_CAPACITY",
        driver: Some("memory"),
        takes: "sessions",
        doc: "memory store: most sessions held (default 1,000,000)",
        apply: |c, v| {
            if let Some(m) = memory(c) {
                m.capacity = number(v, "a number of sessions")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_MEMORY_MAX_BYTES",
        driver: Some("memory"),
        takes: "bytes",
        doc: "memory store: most bytes held (default 512 MiB)",
        apply: |c, v| {
            if let Some(m) = memory(c) {
                m.max_bytes = number(v, "a number of bytes")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_FILE_PATH",
        driver: Some("file"),
        takes: "a directory",
        doc: "file store: where the records are",
        apply: |c, v| {
            if let Some(f) = file(c) {
                f.path = PathBuf::from(v);
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_FILE_SWEEP_INTERVAL",
        driver: Some("file"),
        takes: "seconds",
        doc: "file store: time between sweeper passes",
        apply: |c, v| {
            if let Some(f) = file(c) {
                f.sweep_interval_secs = number(v, "whole seconds")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_FILE_MAX_RECORD_BYTES",
        driver: Some("file"),
        takes: "bytes",
        doc: "file store: the largest record file read",
        apply: |c, v| {
            if let Some(f) = file(c) {
                f.max_record_bytes = number(v, "a number of bytes")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_FILE_CAPACITY",
        driver: Some("file"),
        takes: "sessions",
        doc: "file store: most sessions held (default 1,000,000)",
        apply: |c, v| {
            if let Some(f) = file(c) {
                f.capacity = number(v, "a number of sessions")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_FILE_MAX_BYTES",
        driver: Some("file"),
        takes: "bytes",
        doc: "file store: most bytes held (default 1 GiB)",
        apply: |c, v| {
            if let Some(f) = file(c) {
                f.max_bytes = number(v, "a number of bytes")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_FILE_DURABILITY",
        driver: Some("file"),
        takes: "`full` or `os`",
        doc: "file store: `full` (default) syncs before a write is acknowledged; `os` survives a process crash, not a power cut",
        apply: |c, v| {
            if let Some(f) = file(c) {
                f.durability = match v.trim().to_ascii_lowercase().as_str() {
                    "full" => FileDurability::Full,
                    "os" => FileDurability::Os,
                    other => return Err(format!("expected full or os, found {other:?}")),
                };
            }
            Ok(())
        },
    },
    Var {
        name: "REDIS_URL",
        driver: Some("redis"),
        takes: "`redis://` URLs",
        doc: "Redis: the node, or the Cluster's nodes comma-separated (read only with `SESSION_DRIVER=redis`: apps often set it for other uses)",
        apply: |c, v| {
            if let Some(r) = redis(c) {
                r.url = v.to_owned();
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_REDIS_PREFIX",
        driver: Some("redis"),
        takes: "a key prefix",
        doc: "Redis: the records' key prefix",
        apply: |c, v| {
            if let Some(r) = redis(c) {
                r.prefix = v.to_owned();
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_REDIS_CLUSTER",
        driver: Some("redis"),
        takes: "`true` / `false`",
        doc: "Redis: `REDIS_URL` names a Cluster",
        apply: |c, v| {
            if let Some(r) = redis(c) {
                r.cluster = boolean(v)?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_REDIS_CONNECT_TIMEOUT_MS",
        driver: Some("redis"),
        takes: "milliseconds",
        doc: "Redis: connect timeout",
        apply: |c, v| {
            if let Some(r) = redis(c) {
                r.connect_timeout_ms = number(v, "milliseconds")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_REDIS_COMMAND_TIMEOUT_MS",
        driver: Some("redis"),
        takes: "milliseconds",
        doc: "Redis: command timeout",
        apply: |c, v| {
            if let Some(r) = redis(c) {
                r.command_timeout_ms = number(v, "milliseconds")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_REDIS_LOCAL_CACHE",
        driver: Some("redis"),
        takes: "records",
        doc: "Redis: the local copy's capacity (default 0: off)",
        apply: |c, v| {
            if let Some(r) = redis(c) {
                r.local_cache = number(v, "a number of records")?;
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_REDIS_CA_FILE",
        driver: Some("redis"),
        takes: "a PEM file",
        doc: "Redis: trust this CA for `rediss://` (feature `redis-tls`)",
        apply: |c, v| {
            if let Some(r) = redis(c) {
                r.root_certificate_file = Some(PathBuf::from(v));
            }
            Ok(())
        },
    },
    Var {
        name: "SESSION_COOKIE_COMPRESS",
        driver: Some("cookie"),
        takes: "`true` / `false`",
        doc: "cookie mode: deflate the sealed session when smaller (default `false`; see `with_cookie_compression` for what it costs)",
        apply: |c, v| {
            if let Some(k) = cookie(c) {
                k.compress = boolean(v)?;
            }
            Ok(())
        },
    },
];

/// The value of `name`, when set and not blank.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn invalid(name: &'static str, reason: String) -> ConfigError {
    ConfigError::InvalidEnv { name, reason }
}

/// The whole of `from_env_with_default`.
pub(super) fn read(store: StoreConfig) -> Result<SessionConfig, ConfigError> {
    let mut config = SessionConfig {
        store,
        origin: Origin::Env,
        ..SessionConfig::default()
    };
    // A driver's variable without the driver compiled in: an error naming
    // the feature.
    for var in VARS {
        if let Some(driver) = var.driver
            && !compiled_in(driver)
            && env_var(var.name).is_some()
        {
            return Err(ConfigError::EnvForMissingDriver {
                name: var.name,
                driver,
                feature: feature_of(driver),
            });
        }
    }
    if std::env::var_os("SESSION_DRIVER").is_some() && env_var("SESSION_DRIVER").is_none() {
        return Err(invalid(
            "SESSION_DRIVER",
            format!(
                "it is set but empty: unset it for the default ({}) or name a driver (memory, file, redis or cookie)",
                config.store.driver()
            ),
        ));
    }
    if let Some(driver) = env_var("SESSION_DRIVER") {
        config.store = match driver.trim().to_ascii_lowercase().as_str() {
            "memory" => StoreConfig::Memory(MemoryConfig::default()),
            "file" => StoreConfig::File(FileConfig::default()),
            "redis" => StoreConfig::Redis(RedisConfig::default()),
            "cookie" => StoreConfig::Cookie(CookieModeConfig::default()),
            other => {
                return Err(invalid(
                    "SESSION_DRIVER",
                    format!("unknown driver {other:?} (expected memory, file, redis or cookie)"),
                ));
            }
        };
    }
    let strict = match env_var("SESSION_STRICT_CONFIG") {
        Some(v) => boolean(&v).map_err(|e| invalid("SESSION_STRICT_CONFIG", e))?,
        None => false,
    };
    let chosen = config.store.driver();
    for var in VARS {
        let Some(value) = env_var(var.name) else {
            continue;
        };
        match var.driver {
            Some(driver) if driver != chosen => {
                // REDIS_URL is common for other uses: never counted.
                if var.name == "REDIS_URL" {
                    continue;
                }
                let note = format!(
                    "{} configures the `{driver}` session driver, but the driver is `{chosen}`: it is ignored",
                    var.name
                );
                if strict {
                    return Err(invalid(
                        var.name,
                        format!("{note} (SESSION_STRICT_CONFIG=true)"),
                    ));
                }
                config.warnings.push(note);
            }
            _ => (var.apply)(&mut config, &value).map_err(|e| invalid(var.name, e))?,
        }
    }
    if chosen == "redis" && env_var("REDIS_URL").is_none() {
        config.warnings.push(format!(
            "REDIS_URL is not set: the Redis store uses the default {}",
            RedisConfig::default().url
        ));
    }
    if !config.secrets.is_empty()
        && let Some(previous) = env_var("SESSION_PREVIOUS_SECRETS")
    {
        config.secrets.extend(
            previous
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    config.validate()?;
    Ok(config)
}

/// The variables as a Markdown table (the README's and `from_env`'s).
#[cfg(test)]
fn table() -> String {
    let mut out = String::from("| variable | takes | sets |\n|---|---|---|\n");
    for var in VARS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            var.name, var.takes, var.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "<!-- env-table: generated from config/env.rs -->\n";
    const END: &str = "<!-- /env-table -->";

    /// Checks that `file` holds the table between the markers (rewrites it
    /// with `TYPED_SESSION_BLESS=1`).
    fn holds_the_table(file: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find(START).expect("the start marker") + START.len();
        let end = start + text[start..].find(END).expect("the end marker");
        let found = &text[start..end];
        let want = table();
        if found != want && std::env::var_os("TYPED_SESSION_BLESS").is_some() {
            let blessed = format!("{}{want}{}", &text[..start], &text[end..]);
            std::fs::write(&path, blessed).unwrap();
            return;
        }
        assert_eq!(
            found, want,
            "{file}: the variable table is generated from config/env.rs; \
             run the tests with TYPED_SESSION_BLESS=1 to rewrite it"
        );
    }

    #[test]
    fn the_readme_and_the_rustdoc_show_the_table() {
        holds_the_table("../README.md");
        holds_the_table("src/config/env.md");
    }

    #[test]
    fn every_variable_is_listed_once() {
        let mut names: Vec<&str> = VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
        for var in VARS {
            assert!(var.name == "REDIS_URL" || var.name.starts_with("SESSION_"));
            if let Some(driver) = var.driver {
                assert!(["memory", "file", "redis", "cookie"].contains(&driver));
            }
        }
    }
}
