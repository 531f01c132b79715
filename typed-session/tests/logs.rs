//! Session ids, signing secrets and session data never reach the logs: every
//! tracing event the runtime emits during a full lifecycle is captured at
//! TRACE level and searched.

#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use common::{http_get, http_post, request, serve};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use typed_session::store::MemoryStore;
use typed_session::{SessionLayer, SessionSchema, SigningKey, TypedSession};

/// Collects every event as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {}", span.metadata().name());
        span.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = String::from("record");
        values.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = format!("{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

const PAYLOAD: &str = "PAYLOAD-4d1c-SECRET-CART-ITEM";
const SECRET: &str = "signing secret 7f3a9 that is longer than 32 bytes";

fn bad_item(item: &[String]) -> Result<(), String> {
    if item.iter().any(|i| i == "explode") {
        Err("not allowed".into())
    } else {
        Ok(())
    }
}

#[derive(SessionSchema)]
struct Logged {
    #[session(readonly)]
    user_id: Option<u64>,
    #[session(validate = bad_item)]
    cart: Vec<String>,
}

#[tokio::test]
async fn no_ids_secrets_or_payloads_in_logs() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let store = MemoryStore::new();
    let layer = SessionLayer::new(store.clone())
        .with_secure(false)
        .with_signing_keys(SigningKey::new(SECRET.as_bytes().to_vec()).unwrap(), []);
    let app = Router::new()
        .route(
            "/login",
            post(|s: TypedSession<Logged>| async move {
                s.regenerate_with(|l| l.user_id = Some(4242)).unwrap();
                "ok"
            }),
        )
        .route(
            "/add",
            post(|s: TypedSession<Logged>| async move {
                s.update_cart(|c| c.push(PAYLOAD.to_owned())).unwrap();
                let _ = s.update_cart(|c| c.push("explode".to_owned()));
                "ok"
            }),
        )
        .route(
            "/read",
            get(|s: TypedSession<Logged>| async move { format!("{:?}", s) }),
        )
        .route(
            "/logout",
            post(|s: TypedSession<Logged>| async move {
                s.destroy();
                "bye"
            }),
        )
        .layer(layer);
    let server = serve(app).await;

    let login = http_post(server.addr, "/login", None).await;
    let cookie = login.cookie().unwrap();
    http_post(server.addr, "/add", Some(&cookie)).await;
    let debug = http_get(server.addr, "/read", Some(&cookie)).await.body;
    let relogin = http_post(server.addr, "/login", Some(&cookie))
        .await
        .cookie()
        .unwrap();
    http_get(server.addr, "/read", Some(&cookie)).await; // the dead id
    request(server.addr, "GET", "/read", &[&format!("{cookie}x")]).await; // tampered
    http_post(server.addr, "/logout", Some(&relogin)).await;
    http_get(server.addr, "/read", Some(&relogin)).await; // replayed after destroy

    let value = cookie.split_once('=').unwrap().1;
    let (id, tag) = value.split_once('.').unwrap();
    let new_id = relogin
        .split_once('=')
        .unwrap()
        .1
        .split_once('.')
        .unwrap()
        .0;
    let lines = capture.0.lock().unwrap().clone();
    assert!(lines.len() >= 5, "the lifecycle is logged: {lines:#?}");
    for needle in [id, tag, new_id, PAYLOAD, SECRET, "4242"] {
        for line in &lines {
            assert!(
                !line.contains(needle),
                "{needle:?} leaked into the log line {line:?}"
            );
        }
        assert!(
            !debug.contains(needle),
            "{needle:?} leaked into Debug output {debug:?}"
        );
    }
    let joined = lines.join("\n");
    for expected in [
        "session created",
        "session id regenerated",
        "session destroyed",
        "no live stored session",
        // A span per load and per commit, with the backend and the outcome.
        "span session.load backend=\"MemoryStore\"",
        "span session.commit backend=\"MemoryStore\" op=\"regenerate\"",
        "span session.commit backend=\"MemoryStore\" op=\"destroy\"",
        "record outcome=\"loaded\"",
        "record outcome=\"ok\"",
    ] {
        assert!(
            joined.contains(expected),
            "missing event {expected:?} in:\n{joined}"
        );
    }
}

const PERSONAL: &str = "alice@example.com-4111111111111111";

