//! `SessionConfig`: defaults, validation, serde and `from_env`.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use typed_session::store::MemoryStore;
use typed_session::{ConfigError, RedisConfig, SameSite, SessionConfig, SessionLayer, StoreConfig};

const SECRET: &str = "0123456789abcdef0123456789abcdef-and-more";

#[test]
fn defaults_are_the_safe_ones() {
    let c = SessionConfig::default();
    assert!(c.secure && c.http_only);
    assert_eq!(c.same_site, SameSite::Lax);
    assert_eq!(c.path, "/");
    assert_eq!(c.domain, None);
    assert_eq!(c.max_age_secs, None);
    assert_eq!(c.idle_timeout_secs, Some(86_400));
    assert_eq!(c.absolute_timeout_secs, Some(604_800));
    assert!(!c.rolling);
    c.validate().unwrap();
}

#[test]
fn invalid_combinations_are_startup_errors() {
    let bad = |f: fn(&mut SessionConfig)| {
        let mut c = SessionConfig::default();
        f(&mut c);
        SessionLayer::from_config(&c).unwrap_err().inner().clone()
    };
    assert_eq!(
        bad(|c| c.secrets = vec!["short".into()]),
        ConfigError::SecretTooShort { len: 5 }
    );
    assert_eq!(
        bad(|c| c.secrets = vec![SECRET.into(), "x".repeat(31)]),
        ConfigError::SecretTooShort { len: 31 }
    );
    assert_eq!(
        bad(|c| {
            c.same_site = SameSite::None;
            c.secure = false;
        }),
        ConfigError::SameSiteNoneWithoutSecure
    );
    assert_eq!(
        bad(|c| {
            c.host_prefix = Some(true);
            c.domain = Some("example.test".into());
        }),
        ConfigError::HostPrefixMismatch
    );
    assert_eq!(
        bad(|c| c.idle_timeout_secs = Some(0)),
        ConfigError::ZeroDuration("idle_timeout_secs")
    );
    assert!(matches!(
        bad(|c| c.cookie_name = "bad name;".into()),
        ConfigError::InvalidCookieName(_)
    ));
    let err = bad(|c| c.secrets = vec!["short".into()]).to_string();
    assert!(err.contains("at least 32"), "{err}");
    // Each error names the setting at fault (the field, for data).
    let mut c = SessionConfig::default();
    c.secrets = vec![SECRET.into(), "x".repeat(31)];
    let err = SessionLayer::from_config(&c).unwrap_err();
    assert_eq!(err.setting(), Some("secrets[1]"));
    assert!(
        err.to_string()
            .starts_with("secrets[1]: session secret is 31 bytes"),
        "{err}"
    );
    assert_eq!(
        bad(|c| c.secrets = vec!["a".repeat(40)]),
        ConfigError::SecretNotRandom
    );
    // Attribute injection: the config path and the builder refuse the same values.
    for (path, domain) in [
        ("/a;Domain=evil.test", None),
        ("/", Some("example.test; Secure")),
    ] {
        let err = bad(|c| {
            c.path = "/x;y".into();
        });
        assert!(matches!(
            err,
            ConfigError::InvalidCookieAttribute {
                attribute: "path",
                ..
            }
        ));
        let mut layer = SessionLayer::new(MemoryStore::new()).with_path(path);
        if let Some(domain) = domain {
            layer = layer.with_domain(domain);
        }
        assert!(
            matches!(
                layer.check(),
                Err(ConfigError::InvalidCookieAttribute { .. })
            ),
            "{path} {domain:?}"
        );
    }
    assert_eq!(
        SessionLayer::new(MemoryStore::new())
            .with_same_site(SameSite::None)
            .with_secure(false)
            .check(),
        Err(ConfigError::SameSiteNoneWithoutSecure),
        "the builder makes the config's check too"
    );
}

#[test]
#[should_panic(expected = "invalid SessionLayer settings")]
fn an_invalid_builder_panics_when_the_router_is_built() {
    let layer = SessionLayer::new(MemoryStore::new()).with_path("/a\r\nX-Injected: 1");
    let _ = axum::Router::<()>::new().layer(layer);
}

