//! The demo shop: `cargo run -p typed-session-examples --example shop`, then
//! open <http://127.0.0.1:3000>. Configured from the environment: `PORT`,
//! `SESSION_DRIVER=file|memory|redis|cookie` (default: files under
//! `storage/sessions`), `SESSION_SECRET`, `SESSION_SECURE`, `SESSION_FILE_PATH`,
//! `REDIS_URL` and the other `SESSION_*` variables of `SessionConfig::from_env`.

use std::process::ExitCode;

use typed_session_examples::{App, layer_from_env, shop_app};

#[tokio::main]
async fn main() -> ExitCode {
    // Logs to stderr: RUST_LOG (`typed_session=debug`, ...), `info` by default.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = match layer_from_env() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("shop: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let port: u16 = match std::env::var("PORT").map(|p| p.parse()) {
        Err(_) => 3000,
        Ok(Ok(port)) => port,
        Ok(Err(_)) => {
            eprintln!("shop: bad configuration: environment variable PORT is not a port number");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shop: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &config.warnings {
        eprintln!("shop: warning: {warning}");
    }
    println!(
        "typed-session shop on http://127.0.0.1:{port} ({}; {})",
        config.store, config.mode
    );
    // With connect info: the login throttle keys on the client's address.
    let app = shop_app(config.layer, App::default())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
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