#[derive(SessionSchema)]
struct Parsed {
    /// Stored as a string by the test, though it is a number: a parse error
    /// whose serde message would quote the stored value.
    #[session(on_invalid = "reset")]
    visits: u64,
    #[session(on_invalid = "destroy")]
    account: u64,
}

/// Finding: when a stored field failed to parse, serde's message, which
/// quotes the stored value, was logged on the `reset` and `destroy` paths.
#[tokio::test]
async fn parse_failures_log_the_field_and_category_not_the_value() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let store = MemoryStore::new();
    let app = Router::new()
        .route(
            "/write",
            post(|s: TypedSession<Parsed>| async move {
                s.set_visits(1).unwrap();
                s.set_account(2).unwrap();
                "ok"
            }),
        )
        .route(
            "/read",
            get(|s: TypedSession<Parsed>| async move { format!("{} {}", s.visits(), s.account()) }),
        )
        .layer(SessionLayer::new(store.clone()).with_secure(false));
    let server = serve(app).await;
    let h = common::harness::Stored::new(store.clone(), MemoryStore::len);
    use common::harness::Harness as _;

    for (field, path) in [("visits", "reset"), ("account", "destroy")] {
        let cookie = http_post(server.addr, "/write", None)
            .await
            .cookie()
            .unwrap();
        let rewrite: fn(String) -> String = if field == "visits" {
            |d| d.replace("\"visits\":1", &format!("\"visits\":\"{PERSONAL}\""))
        } else {
            |d| d.replace("\"account\":2", &format!("\"account\":\"{PERSONAL}\""))
        };
        assert!(h.rewrite(&cookie, rewrite).await);
        let body = http_get(server.addr, "/read", Some(&cookie)).await.body;
        match path {
            "reset" => assert_eq!(body, "0 2", "the bad field was reset"),
            _ => assert_eq!(body, "0 0", "the session was destroyed"),
        }
    }
    let lines = capture.0.lock().unwrap().clone();
    let joined = lines.join("\n");
    for needle in [PERSONAL, "alice", "4111", "invalid type"] {
        assert!(
            !joined.contains(needle),
            "{needle:?} leaked into the logs:\n{joined}"
        );
    }
    for expected in [
        "field=\"visits\"",
        "field `account`",
        "JSON type or value error at line 1 column",
        "reset to its default",
        "stored session discarded",
    ] {
        assert!(
            joined.contains(expected),
            "missing {expected:?} in:\n{joined}"
        );
    }
}

/// Cookie mode: every refused cookie is logged at debug level with its
/// reason; no sealed value, secret or session content appears in any line.
#[cfg(feature = "cookie-store")]
#[tokio::test]
async fn cookie_mode_logs_refusal_reasons_and_nothing_secret() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let clock = typed_session::clock::ManualClock::new();
    let key = || SigningKey::new(SECRET.as_bytes().to_vec()).unwrap();
    let layer = SessionLayer::encrypted_cookie(key())
        .with_secure(false)
        .with_clock(clock.clone())
        .with_idle_timeout(Some(std::time::Duration::from_secs(60)));
    let app = Router::new()
        .route(
            "/add",
            post(|s: TypedSession<Logged>| async move {
                s.update_cart(|c| c.push(PAYLOAD.to_owned())).unwrap();
                "ok"
            }),
        )
        .route(
            "/read",
            get(|s: TypedSession<Logged>| async move { format!("{:?}", s) }),
        )
        .layer(layer);
    let server = serve(app).await;
    let cookie = http_post(server.addr, "/add", None).await.cookie().unwrap();
    let value = cookie.split_once('=').unwrap().1.to_owned();
    let mut flipped = value.clone().into_bytes();
    flipped[60] = if flipped[60] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        format!("session={flipped}"),
        format!("session={}", &value[..32]),
        "session=***".to_owned(),
    ] {
        let res = request(server.addr, "GET", "/read", &[&bad]).await;
        assert_eq!(res.status, 200);
    }
    let debug = http_get(server.addr, "/read", Some(&cookie)).await.body;
    clock.advance(std::time::Duration::from_secs(120));
    http_get(server.addr, "/read", Some(&cookie)).await; // expired

    let lines = capture.0.lock().unwrap().clone();
    let joined = lines.join("\n");
    for expected in [
        "reason=\"does not open (tampered, another cookie name or another secret)\"",
        "reason=\"too short to be sealed\"",
        "reason=\"not unpadded base64url\"",
        "session expired",
        "span session.load backend=\"SealedCookie\"",
    ] {
        assert!(
            joined.contains(expected),
            "missing {expected:?} in:\n{joined}"
        );
    }
    for needle in [&value[..40], &flipped[..40], PAYLOAD, SECRET] {
        assert!(!joined.contains(needle), "{needle:?} leaked:\n{joined}");
        assert!(!debug.contains(needle), "{needle:?} in Debug: {debug}");
    }
}

