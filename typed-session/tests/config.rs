//! `SessionConfig`: defaults, validation, serde and `from_env`.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use typed_session::{ConfigError, SameSite, SessionConfig, SessionLayer};

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
        SessionLayer::from_config(&c).unwrap_err()
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
            c.host_prefix = true;
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
}

#[test]
fn serde_form() {
    let c: SessionConfig = serde_json::from_str(
        r#"{"driver":"memory","cookie_name":"shop","same_site":"strict","max_age_secs":60,"secrets":["0123456789abcdef0123456789abcdef"]}"#,
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
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "from_env_child",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env("TYPED_SESSION_FROM_ENV_CHILD", "1");
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
    if std::env::var_os("TYPED_SESSION_FROM_ENV_CHILD").is_none() {
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
        short.starts_with("err session secret is 9 bytes; at least 32"),
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
}
