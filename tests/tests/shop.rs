//! The demo shop end to end: the example's router on 127.0.0.1, driven by a
//! raw HTTP client as a browser would (cookies followed by hand).

#![allow(clippy::unwrap_used)]

#[path = "../../typed-session/tests/common/mod.rs"]
mod common;

use common::{Response, request, serve};
use typed_session::store::MemoryStore;
use typed_session_examples::{demo_layer, shop_app};

/// A browser: keeps the session cookie it is given.
struct Browser {
    addr: std::net::SocketAddr,
    cookie: Option<String>,
}

impl Browser {
    async fn send(&mut self, method: &str, path: &str, form: Option<&str>) -> Response {
        let path = match form {
            Some(f) => format!("{path}?{f}"),
            None => path.to_owned(),
        };
        let cookies: Vec<&str> = self.cookie.as_deref().into_iter().collect();
        let res = if let Some(form) = form {
            form_request(self.addr, method, &path, form, &cookies).await
        } else {
            request(self.addr, method, &path, &cookies).await
        };
        if res.removes_cookie() {
            self.cookie = None;
        } else if let Some(c) = res.cookie() {
            self.cookie = Some(c);
        }
        res
    }

    async fn page(&mut self) -> String {
        let res = self.send("GET", "/", None).await;
        assert_eq!(res.status, 200);
        res.body
    }
}

async fn form_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    form: &str,
    cookies: &[&str],
) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = path.split('?').next().unwrap_or(path);
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        form.len()
    );
    for c in cookies {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(form);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    common::parse(&raw)
}

#[tokio::test]
async fn shopping_flow() {
    shopping_flow_on(demo_layer(MemoryStore::new())).await;
}

/// The demo's embedded default: sessions in files.
#[tokio::test]
async fn shopping_flow_on_the_file_store() {
    let dir = common::harness::TempDir::new("shop");
    let store = typed_session::store::FileStore::open(dir.path()).expect("file store");
    shopping_flow_on(demo_layer(store)).await;
}

async fn shopping_flow_on(layer: typed_session::SessionLayer) {
    let server = serve(shop_app(layer)).await;
    let mut b = Browser {
        addr: server.addr,
        cookie: None,
    };

    let page = b.page().await;
    assert!(page.contains("anonymous"));
    assert!(b.cookie.is_none(), "looking creates no session");

    let res = b.send("POST", "/cart", Some("product=tea")).await;
    assert_eq!(res.status, 303);
    let anonymous_cookie = b
        .cookie
        .clone()
        .expect("the first write creates the session");
    let page = b.page().await;
    assert!(
        page.contains("tea × 1") && page.contains("added tea"),
        "{page}"
    );
    assert!(
        !b.page().await.contains("added tea"),
        "a flash message shows once"
    );

    b.send("POST", "/login", None).await;
    assert_ne!(
        b.cookie.as_ref(),
        Some(&anonymous_cookie),
        "login regenerates the id"
    );
    let page = b.page().await;
    assert!(
        page.contains("user 1001") && page.contains("welcome back") && page.contains("tea × 1"),
        "{page}"
    );

    b.send("POST", "/register/email", Some("email=a%40b.test"))
        .await;
    b.send("POST", "/register/name", Some("name=Ada")).await;
    assert!(b.page().await.contains("registered Ada &lt;a@b.test&gt;"));

    let json = b.send("GET", "/cart", None).await;
    assert_eq!(json.body, r#"[{"product":"tea","qty":1}]"#);

    b.send("POST", "/logout", None).await;
    let page = b.page().await;
    assert!(
        page.contains("anonymous") && page.contains("logged out"),
        "{page}"
    );
    assert!(!page.contains("tea"), "{page}");

    // The pre-login cookie died at login.
    let old = request(server.addr, "GET", "/cart", &[&anonymous_cookie]).await;
    assert_eq!(old.body, "[]");
}

#[tokio::test]
async fn invalid_writes_are_refused_with_the_rule_message() {
    let server = serve(shop_app(demo_layer(MemoryStore::new()))).await;
    let mut b = Browser {
        addr: server.addr,
        cookie: None,
    };
    for i in 0..20 {
        b.send("POST", "/cart", Some(&format!("product=p{i}")))
            .await;
    }
    b.send("POST", "/cart", Some("product=one-too-many")).await;
    let page = b.page().await;
    assert!(page.contains("a cart holds at most 20 lines"), "{page}");
    assert!(!page.contains("one-too-many ×"), "{page}");
    let res = b.send("POST", "/register/name", Some("name=x")).await;
    assert_eq!(res.status, 409);
}

/// Finding: the demo accepted 2 MB form fields into the cart, the email and
/// the name. Every input is bounded now, by the body limit and by the
/// session's own rules (which also run on load).
#[tokio::test]
async fn every_input_is_bounded() {
    let server = serve(shop_app(demo_layer(MemoryStore::new()))).await;
    let mut b = Browser {
        addr: server.addr,
        cookie: None,
    };
    let huge = format!("product={}", "x".repeat(2 * 1024 * 1024));
    let res = b.send("POST", "/cart", Some(&huge)).await;
    assert_eq!(res.status, 413, "the body limit refuses 2 MB");
    let long = format!("product={}", "p".repeat(65));
    b.send("POST", "/cart", Some(&long)).await;
    let page = b.page().await;
    assert!(
        page.contains("product names are at most 64 characters"),
        "{page}"
    );
    assert!(!page.contains("pppp"), "{page}");
    let email = format!("email={}%40example.test", "e".repeat(300));
    b.send("POST", "/register/email", Some(&email)).await;
    let page = b.page().await;
    assert!(page.contains("at most 254 characters"), "{page}");
    b.send("POST", "/register/email", Some("email=a%40b.test"))
        .await;
    let name = format!("name={}", "n".repeat(101));
    b.send("POST", "/register/name", Some(&name)).await;
    assert!(b.page().await.contains("a name is at most 100 characters"));
}

/// Finding: data planted before login carried into the signed-in session.
/// The demo's login starts from a fresh session and carries the cart over
/// on purpose; a half-done registration does not survive it.
#[tokio::test]
async fn login_keeps_the_cart_and_drops_the_rest() {
    let server = serve(shop_app(demo_layer(MemoryStore::new()))).await;
    let mut b = Browser {
        addr: server.addr,
        cookie: None,
    };
    b.send("POST", "/cart", Some("product=tea")).await;
    b.send("POST", "/register/email", Some("email=planted%40evil.test"))
        .await;
    assert!(b.page().await.contains("planted@evil.test"));
    b.send("POST", "/login", None).await;
    let page = b.page().await;
    assert!(
        page.contains("user 1001") && page.contains("tea × 1"),
        "{page}"
    );
    assert!(!page.contains("planted@evil.test"), "{page}");
}
