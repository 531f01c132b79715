//! The demo shop in a real headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini): cookies, redirects and forms as a browser
//! does them: log in, add to cart (a screenshot of the cart page is saved as
//! `target/screenshots/cart.png`), flash shown once, the registration steps,
//! log out. Needs Debian's `chromium` and `chromium-driver` (.ci/run
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
use typed_session_examples::{App, demo_layer, shop_app};

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

/// The element, once the page shows it (a navigation may still be under
/// way when the previous step returns): up to 10 s.
async fn element(client: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

async fn click(client: &fantoccini::Client, css: &str) {
    element(client, css).await.click().await.unwrap();
}

async fn type_into(client: &fantoccini::Client, css: &str, keys: &str) {
    element(client, css).await.send_keys(keys).await.unwrap();
}

async fn wait_for(client: &fantoccini::Client, css: &str) {
    client.wait().for_element(Locator::Css(css)).await.unwrap();
}

/// Waits (up to 10 s) until the element's text is `expected`. A click that
/// navigates returns before the next page is there, and the page it leaves
/// may match the same selector: reading at once would see the old page (or
/// an element it just dropped).
async fn expect_text(client: &fantoccini::Client, css: &str, expected: &str) {
    let start = std::time::Instant::now();
    let mut seen = String::from("(no element)");
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(el) = client.find(Locator::Css(css)).await
            && let Ok(text) = el.text().await
        {
            if text == expected {
                return;
            }
            seen = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css}: expected {expected:?}, the page shows {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_in_headless_chromium() {
    let server = common::serve(shop_app(demo_layer(MemoryStore::new()), App::default())).await;
    let driver = start_driver().await;
    let profile_dir = tempfile::tempdir().unwrap();
    let profile = profile_dir.path().to_owned();

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
        let no_flash = |client: &fantoccini::Client| {
            let client = client.clone();
            async move {
                client
                    .find_all(Locator::Css("#flash-success li"))
                    .await
                    .unwrap()
                    .is_empty()
            }
        };

        // Log in through the form: a new session id, a welcome flash.
        client.goto(&format!("{base}/login")).await.unwrap();
        expect_text(&client, "#user", "anonymous").await;
        let cookies = client.get_all_cookies().await.unwrap();
        assert_eq!(cookies.len(), 1, "the page view is counted in a session");
        assert_eq!(cookies[0].name(), "session");
        assert_eq!(cookies[0].http_only(), Some(true), "scripts cannot read it");
        let anonymous = cookies[0].value().to_owned();
        type_into(&client, "#login-email", "alice@example.com").await;
        type_into(&client, "#login-password", "alice-password").await;
        click(&client, "#login-submit").await;
        wait_for(&client, "#logout").await;
        expect_text(&client, "#user", "signed in as alice@example.com").await;
        expect_text(&client, "#flash-success li", "welcome, Alice").await;
        let after_login = client.get_named_cookie("session").await.unwrap();
        assert_ne!(after_login.value(), anonymous, "login regenerates the id");
        let visible = client
            .execute("return document.cookie", vec![])
            .await
            .unwrap();
        assert_eq!(visible, serde_json::json!(""), "HttpOnly");

        // Add to cart: post, redirect, a flash message exactly once.
        client.goto(&format!("{base}/cart")).await.unwrap();
        client
            .find(Locator::Css("#add-product"))
            .await
            .unwrap()
            .select_by_value("2")
            .await
            .unwrap();
        let quantity = client.find(Locator::Css("#add-quantity")).await.unwrap();
        quantity.clear().await.unwrap();
        quantity.send_keys("2").await.unwrap();
        click(&client, "#add-submit").await;
        wait_for(&client, ".item").await;
        expect_text(&client, ".item", "Kettle × 2").await;
        expect_text(&client, "#total", "59.98").await;
        expect_text(&client, "#flash-success li", "added 2 × Kettle").await;
        let shot = client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cart.png"), &shot).unwrap();
        client.refresh().await.unwrap();
        wait_for(&client, ".item").await;
        assert!(no_flash(&client).await, "the flash is shown once");

        // The three registration steps, then the new account is signed in.
        client.goto(&format!("{base}/register")).await.unwrap();
        type_into(&client, "#reg-name", "Dora").await;
        type_into(&client, "#reg-email", "dora@example.com").await;
        click(&client, "#reg-step1").await;
        wait_for(&client, "#reg-street").await;
        expect_text(&client, "#step", "step 2 of 3, Dora").await;
        type_into(&client, "#reg-street", "1 Tea Street").await;
        type_into(&client, "#reg-city", "Leeds").await;
        type_into(&client, "#reg-zip", "LS1 1AA").await;
        click(&client, "#reg-step2").await;
        wait_for(&client, "#reg-complete").await;
        expect_text(
            &client,
            "#summary",
            "Dora <dora@example.com>, 1 Tea Street, LS1 1AA Leeds",
        )
        .await;
        click(&client, "#reg-complete").await;
        wait_for(&client, "#logout").await;
        expect_text(&client, "#user", "signed in as dora@example.com").await;
        expect_text(&client, "#flash-success li", "welcome, Dora").await;

        // Log out: a goodbye flash in a fresh session, the cart gone.
        click(&client, "#logout").await;
        wait_for(&client, "#login-link").await;
        expect_text(&client, "#user", "anonymous").await;
        expect_text(&client, "#flash-success li", "logged out").await;
        client.goto(&format!("{base}/cart")).await.unwrap();
        assert!(
            client
                .find_all(Locator::Css(".item"))
                .await
                .unwrap()
                .is_empty(),
            "the cart ended with the session"
        );
    })
    .await;
    let _ = client.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    result.expect("the browser flow finished within 120 s");
}