fn unchanged(
    v: typed_session::serde_json::Value,
) -> Result<typed_session::serde_json::Value, typed_session::MigrationError> {
    Ok(v)
}

#[derive(SessionSchema)]
#[session(version = 3, migrate(from = 1, with = unchanged), migrate(from = 2, with = unchanged))]
struct Drifted {
    count: u32,
    note: String,
}

/// A stored field of the current version that does not decode (its shape
/// changed without a version bump) is said at `warn`, once per field per
/// process, with the type, version, field and category, never the value.
#[test]
fn drift_at_the_current_version_is_a_warning_once_per_field() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let stored = format!(r#"{{"v":3,"c":0,"t":0,"d":{{"count":"{PERSONAL}","note":"x"}}}}"#);
    for _ in 0..3 {
        let session = TypedSession::<Drifted>::import(stored.as_bytes()).unwrap();
        assert_eq!(session.count(), 0, "reset to its default");
        assert_eq!(session.note(), "x");
    }
    let lines = capture.0.lock().unwrap().clone();
    let warnings: Vec<&String> = lines.iter().filter(|l| l.starts_with("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    let w = warnings[0];
    for expected in [
        "schema=\"Drifted\"",
        "version=3",
        "field=\"count\"",
        "JSON type or value error",
        "without a version bump",
    ] {
        assert!(w.contains(expected), "missing {expected:?} in {w}");
    }
    assert!(!lines.join("\n").contains(PERSONAL), "{lines:#?}");
}

#[derive(SessionSchema)]
struct Counter {
    n: u32,
}

/// Finding (issue 23): a store outage logged one error per request (a
/// flood), and its end nothing. Now it is said once at `warn` with the
/// cause, and its end once at `info`; the load and commit spans carry
/// their duration.
#[cfg(feature = "file-store")]
#[tokio::test]
async fn a_store_outage_is_said_once_and_its_end_once() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let dir = common::harness::TempDir::new("outage-log");
    let path = dir.path().join("sessions");
    let store = typed_session::store::FileStore::open_with(&path, 1 << 20, None).unwrap();
    let app = Router::new()
        .route(
            "/inc",
            post(|s: TypedSession<Counter>| async move {
                s.update_n(|n| *n += 1).unwrap();
                format!("{}", s.n())
            }),
        )
        .layer(SessionLayer::new(store).with_secure(false));
    let server = serve(app).await;
    let cookie = http_post(server.addr, "/inc", None).await.cookie().unwrap();
    let aside = dir.path().join("aside");
    std::fs::rename(&path, &aside).unwrap();
    for _ in 0..5 {
        assert_eq!(
            http_post(server.addr, "/inc", Some(&cookie)).await.status,
            503
        );
    }
    assert_eq!(http_post(server.addr, "/inc", None).await.status, 503);
    std::fs::rename(&aside, &path).unwrap();
    assert_eq!(
        http_post(server.addr, "/inc", Some(&cookie)).await.body,
        "2"
    );
    let lines = capture.0.lock().unwrap().clone();
    let said = |level: &str, text: &str| {
        lines
            .iter()
            .filter(|l| l.starts_with(level) && l.contains(text))
            .count()
    };
    assert_eq!(said("WARN", "session store unavailable"), 1, "{lines:#?}");
    assert_eq!(said("ERROR", "session"), 0, "{lines:#?}");
    assert_eq!(said("INFO", "session store recovered"), 1, "{lines:#?}");
    let recovered = lines.iter().find(|l| l.contains("recovered")).unwrap();
    assert!(recovered.contains("failed_requests=6"), "{recovered}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("record") && l.contains("duration_us=")),
        "{lines:#?}"
    );
}
