//! The demo shop end to end over a real socket, on every backend: memory,
//! file (a temporary directory), Redis (a redis-server the test starts on a
//! free loopback port) and the encrypted cookie. Every route of the JSON
//! API, the HTML forms with their CSRF tokens, and the v1 -> v2 migration.

#![allow(clippy::unwrap_used)]

#[path = "../../typed-session/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use typed_session::store::{FileStore, MemoryStore, Record, RedisStore, SessionStore};
use typed_session::{SessionId, SessionLayer, SigningKey};
use typed_session_examples::{App, demo_layer, shop_app};

use common::harness::TempDir;
use common::{Response, parse, serve};

/// A backend of the shop under test, and what must live as long as it.
enum Backend {
    Memory(MemoryStore),
    File(FileStore, #[allow(dead_code)] TempDir),
    Redis(RedisStore),
    Cookie,
}

impl Backend {
    fn memory() -> Self {
        Backend::Memory(MemoryStore::new())
    }

    fn file() -> Self {
        let dir = TempDir::new("shop");
        Backend::File(FileStore::open(dir.path().join("sessions")).unwrap(), dir)
    }

    fn redis() -> Self {
        let store = RedisStore::new(&common::redis::node().url())
            .unwrap()
            .with_prefix(common::redis::prefix());
        Backend::Redis(store)
    }

    fn layer(&self) -> SessionLayer {
        match self {
            Backend::Memory(s) => demo_layer(s.clone()),
            Backend::File(s, _) => demo_layer(s.clone()),
            Backend::Redis(s) => demo_layer(s.clone()),
            Backend::Cookie => SessionLayer::encrypted_cookie(
                SigningKey::new(b"the shop test's cookie secret, 32 bytes or more".to_vec())
                    .unwrap(),
            )
            .with_secure(false),
        }
    }

    fn store(&self) -> Option<&dyn StoreAccess> {
        match self {
            Backend::Memory(s) => Some(s),
            Backend::File(s, _) => Some(s),
            Backend::Redis(s) => Some(s),
            Backend::Cookie => None,
        }
    }
}

/// Writing a record straight into a store, as an earlier version of the app did.
trait StoreAccess: Sync {
    fn put<'a>(
        &'a self,
        id: &'a SessionId,
        data: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
    fn get<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>>;
}

impl<T: SessionStore> StoreAccess for T {
    fn put<'a>(
        &'a self,
        id: &'a SessionId,
        data: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let expires = std::time::SystemTime::now() + Duration::from_secs(3600);
            assert!(
                self.create(&id.key(), Record::new(data, 1, expires))
                    .await
                    .unwrap()
            );
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(async move {
            self.load(&id.key())
                .await
                .unwrap()
                .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
        })
    }
}

/// A browser: follows `Set-Cookie`, sends JSON or forms.
struct Browser {
    addr: SocketAddr,
    cookie: Option<String>,
    /// Extra request header lines (`Origin: ...`).
    headers: Vec<String>,
}