#[test]
fn debug_output_redacts_secrets() {
    let mut c = SessionConfig::default();
    c.secrets = vec![
        SECRET.into(),
        "an older secret of at least thirty-two bytes".into(),
    ];
    c.store = StoreConfig::Redis(RedisConfig::default());
    if let StoreConfig::Redis(r) = &mut c.store {
        r.url = "redis://user:hunter2-password@cache.internal:6379/0".into();
    }
    let debug = format!("{c:?}");
    for secret in [SECRET, "older secret", "hunter2-password"] {
        assert!(!debug.contains(secret), "{secret:?} in {debug}");
    }
    assert!(debug.contains("2 redacted"), "{debug}");
    assert!(debug.contains("cache.internal"), "{debug}");

    // Finding (issue 22, item 5): only the first URL's userinfo, up to its
    // first `@`, was redacted: later Cluster nodes' passwords, and a
    // password holding `@`, were printed.
    if let StoreConfig::Redis(r) = &mut c.store {
        r.url = "redis://default:first-pw@10.0.0.1:7000,rediss://:sec@nd-pw@10.0.0.2:7000,redis://u:th/ird-pw@10.0.0.3:7000/0,redis+unix:///run/redis.sock?db=0&pass=fourth-pw".into();
    }
    let debug = format!("{c:?}");
    for secret in ["first-pw", "nd-pw", "sec@", "ird-pw", "fourth-pw"] {
        assert!(!debug.contains(secret), "{secret:?} in {debug}");
    }
    for host in [
        "10.0.0.1:7000",
        "10.0.0.2:7000",
        "10.0.0.3:7000/0",
        "/run/redis.sock",
    ] {
        assert!(debug.contains(host), "{host:?} missing in {debug}");
    }
}

