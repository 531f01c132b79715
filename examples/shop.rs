//! The demo shop on the in-memory store: `cargo run -p typed-session-examples --example shop`,
//! then open <http://127.0.0.1:3000> (`PORT` overrides the port).

use typed_session_examples::{demo_layer, shop_app};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("typed-session shop on http://{}", listener.local_addr()?);
    axum::serve(listener, shop_app(demo_layer()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