impl Browser {
    fn new(addr: SocketAddr) -> Self {
        Browser {
            addr,
            cookie: None,
            headers: Vec::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<(&str, String)>) -> Response {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (ctype, body) = body.unwrap_or(("text/plain", String::new()));
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        for h in &self.headers {
            req.push_str(&format!("{h}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        let res = parse(&raw);
        if res.removes_cookie() {
            self.cookie = None;
        } else if let Some(c) = res.cookie() {
            self.cookie = Some(c);
        }
        res
    }

    /// A JSON call: the status and the parsed body.
    async fn api(&mut self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| ("application/json", b.to_string()));
        let res = self.send(method, path, body).await;
        let value = serde_json::from_str(&res.body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {:?}", res.body));
        (res.status, value)
    }

    async fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, None).await
    }

    /// Posts a form with `fields`, adding the page's CSRF token unless `csrf` is false.
    async fn form(&mut self, path: &str, fields: &[(&str, &str)], csrf: bool) -> Response {
        let mut pairs: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        if csrf {
            // The cart page always has forms (and so the token).
            let page = self.get("/cart").await.body;
            pairs.push(format!("csrf={}", token_in(&page)));
        }
        self.send(
            "POST",
            path,
            Some(("application/x-www-form-urlencoded", pairs.join("&"))),
        )
        .await
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn token_in(page: &str) -> String {
    let at = page.find("name=csrf value=\"").expect("a CSRF field") + 17;
    page[at..at + 32].to_owned()
}

/// The messages of one flash list on a page.
fn flash_on(page: &str, id: &str) -> Vec<String> {
    let start = page.find(&format!("<ul id={id} class=flash>")).unwrap();
    let list = &page[start..];
    let list = &list[..list.find("</ul>").unwrap()];
    list.split("<li>")
        .skip(1)
        .map(|m| m.trim_end_matches("</li>").to_owned())
        .collect()
}

async fn every_api_route(backend: Backend) {
    let server = serve(shop_app(backend.layer(), App::default())).await;
    let mut b = Browser::new(server.addr);
    let healthz = b.get("/healthz").await;
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok"));
    assert!(healthz.set_cookies().is_empty());

    assert_eq!(b.api("GET", "/api/me", None).await.1["code"], 2001);
    let (status, body) = b
        .api(
            "POST",
            "/api/login",
            Some(json!({"email": "alice@example.com", "password": "nope"})),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (401, json!(2003)));

    // An anonymous cart, then a login: a new session id, the cart kept.
    let (status, cart) = b
        .api(
            "POST",
            "/api/cart",
            Some(json!({"productId": 2, "quantity": 1})),
        )
        .await;
    assert_eq!((status, cart["code"].clone()), (200, json!(1000)));
    let anonymous = b.cookie.clone().unwrap();
    let (status, body) = b
        .api(
            "POST",
            "/api/login",
            Some(json!({"email": "alice@example.com", "password": "alice-password"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    assert_ne!(
        b.cookie.as_deref(),
        Some(anonymous.as_str()),
        "a new id at login"
    );
    let (_, me) = b.api("GET", "/api/me", None).await;
    assert_eq!(
        (me["code"].clone(), me["user"]["id"].clone()),
        (json!(1000), json!(1))
    );
    assert!(me["loginAt"].as_u64().unwrap() > 1_700_000_000);

    // Flash: shown once.
    let (_, flash) = b.api("GET", "/api/flash", None).await;
    assert_eq!(flash["success"], json!(["welcome, Alice"]));
    assert_eq!(
        b.api("GET", "/api/flash", None).await.1["success"],
        json!([])
    );

    // Cart: adding a product again adds to its line; the total follows.
    let (_, cart) = b
        .api(
            "POST",
            "/api/cart",
            Some(json!({"productId": 2, "quantity": 2})),
        )
        .await;
    assert_eq!(cart["items"][0]["quantity"], 3);
    let (_, cart) = b
        .api(
            "POST",
            "/api/cart",
            Some(json!({"productId": 1, "quantity": 4})),
        )
        .await;
    assert_eq!(cart["totalCents"], 3 * 2999 + 4 * 450);
    let (status, body) = b
        .api(
            "POST",
            "/api/cart",
            Some(json!({"productId": 99, "quantity": 1})),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (404, json!(4004)));
    let (status, body) = b
        .api(
            "POST",
            "/api/cart",
            Some(json!({"productId": 1, "quantity": 0})),
        )
        .await;
    assert_eq!((status, body["field"].clone()), (422, json!("quantity")));
    let (_, cart) = b.api("GET", "/api/cart", None).await;
    assert_eq!(cart["items"].as_array().unwrap().len(), 2);
    let (_, cart) = b.api("DELETE", "/api/cart", None).await;
    assert_eq!(
        (cart["items"].clone(), cart["totalCents"].clone()),
        (json!([]), json!(0))
    );

    // Preferences: defaults, a valid change, a refused one naming the field.
    let (_, prefs) = b.api("GET", "/api/preferences", None).await;
    assert_eq!(
        prefs["preferences"],
        json!({"language": "en", "theme": "light", "timezone": "UTC", "notifications": true})
    );
    let dark = json!({"language": "de", "theme": "dark", "timezone": "Europe/Berlin", "notifications": false});
    assert_eq!(
        b.api("PUT", "/api/preferences", Some(dark.clone())).await.1["preferences"],
        dark
    );
    for (field, bad) in [
        (
            "language",
            json!({"language": "xx", "theme": "dark", "timezone": "UTC", "notifications": true}),
        ),
        (
            "theme",
            json!({"language": "en", "theme": "neon", "timezone": "UTC", "notifications": true}),
        ),
        (
            "timezone",
            json!({"language": "en", "theme": "dark", "timezone": "Mars", "notifications": true}),
        ),
    ] {
        let (status, body) = b.api("PUT", "/api/preferences", Some(bad)).await;
        assert_eq!((status, body["field"].clone()), (422, json!(field)));
    }
    assert_eq!(
        b.api("GET", "/api/preferences", None).await.1["preferences"],
        dark
    );

    // Page views: every HTML page counts.
    assert_eq!(b.api("GET", "/api/stats", None).await.1["pageViews"], 0);
    b.get("/").await;
    b.get("/cart").await;
    assert_eq!(b.api("GET", "/api/stats", None).await.1["pageViews"], 2);

    // The account deleted: its session ends at once (the cookie removed).
    let (_, gone) = b.api("DELETE", "/api/me", None).await;
    assert_eq!(gone["deleted"], 1);
    assert!(b.cookie.is_none(), "the cookie is removed");
    let (status, body) = b.api("GET", "/api/me", None).await;
    assert_eq!((status, body["code"].clone()), (401, json!(2001)));

    // Registration, in order only; completing it creates the user and logs in.
    let mut r = Browser::new(server.addr);
    let step2 = json!({"street": "1 Tea Street", "city": "Leeds", "zip": "LS1 1AA"});
    let (status, body) = r
        .api("POST", "/api/register/step2", Some(step2.clone()))
        .await;
    assert_eq!((status, body["code"].clone()), (400, json!(3001)));
    let (status, body) = r.api("POST", "/api/register/complete", None).await;
    assert_eq!((status, body["code"].clone()), (400, json!(3002)));
    let (status, body) = r
        .api(
            "POST",
            "/api/register/step1",
            Some(json!({"name": "Carol", "email": "not-an-email"})),
        )
        .await;
    assert_eq!((status, body["field"].clone()), (422, json!("email")));
    let (status, _) = r
        .api(
            "POST",
            "/api/register/step1",
            Some(json!({"name": "Carol", "email": "carol@example.com"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        r.api("POST", "/api/register/complete", None).await.1["code"],
        3002
    );
    assert_eq!(
        r.api("POST", "/api/register/step2", Some(step2)).await.0,
        200
    );
    let (status, body) = r.api("POST", "/api/register/complete", None).await;
    assert_eq!(status, 200, "{body}");
    let carol = body["user"]["id"].clone();
    let (_, me) = r.api("GET", "/api/me", None).await;
    assert_eq!(
        (me["user"]["id"].clone(), me["user"]["role"].clone()),
        (carol, json!("customer"))
    );
    assert!(
        r.get("/register").await.body.contains("step 1 of 3"),
        "registration cleared"
    );

    // Logout ends the session.
    let (status, _) = r.api("POST", "/api/logout", None).await;
    assert_eq!(status, 200);
    assert!(r.cookie.is_none(), "the cookie is removed");
    assert_eq!(r.api("GET", "/api/me", None).await.1["code"], 2001);
}

async fn html_forms_with_csrf(backend: Backend) {
    let server = serve(shop_app(backend.layer(), App::default())).await;
    let mut b = Browser::new(server.addr);
    let home = b.get("/").await;
    assert!(home.body.contains("anonymous"));
    let login = [("email", "bob@example.com"), ("password", "bob-password")];
    let refused = b.form("/login", &login, false).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, "invalid or missing CSRF token")
    );
    let wrong = b
        .form(
            "/login",
            &[
                ("email", "bob@example.com"),
                ("password", "bob-password"),
                ("csrf", "0000"),
            ],
            false,
        )
        .await;
    assert_eq!(wrong.status, 403);
    let res = b.form("/login", &login, true).await;
    assert_eq!((res.status, res.header("location")), (303, Some("/")));
    let page = b.get("/").await.body;
    assert!(page.contains("signed in as bob@example.com"), "{page}");
    assert_eq!(flash_on(&page, "flash-success"), ["welcome, Bob"]);
    assert!(
        flash_on(&b.get("/").await.body, "flash-success").is_empty(),
        "once"
    );

    let res = b
        .form("/cart/add", &[("product_id", "3"), ("quantity", "2")], true)
        .await;
    assert_eq!(res.header("location"), Some("/cart"));
    let cart = b.get("/cart").await.body;
    assert!(cart.contains("Teapot × 2"), "{cart}");
    assert_eq!(flash_on(&cart, "flash-success"), ["added 2 × Teapot"]);
    b.form(
        "/cart/add",
        &[("product_id", "3"), ("quantity", "500")],
        true,
    )
    .await;
    assert_eq!(
        flash_on(&b.get("/cart").await.body, "flash-error"),
        ["quantity: 1 to 99"]
    );

    b.form(
        "/preferences",
        &[("language", "fr"), ("theme", "dark"), ("timezone", "UTC")],
        true,
    )
    .await;
    let prefs = b.get("/preferences").await.body;
    assert!(
        prefs.contains("<body class=\"dark\">") && prefs.contains("value=\"fr\""),
        "{prefs}"
    );
    b.form(
        "/preferences",
        &[
            ("language", "fr"),
            ("theme", "<script>"),
            ("timezone", "UTC"),
        ],
        true,
    )
    .await;
    let prefs = b.get("/preferences").await.body;
    assert_eq!(flash_on(&prefs, "flash-error"), ["theme: light or dark"]);
    assert!(!prefs.contains("<script>"));

    let res = b.form("/logout", &[], true).await;
    assert_eq!(res.status, 303);
    let page = b.get("/").await.body;
    assert!(page.contains("anonymous") && flash_on(&page, "flash-success") == ["logged out"]);
    assert!(
        !b.get("/cart").await.body.contains("class=item"),
        "the cart ended with the session"
    );
}

async fn v1_sessions_are_migrated(backend: Backend) {
    let Some(store) = backend.store() else { return };
    let fixture = include_str!("../../examples/fixtures/session-v1.json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let record = fixture.trim().replace("1795471653023", &now.to_string());
    let id = SessionId::from_cookie_value("AAAAAAAAAAAAAAAAAAAAAA").unwrap();
    store.put(&id, record).await;
    let server = serve(shop_app(backend.layer(), App::default())).await;
    let mut b = Browser::new(server.addr);
    b.cookie = Some(format!("session={}", id.expose()));
    let (_, cart) = b.api("GET", "/api/cart", None).await;
    assert_eq!(
        cart["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (
                i["name"].as_str().unwrap().to_owned(),
                i["quantity"].as_u64().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("Green tea".to_owned(), 2), ("Kettle".to_owned(), 1)],
        "v1 names mapped to catalogue ids, the unknown one dropped"
    );
    assert_eq!(
        b.api("GET", "/api/me", None).await.1["code"],
        2001,
        "v1's made-up login dropped"
    );
    let stored = store.get(&id).await.unwrap();
    assert!(
        stored.starts_with("{\"v\":2,"),
        "written back as v2: {stored}"
    );
    let (_, flash) = b.api("GET", "/api/flash", None).await;
    assert_eq!(
        flash["success"],
        json!(["welcome back"]),
        "v1 notices became success messages"
    );
    assert!(b.get("/register").await.body.contains("step 2 of 3, new"));
}

/// Finding (issue 22, item 10): body-less state-changing routes answered a
/// plain cross-site form post. A state-changing request whose `Origin` is
/// foreign, or that a browser marks `Sec-Fetch-Site: cross-site`, is `403`
/// with code 4003 on the JSON API and the HTML forms alike.
async fn cross_site_writes_are_refused(backend: Backend) {
    let server = serve(shop_app(backend.layer(), App::default())).await;
    let mut b = Browser::new(server.addr);
    let (status, _) = b
        .api(
            "POST",
            "/api/login",
            Some(json!({"email": "bob@example.com", "password": "bob-password"})),
        )
        .await;
    assert_eq!(status, 200);
    let token = token_in(&b.get("/cart").await.body);
    for header in [
        "Origin: https://evil.example",
        "Sec-Fetch-Site: cross-site",
        "Origin: null",
    ] {
        b.headers = vec![header.to_owned()];
        let (status, body) = b.api("POST", "/api/logout", None).await;
        assert_eq!(
            (status, body["code"].clone()),
            (403, json!(4003)),
            "{header}"
        );
        let form = b
            .send(
                "POST",
                "/cart/add",
                Some((
                    "application/x-www-form-urlencoded",
                    format!("product_id=1&quantity=1&csrf={token}"),
                )),
            )
            .await;
        assert_eq!(form.status, 403, "{header}: {}", form.body);
        assert!(form.body.contains("4003"), "{}", form.body);
    }
    b.headers.clear();
    assert_eq!(
        b.api("GET", "/api/me", None).await.1["code"],
        1000,
        "still signed in"
    );
    assert_eq!(b.api("GET", "/api/cart", None).await.1["items"], json!([]));
    // Same origin, and no browser headers at all: allowed.
    b.headers = vec!["Origin: http://127.0.0.1".to_owned()];
    assert_eq!(b.api("POST", "/api/logout", None).await.0, 200);
}

/// Finding (issue 22, item 11): passwords were kept in plain text and
/// compared with `==`; 500 wrong guesses took 28 ms. Now Argon2id, checked
/// off the async threads, and after 10 failures for one email from one
/// client, that client gets `429` (code 2004) for that email, the right
/// password included, until the window ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_slow_and_throttled() {
    let server = serve(shop_app(Backend::memory().layer(), App::default())).await;
    let mut b = Browser::new(server.addr);
    let started = std::time::Instant::now();
    for n in 0..10 {
        let (status, body) = b
            .api(
                "POST",
                "/api/login",
                Some(json!({"email": "alice@example.com", "password": format!("guess-{n}")})),
            )
            .await;
        assert_eq!((status, body["code"].clone()), (401, json!(2003)));
    }
    let ten = started.elapsed();
    eprintln!("10 wrong guesses took {ten:?}");
    let res = b
        .send(
            "POST",
            "/api/login",
            Some((
                "application/json",
                json!({"email": "alice@example.com", "password": "alice-password"}).to_string(),
            )),
        )
        .await;
    assert_eq!(res.status, 429, "{}", res.body);
    assert!(res.body.contains("2004"), "{}", res.body);
    assert!(
        res.header("retry-after")
            .is_some_and(|s| s.parse::<u64>().unwrap() > 800)
    );
    // The HTML form is throttled the same way.
    let form = b
        .form(
            "/login",
            &[
                ("email", "alice@example.com"),
                ("password", "alice-password"),
            ],
            true,
        )
        .await;
    assert_eq!(form.status, 429, "{}", form.body);
    // Another account from the same client is not.
    let (status, _) = b
        .api(
            "POST",
            "/api/login",
            Some(json!({"email": "bob@example.com", "password": "bob-password"})),
        )
        .await;
    assert_eq!(status, 200);
}

/// The demo's `/metrics` (feature `metrics`): the session counters and the
/// store latency histogram after a few requests.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_sessions_do() {
    let server = serve(shop_app(Backend::memory().layer(), App::default())).await;
    let mut b = Browser::new(server.addr);
    let (status, _) = b
        .api(
            "POST",
            "/api/login",
            Some(json!({"email": "bob@example.com", "password": "bob-password"})),
        )
        .await;
    assert_eq!(status, 200);
    b.api(
        "POST",
        "/api/cart",
        Some(json!({"productId": 1, "quantity": 1})),
    )
    .await;
    b.api("GET", "/api/cart", None).await;
    b.api("POST", "/api/logout", None).await;
    let metrics = b.get("/metrics").await.body;
    eprintln!("{metrics}");
    for name in [
        "typed_session_sessions_loaded_total",
        "typed_session_sessions_saved_total",
        "typed_session_sessions_destroyed_total",
        "typed_session_store_seconds",
        "typed_session_live_sessions{backend=\"MemoryStore\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing in:\n{metrics}");
    }
}

/// Finding (issue 23): axum's own rejections (a malformed or non-JSON body)
/// and a store outage answered plain text, breaking the API's contract
/// that every response is JSON with a numeric `code`. Now `400`/`415` are
/// code 4000 and the outage `503` code 5003, for the extractor's rejection
/// and the commit's alike (the layer's `on_rejection` hook).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_json_contract_on_errors() {
    let backend = Backend::file();
    let Backend::File(store, _) = &backend else {
        unreachable!()
    };
    let dir = store.path().to_path_buf();
    let server = serve(shop_app(backend.layer(), App::default())).await;
    let mut b = Browser::new(server.addr);
    b.api(
        "POST",
        "/api/cart",
        Some(json!({"productId": 1, "quantity": 1})),
    )
    .await;
    for (ctype, body, status) in [
        ("application/json", "{\"productId\": 1,", 400),
        ("text/plain", "productId=1", 415),
        ("application/json", "{\"productId\": \"one\"}", 422),
    ] {
        let res = b
            .send("POST", "/api/cart", Some((ctype, body.to_owned())))
            .await;
        eprintln!("{ctype} {body}: {} {}", res.status, res.body);
        let value: Value = serde_json::from_str(&res.body).unwrap();
        assert_eq!(
            (res.status, value["code"].clone()),
            (status, json!(4000)),
            "{}",
            res.body
        );
    }
    let aside = dir.with_extension("aside");
    std::fs::rename(&dir, &aside).unwrap();
    let outage = b.send("GET", "/api/cart", None).await;
    let mut fresh = Browser::new(server.addr);
    let commit = fresh
        .send(
            "POST",
            "/api/cart",
            Some((
                "application/json",
                json!({"productId": 1, "quantity": 1}).to_string(),
            )),
        )
        .await;
    std::fs::rename(&aside, &dir).unwrap();
    for res in [outage, commit] {
        eprintln!("outage: {} {}", res.status, res.body);
        let value: Value = serde_json::from_str(&res.body).unwrap();
        assert_eq!(
            (res.status, value["code"].clone()),
            (503, json!(5003)),
            "{}",
            res.body
        );
    }
    assert_eq!(b.api("GET", "/api/cart", None).await.0, 200, "recovered");
}

/// Registers `name` through the three steps; the new user's id.
async fn register(b: &mut Browser, name: &str) -> u64 {
    let email = format!("{}@example.com", name.to_lowercase());
    let (status, _) = b
        .api(
            "POST",
            "/api/register/step1",
            Some(json!({"name": name, "email": email})),
        )
        .await;
    assert_eq!(status, 200);
    let step2 = json!({"street": "1 Tea Street", "city": "Leeds", "zip": "LS1 1AA"});
    assert_eq!(
        b.api("POST", "/api/register/step2", Some(step2)).await.0,
        200
    );
    let (status, body) = b.api("POST", "/api/register/complete", None).await;
    assert_eq!(status, 200, "{body}");
    body["user"]["id"].as_u64().unwrap()
}

/// Finding (high): new accounts took "highest id + 1" and deleting an
/// account neither ended its sessions nor revoked them, so a cookie kept
/// from a deleted account signed in as the next person to register. Now
/// ids are random and never reused, and deleting an account revokes every
/// session of it (the revocation list, on every backend, cookie mode too).
async fn a_deleted_account_stays_out(backend: Backend) {
    let server = serve(shop_app(backend.layer(), App::default())).await;
    let mut attacker = Browser::new(server.addr);
    let mallory = register(&mut attacker, "Mallory").await;
    assert!(mallory > 2, "not a seed id");
    // A copy of the cookie, taken before the deletion (another device).
    let kept = attacker.cookie.clone();
    let mut copy = Browser::new(server.addr);
    copy.cookie = kept.clone();
    assert_eq!(
        copy.api("GET", "/api/me", None).await.1["user"]["id"],
        mallory
    );

    let (status, gone) = attacker.api("DELETE", "/api/me", None).await;
    assert_eq!((status, gone["deleted"].as_u64()), (200, Some(mallory)));
    let (status, body) = copy.api("GET", "/api/me", None).await;
    assert_eq!((status, body["code"].clone()), (401, json!(2001)), "{body}");

    // The next people to register get other ids; the old cookie is nobody.
    for name in ["Victim", "Trent"] {
        let mut victim = Browser::new(server.addr);
        let id = register(&mut victim, name).await;
        assert_ne!(id, mallory, "an id was reused");
        let mut stale = Browser::new(server.addr);
        stale.cookie = kept.clone();
        let (status, body) = stale.api("GET", "/api/me", None).await;
        assert_eq!(status, 401, "the old cookie signed in: {body}");
    }
}

macro_rules! on_every_backend {
    ($($name:ident => $backend:expr),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn every_api_route() {
                    super::every_api_route($backend).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn html_forms_with_csrf() {
                    super::html_forms_with_csrf($backend).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn cross_site_writes_are_refused() {
                    super::cross_site_writes_are_refused($backend).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_deleted_account_stays_out() {
                    super::a_deleted_account_stays_out($backend).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn v1_sessions_are_migrated() {
                    super::v1_sessions_are_migrated($backend).await;
                }
            }
        )*
    };
}

on_every_backend!(
    memory => Backend::memory(),
    file => Backend::file(),
    redis => Backend::redis(),
    cookie => Backend::Cookie,
);

/// The `shop` example binary in this build's target directory: `cargo test
/// --workspace` (what `scripts/test.sh` runs) builds every example first.
fn shop_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap();
    let bin = target
        .join("examples")
        .join(format!("shop{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p typed-session-examples --examples` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}

#[test]
fn bad_configuration_stops_start_up_naming_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("SESSION_SAME_SITE", "sideways"),
        ("SESSION_DRIVER", "postgres"),
        ("SESSION_SECRET", "short"),
        ("PORT", "eighty"),
    ] {
        let out = std::process::Command::new(shop_binary())
            .env(name, value)
            .env("SESSION_FILE_PATH", tmp.path().join("sessions"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let named = if name == "SESSION_SECRET" {
            "secret"
        } else {
            name
        };
        assert!(stderr.contains(named), "{name}: {stderr}");
        assert!(
            !stderr.contains(value) || name != "SESSION_SECRET",
            "{stderr}"
        );
    }
}

/// Findings (issue 22, items 5 and 13): the start-up line printed
/// `REDIS_URL` with its password, and `SESSION_SECURE=true` started with a
/// generated secret. Now the URL is redacted, the mode is said, and a
/// secure deployment without a secret does not start.
#[test]
fn the_demo_says_its_mode_and_never_prints_a_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sessions");
    let out = std::process::Command::new(shop_binary())
        .env("SESSION_SECURE", "true")
        .env_remove("SESSION_SECRET")
        .env("SESSION_FILE_PATH", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SESSION_SECURE=true needs SESSION_SECRET"),
        "{stderr}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // An unreachable Redis: a start-up error naming REDIS_URL, redacted.
    let out = std::process::Command::new(shop_binary())
        .env("SESSION_DRIVER", "redis")
        .env("REDIS_URL", "redis://:topsecret-pw@127.0.0.1:1")
        .env(
            "SESSION_SECRET",
            "Zq7xP2mK9vL4nR8tW3yB6cF1hJ5dG0sA-production-like",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("unreachable Redis: exit {:?}, {stderr}", out.status.code());
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "REDIS_URL=redis://<redacted>@127.0.0.1:1: session store `redis` cannot start"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("topsecret-pw"), "{stderr}");

    let mut child = std::process::Command::new(shop_binary())
        .env("PORT", port.to_string())
        .env("SESSION_DRIVER", "redis")
        .env("SESSION_STORE_LAZY", "true")
        .env("REDIS_URL", "redis://:topsecret-pw@127.0.0.1:1")
        .env(
            "SESSION_SECRET",
            "Zq7xP2mK9vL4nR8tW3yB6cF1hJ5dG0sA-production-like",
        )
        .env("SESSION_SECURE", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its start-up line, waited for (up to 20 s on a loaded machine).
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let started = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the demo's start-up line within 20 s");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let all = format!("{started}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("topsecret-pw"), "{all}");
    assert!(all.contains("production mode"), "{all}");
}

#[tokio::test]
async fn the_demo_starts_on_its_default_store_with_a_development_secret() {
    let dir = TempDir::new("shop-start");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(shop_binary())
        .env("PORT", port.to_string())
        .env("SESSION_FILE_PATH", dir.path().join("sessions"))
        .env("SESSION_FILE_CAPACITY", "50")
        .env_remove("SESSION_DRIVER")
        .env_remove("SESSION_SECRET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the shop listens within 10 s");
    let mut b = Browser::new(addr);
    let (status, body) = b
        .api(
            "POST",
            "/api/login",
            Some(json!({"email": "bob@example.com", "password": "bob-password"})),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (200, json!(1000)));
    let files = || common::file::record_files(&dir.path().join("sessions")).len();
    assert_eq!(files(), 1, "the session is a file of the default store");
    // Finding (issue 22, item 3): every cookie-less page view left a file
    // (1,000 requests, 1,000 files). Bounded by SESSION_FILE_CAPACITY, and
    // the signed-in session outlives the flood.
    for _ in 0..500 {
        assert_eq!(Browser::new(addr).get("/").await.status, 200);
    }
    let left = files();
    eprintln!("500 cookie-less page views with SESSION_FILE_CAPACITY=50: {left} files");
    assert!(left <= 50, "{left} files");
    assert_eq!(b.api("GET", "/api/me", None).await.1["code"], 1000);
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("file store in"), "{stdout}");
    assert!(stdout.contains("development mode"), "{stdout}");
    assert!(stderr.contains("SESSION_SECRET is not set"), "{stderr}");
}

/// Starts the shop binary on `port` with its file store in `dir` and a
/// fixed secret (so cookies outlive the process); waits until it listens.
async fn start_shop(port: u16, dir: &std::path::Path) -> tokio::process::Child {
    let child = tokio::process::Command::new(shop_binary())
        .env("PORT", port.to_string())
        .env("SESSION_FILE_PATH", dir)
        .env(
            "SESSION_SECRET",
            "a fixed secret for the crash test, 32 bytes+",
        )
        .env_remove("SESSION_DRIVER")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the shop did not listen on {port} within 10 s");
}

/// SIGKILL of the app in the middle of writes, then a restart: every
/// acknowledged write is there (a write in flight at the kill may be too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_app_restarts_with_every_acknowledged_write() {
    let dir = TempDir::new("shop-kill");
    let sessions = dir.path().join("sessions");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut app = start_shop(port, &sessions).await;
    let add = json!({"productId": 1, "quantity": 1});
    let writers: Vec<_> = (0..10)
        .map(|_| {
            let add = add.clone();
            tokio::spawn(async move {
                let mut b = Browser::new(addr);
                let mut acknowledged = 0u64;
                for _ in 0..90 {
                    // A refused connection (the app is dead) ends the loop.
                    let Ok(Ok(stream)) = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                    else {
                        break;
                    };
                    drop(stream);
                    let sent = tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::spawn({
                            let cookie = b.cookie.clone();
                            let add = add.clone();
                            async move {
                                let mut b = Browser {
                                    addr,
                                    cookie,
                                    headers: Vec::new(),
                                };
                                let (status, body) = b.api("POST", "/api/cart", Some(add)).await;
                                (status, body, b.cookie)
                            }
                        }),
                    )
                    .await;
                    match sent {
                        Ok(Ok((200, body, cookie))) => {
                            acknowledged = body["items"][0]["quantity"].as_u64().unwrap();
                            b.cookie = cookie;
                        }
                        _ => break,
                    }
                }
                (b.cookie, acknowledged)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.start_kill().unwrap();
    let _ = app.wait().await;
    let mut results = Vec::new();
    for w in writers {
        results.push(w.await.unwrap());
    }
    let total: u64 = results.iter().map(|(_, n)| n).sum();
    assert!(total > 0, "writes were acknowledged before the kill");

    let _app = start_shop(port, &sessions).await;
    let mut kept = 0;
    for (cookie, acknowledged) in &results {
        let Some(cookie) = cookie else { continue };
        let mut b = Browser {
            addr,
            cookie: Some(cookie.clone()),
            headers: Vec::new(),
        };
        let (_, cart) = b.api("GET", "/api/cart", None).await;
        let now = cart["items"][0]["quantity"].as_u64().unwrap_or(0);
        assert!(
            now == *acknowledged || now == acknowledged + 1,
            "acknowledged {acknowledged}, found {now} after the restart"
        );
        kept += 1;
    }
    println!(
        "killed mid-write: {total} acknowledged writes over {kept} sessions, all present after the restart"
    );
}
