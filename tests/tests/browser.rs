//! The demo shop in a real headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini): cookies, redirects and forms as a browser
//! does them. Needs Debian's `chromium` and `chromium-driver` (.ci/run
//! installs them); it fails, never skips, when they are missing.

#![allow(clippy::unwrap_used)]

#[path = "../../typed-session/tests/common/mod.rs"]
mod common;

use std::net::TcpListener as StdListener;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use tokio::process::{Child, Command};
use typed_session::store::MemoryStore;
use typed_session_examples::{demo_layer, shop_app};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_driver() -> Driver {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "the browser test needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver (.ci/run does)"
    );
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Driver { child, port };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on 127.0.0.1:{port} within 10 s");
}

async fn click(client: &fantoccini::Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn type_into(client: &fantoccini::Client, css: &str, keys: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

async fn wait_for(client: &fantoccini::Client, css: &str) {
    client.wait().for_element(Locator::Css(css)).await.unwrap();
}

async fn text(client: &fantoccini::Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_in_headless_chromium() {
    let server = common::serve(shop_app(demo_layer(MemoryStore::new()))).await;
    let driver = start_driver().await;
    let profile = std::env::temp_dir().join(format!("typed-session-chromium-{}", driver.port));

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = tokio::time::timeout(
        Duration::from_secs(60),
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port)),
    )
    .await
    .expect("a browser session within 60 s")
    .expect("chromedriver session");

    let result = tokio::time::timeout(Duration::from_secs(120), async {
        let base = format!("http://127.0.0.1:{}", server.addr.port());
        client.goto(&format!("{base}/")).await.unwrap();
        assert_eq!(text(&client, "#user").await, "anonymous");
        assert!(
            client.get_all_cookies().await.unwrap().is_empty(),
            "looking creates no session"
        );

        // Add to cart: a form post, a redirect, a flash message shown once.
        type_into(&client, "#product", "green tea").await;
        click(&client, "#add").await;
        wait_for(&client, ".item").await;
        assert_eq!(text(&client, ".item").await, "green tea × 1");
        assert_eq!(text(&client, ".notice").await, "added green tea");
        let cookies = client.get_all_cookies().await.unwrap();
        assert_eq!(cookies.len(), 1);
        let anonymous = cookies[0].value().to_owned();
        assert_eq!(cookies[0].name(), "session");
        assert_eq!(
            cookies[0].http_only(),
            Some(true),
            "scripts cannot read the session cookie"
        );
        client.refresh().await.unwrap();
        assert!(
            client
                .find_all(Locator::Css(".notice"))
                .await
                .unwrap()
                .is_empty(),
            "flash shown once"
        );

        // Log in: a new id, the cart kept.
        click(&client, "#login").await;
        wait_for(&client, "#logout").await;
        assert_eq!(text(&client, "#user").await, "signed in as user 1001");
        assert_eq!(text(&client, ".notice").await, "welcome back");
        assert_eq!(text(&client, ".item").await, "green tea × 1");
        let after_login = client.get_named_cookie("session").await.unwrap();
        assert_ne!(after_login.value(), anonymous, "login regenerates the id");

        // Scripts see no session cookie.
        let visible = client
            .execute("return document.cookie", vec![])
            .await
            .unwrap();
        assert_eq!(visible, serde_json::json!(""));

        // Two-step registration kept in the typed session.
        type_into(&client, "#email", "ada@example.test").await;
        click(&client, "#register-email").await;
        wait_for(&client, "#name").await;
        type_into(&client, "#name", "Ada").await;
        click(&client, "#register-name").await;
        wait_for(&client, "#registered").await;
        assert_eq!(
            text(&client, "#registered").await,
            "registered Ada <ada@example.test>"
        );

        // Log out: everything gone, a goodbye flash in a fresh session.
        click(&client, "#logout").await;
        wait_for(&client, "#login").await;
        assert_eq!(text(&client, "#user").await, "anonymous");
        assert_eq!(text(&client, ".notice").await, "logged out");
        assert!(
            client
                .find_all(Locator::Css(".item"))
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
    let _ = client.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    result.expect("the browser flow finished within 120 s");
}