#[test]
fn the_backend_is_a_tagged_shape() {
    let c: SessionConfig =
        serde_json::from_str(r#"{"store":{"driver":"file","path":"/var/lib/app/sessions"}}"#)
            .unwrap();
    match &c.store {
        StoreConfig::File(f) => {
            assert_eq!(f.path, std::path::PathBuf::from("/var/lib/app/sessions"));
            assert_eq!(f.max_record_bytes, 1 << 20, "defaults fill the rest");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.validate().is_ok(),
        cfg!(feature = "file-store"),
        "valid where the file store is compiled in"
    );
    let mut cookie = c.clone();
    cookie.store = StoreConfig::Cookie(Default::default());
    assert_eq!(
        cookie.validate().map_err(|e| e.inner().clone()),
        Err(ConfigError::SecretRequired("cookie")),
        "cookie mode seals with the secret"
    );
    cookie.secrets = vec!["a secret for sealing cookies, 32 bytes or more".into()];
    assert_eq!(
        cookie.validate(),
        if cfg!(feature = "cookie-store") {
            Ok(())
        } else {
            Err(ConfigError::DriverUnavailable("cookie", "cookie-store"))
        }
    );
    assert!(
        serde_json::from_str::<SessionConfig>(r#"{"store":{"driver":"memory","path":"x"}}"#)
            .is_err(),
        "another backend's setting is a typo"
    );
    let m: SessionConfig =
        serde_json::from_str(r#"{"store":{"driver":"memory","capacity":10}}"#).unwrap();
    SessionLayer::from_config(&m).unwrap();
}

#[test]
fn serde_form() {
    let c: SessionConfig = serde_json::from_str(
        r#"{"store":{"driver":"memory"},"cookie_name":"shop","same_site":"strict","max_age_secs":60,"secrets":["e3b0c44298fc1c149afbf4c8996fb924"]}"#,
    )
    .unwrap();
    assert_eq!(c.cookie_name, "shop");
    assert_eq!(c.same_site, SameSite::Strict);
    assert_eq!(c.max_age_secs, Some(60));
    assert!(c.secure, "unset fields keep their defaults");
    SessionLayer::from_config(&c).unwrap();
    assert!(
        serde_json::from_str::<SessionConfig>(r#"{"cookie_nme":"x"}"#).is_err(),
        "typos are errors"
    );
    let back: SessionConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

/// Runs `from_env` in a child process (the environment is process-wide).
fn from_env_in_child(vars: &[(&str, &str)]) -> String {
    child(vars, "1")
}

/// `from_env`, then `SessionLayer::from_config`, in a child process: its
/// warnings or the error.
fn layer_in_child(vars: &[(&str, &str)]) -> String {
    child(vars, "layer")
}

fn child(vars: &[(&str, &str)], mode: &str) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "from_env_child",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env("TYPED_SESSION_FROM_ENV_CHILD", mode);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("child printed no result: {text}"))
        .to_owned()
}

#[test]
fn from_env_child() {
    let Some(mode) = std::env::var_os("TYPED_SESSION_FROM_ENV_CHILD") else {
        return;
    };
    if mode == "layer" {
        // The configuration, its warnings, and the layer built from it.
        match SessionConfig::from_env()
            .and_then(|c| SessionLayer::from_config(&c).map(|_| c.warnings().join(" | ")))
        {
            Ok(warnings) => println!("RESULT ok {warnings}"),
            Err(e) => println!("RESULT err {e}"),
        }
        return;
    }
    match SessionConfig::from_env() {
        Ok(c) => println!(
            "RESULT ok name={} secure={} same_site={:?} max_age={:?} idle={:?} absolute={:?} rolling={} secrets={} domain={:?}",
            c.cookie_name,
            c.secure,
            c.same_site,
            c.max_age_secs,
            c.idle_timeout_secs,
            c.absolute_timeout_secs,
            c.rolling,
            c.secrets.len(),
            c.domain
        ),
        Err(e) => println!("RESULT err {e}"),
    }
}

#[test]
fn from_env_reads_session_variables() {
    let out = from_env_in_child(&[
        ("SESSION_DRIVER", "memory"),
        ("SESSION_SECRET", SECRET),
        (
            "SESSION_PREVIOUS_SECRETS",
            "an older secret of at least thirty-two bytes",
        ),
        ("SESSION_COOKIE_NAME", "envcookie"),
        ("SESSION_SECURE", "false"),
        ("SESSION_SAME_SITE", "strict"),
        ("SESSION_MAX_AGE", "3600"),
        ("SESSION_IDLE_TIMEOUT", "none"),
        ("SESSION_ABSOLUTE_TIMEOUT", "7200"),
        ("SESSION_ROLLING", "yes"),
        ("SESSION_DOMAIN", "example.test"),
    ]);
    assert_eq!(
        out,
        "ok name=envcookie secure=false same_site=Strict max_age=Some(3600) idle=None absolute=Some(7200) rolling=true secrets=2 domain=Some(\"example.test\")"
    );
    assert_eq!(from_env_in_child(&[]).split(' ').next(), Some("ok"));
    let short = from_env_in_child(&[("SESSION_SECRET", "too short")]);
    assert!(
        short.starts_with("err SESSION_SECRET: session secret is 9 bytes; at least 32"),
        "{short}"
    );
    assert!(
        !short.contains("too short"),
        "the secret itself is never printed: {short}"
    );
    let bad = from_env_in_child(&[("SESSION_SECURE", "maybe")]);
    assert!(bad.contains("SESSION_SECURE"), "{bad}");
    let driver = from_env_in_child(&[("SESSION_DRIVER", "postgres")]);
    assert!(driver.contains("SESSION_DRIVER"), "{driver}");
    let keyless = from_env_in_child(&[("SESSION_DRIVER", "cookie")]);
    assert!(
        keyless.starts_with("err SESSION_SECRET: session driver `cookie` needs a secret"),
        "{keyless}"
    );
    let cookie = from_env_in_child(&[
        ("SESSION_DRIVER", "cookie"),
        ("SESSION_SECRET", SECRET),
        ("SESSION_COOKIE_COMPRESS", "true"),
    ]);
    if cfg!(feature = "cookie-store") {
        assert!(cookie.starts_with("ok "), "{cookie}");
    } else {
        assert_eq!(
            cookie,
            "err environment variable SESSION_COOKIE_COMPRESS configures the `cookie` session driver, which needs the `cookie-store` feature of typed-session"
        );
        let missing =
            from_env_in_child(&[("SESSION_DRIVER", "cookie"), ("SESSION_SECRET", SECRET)]);
        assert_eq!(
            missing,
            "err SESSION_DRIVER: session driver `cookie` needs the `cookie-store` feature of typed-session"
        );
    }
    // REDIS_URL is common for other uses: read only with SESSION_DRIVER=redis.
    assert!(from_env_in_child(&[("REDIS_URL", "redis://127.0.0.1:1")]).starts_with("ok"));
    let cap = from_env_in_child(&[("SESSION_MEMORY_CAPACITY", "many")]);
    assert!(cap.contains("SESSION_MEMORY_CAPACITY"), "{cap}");
}

/// `root_certificate_file` (`SESSION_REDIS_CA_FILE`): a missing or
/// non-PEM file, or a `redis://` URL, is a start-up error naming the file;
/// a PEM CA with a `rediss://` URL builds the layer (it connects on first
/// use). Without the `redis-tls` feature the setting is an error.
#[cfg(feature = "redis-store")]
#[test]
fn redis_root_certificate_file() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-ca.pem");
    let config = |url: &str, file: &std::path::Path| {
        let mut c = SessionConfig::default();
        let mut r = RedisConfig::default();
        r.url = url.into();
        r.root_certificate_file = Some(file.to_path_buf());
        c.store = StoreConfig::Redis(r);
        // Settings only: no server to check at start-up here.
        c.lazy_store = true;
        c
    };
    let refused =
        |c: SessionConfig| match SessionLayer::from_config(&c).map_err(|e| e.inner().clone()) {
            Err(ConfigError::StoreUnavailable {
                driver: "redis",
                reason,
            }) => reason,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted"),
        };
    if cfg!(feature = "redis-tls") {
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        assert!(
            refused(config("rediss://127.0.0.1:6380", missing)).contains("/nonexistent/ca.pem")
        );
        assert!(SessionLayer::from_config(&config("rediss://127.0.0.1:6380", &fixture)).is_ok());
        let not_pem = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert!(refused(config("rediss://127.0.0.1:6380", &not_pem)).contains("Cargo.toml"));
        assert!(refused(config("redis://127.0.0.1:6379", &fixture)).contains("test-ca.pem"));
    } else {
        assert!(refused(config("redis://127.0.0.1:6379", &fixture)).contains("redis-tls"));
    }
}

/// Finding (issue 23): errors did not name the variable at fault
/// (`SESSION_PREVIOUS_SECRETS=short` said "session secret is 5 bytes",
/// `REDIS_URL=http://x` "Redis URL did not parse"), an empty
/// `SESSION_DRIVER` silently meant memory, another driver's variables were
/// ignored without a word, and an unreachable Redis started fine.
#[test]
fn errors_name_the_variable_and_odd_settings_are_said() {
    let previous = from_env_in_child(&[
        ("SESSION_SECRET", SECRET),
        ("SESSION_PREVIOUS_SECRETS", "short"),
    ]);
    assert!(
        previous.starts_with("err SESSION_PREVIOUS_SECRETS (entry 1): session secret is 5 bytes"),
        "{previous}"
    );
    let empty = from_env_in_child(&[("SESSION_DRIVER", "")]);
    assert!(
        empty.starts_with(
            "err environment variable SESSION_DRIVER has an invalid value: it is set but empty"
        ),
        "{empty}"
    );
    if cfg!(all(feature = "redis-store", feature = "file-store")) {
        let redis = |url: &str| {
            layer_in_child(&[
                ("SESSION_DRIVER", "redis"),
                ("REDIS_URL", url),
                ("SESSION_SECRET", SECRET),
                ("SESSION_REDIS_CONNECT_TIMEOUT_MS", "500"),
            ])
        };
        let scheme = redis("http://x");
        assert!(
            scheme.starts_with("err REDIS_URL=http://x: session store `redis` cannot start"),
            "{scheme}"
        );
        let down = redis("redis://:pw-in-url@127.0.0.1:1");
        assert!(
            down.starts_with(
                "err REDIS_URL=redis://<redacted>@127.0.0.1:1: session store `redis` cannot start"
            ),
            "{down}"
        );
        assert!(down.contains("refused"), "{down}");
        assert!(!down.contains("pw-in-url"), "{down}");
        let lazy = layer_in_child(&[
            ("SESSION_DRIVER", "redis"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("SESSION_STORE_LAZY", "true"),
            ("SESSION_FILE_PATH", "/tmp/x"),
        ]);
        assert_eq!(
            lazy,
            "ok SESSION_FILE_PATH configures the `file` session driver, but the driver is `redis`: it is ignored"
        );
        let default_url =
            layer_in_child(&[("SESSION_DRIVER", "redis"), ("SESSION_STORE_LAZY", "true")]);
        assert!(
            default_url.contains(
                "REDIS_URL is not set: the Redis store uses the default redis://127.0.0.1:6379"
            ),
            "{default_url}"
        );
        let strict = layer_in_child(&[
            ("SESSION_DRIVER", "redis"),
            ("SESSION_STORE_LAZY", "true"),
            ("SESSION_STRICT_CONFIG", "true"),
            ("SESSION_FILE_PATH", "/tmp/x"),
        ]);
        assert!(
            strict.starts_with("err environment variable SESSION_FILE_PATH"),
            "{strict}"
        );
    }
}
