//! The demo shop on its embedded default store, files under
//! `storage/sessions` (`SESSION_FILE_PATH` overrides):
//! `cargo run -p typed-session-examples --example shop`, then open
//! <http://127.0.0.1:3000> (`PORT` overrides the port).

use std::process::ExitCode;

use typed_session::store::FileStore;
use typed_session_examples::{demo_layer, shop_app};

#[tokio::main]
async fn main() -> ExitCode {
    let dir = std::env::var("SESSION_FILE_PATH").unwrap_or_else(|_| "storage/sessions".to_owned());
    let store = match FileStore::open(&dir) {
        Ok(store) => store,
        Err(e) => {
            let cause = std::error::Error::source(&e)
                .map(|c| c.to_string())
                .unwrap_or_default();
            eprintln!("shop: cannot use {dir:?} for sessions: {cause}");
            return ExitCode::FAILURE;
        }
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = match tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shop: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("typed-session shop on http://127.0.0.1:{port} (sessions in {dir})");
    let served = axum::serve(listener, shop_app(demo_layer(store)))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop: {e}");
            ExitCode::FAILURE
        }
    }
}
