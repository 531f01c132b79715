//! The baseline of `bench/run.sh`: bench_server's routes with no sessions at
//! all (a static `sid=bare` cookie and static answers), so that ratios to it
//! show what sessions cost. `PORT=3100 bare_server`.

use std::process::ExitCode;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};

async fn login() -> ([(header::HeaderName, &'static str); 1], &'static str) {
    ([(header::SET_COOKIE, "sid=bare; Path=/; HttpOnly")], "ok")
}

fn has_cookie(headers: &HeaderMap) -> Result<(), StatusCode> {
    headers
        .contains_key(header::COOKIE)
        .then_some(())
        .ok_or(StatusCode::UNAUTHORIZED)
}

async fn profile(headers: HeaderMap) -> Result<&'static str, StatusCode> {
    has_cookie(&headers).map(|()| "user_id=42 cart_len=0")
}

async fn cart(headers: HeaderMap) -> Result<&'static str, StatusCode> {
    has_cookie(&headers).map(|()| "cart_len=1")
}

#[tokio::main]
async fn main() -> ExitCode {
    let app = Router::new()
        .route("/login", post(login))
        .route("/profile", get(profile))
        .route("/cart", post(cart))
        .route("/healthz", get(|| async { "ok" }));
    typed_session_examples::serve_load_test(app, "3100", "bare_server").await
}
