//! A yardstick for the Redis rows of the load harness, not a session
//! library: the harness's routes with the session as plain JSON in Redis,
//! one command per step and nothing else. Login is one `SET ... PX`, a read
//! one `GET`, a write one `GET` then one plain `SET` (no compare-and-set, so
//! concurrent writers lose updates; no expiry check, no validation, no
//! signed cookie, no size limit). Commands go over one redis-rs
//! `MultiplexedConnection`, as in `RedisStore`.
//!
//! What a session layer costs on top of this is its own; what this costs
//! over `bare_server` is the floor any store with one round trip per
//! operation pays on that machine. `PORT=3102 REDIS_URL=redis://127.0.0.1:6379 redis_floor`.

use std::process::ExitCode;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use rand::RngCore;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Item {
    sku: u32,
    qty: u32,
}

#[derive(Serialize, Deserialize)]
struct Session {
    user_id: u64,
    cart: Vec<Item>,
}

const TTL_MS: u64 = 24 * 3600 * 1000;

fn unavailable(e: redis::RedisError) -> StatusCode {
    eprintln!("redis_floor: {e}");
    StatusCode::SERVICE_UNAVAILABLE
}

/// The `sid` cookie's value, as the Redis key.
fn key(headers: &HeaderMap) -> Result<String, StatusCode> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("sid="))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| format!("floor:{id}"))
        .ok_or(StatusCode::UNAUTHORIZED)
}

async fn load(
    redis: &mut MultiplexedConnection,
    headers: &HeaderMap,
) -> Result<(String, Session), StatusCode> {
    let key = key(headers)?;
    let bytes: Option<Vec<u8>> = redis.get(&key).await.map_err(unavailable)?;
    let session = bytes
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(StatusCode::UNAUTHORIZED)?;
    Ok((key, session))
}

async fn store(
    redis: &mut MultiplexedConnection,
    key: &str,
    session: &Session,
) -> Result<(), StatusCode> {
    let bytes = serde_json::to_vec(session).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let options = redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(TTL_MS));
    redis
        .set_options::<_, _, ()>(key, bytes, options)
        .await
        .map_err(unavailable)
}

async fn login(
    State(mut redis): State<MultiplexedConnection>,
) -> Result<([(header::HeaderName, String); 1], &'static str), StatusCode> {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let id = hex::encode(id);
    let session = Session {
        user_id: 42,
        cart: Vec::new(),
    };
    store(&mut redis, &format!("floor:{id}"), &session).await?;
    let cookie = format!("sid={id}; Path=/; HttpOnly; SameSite=Lax");
    Ok(([(header::SET_COOKIE, cookie)], "ok"))
}

async fn profile(
    State(mut redis): State<MultiplexedConnection>,
    headers: HeaderMap,
) -> Result<String, StatusCode> {
    let (_, s) = load(&mut redis, &headers).await?;
    Ok(format!("user_id={} cart_len={}", s.user_id, s.cart.len()))
}

async fn cart(
    State(mut redis): State<MultiplexedConnection>,
    headers: HeaderMap,
) -> Result<String, StatusCode> {
    let (key, mut s) = load(&mut redis, &headers).await?;
    let sku = s.cart.last().map_or(1000, |item| item.sku + 1);
    s.cart.push(Item { sku, qty: 1 });
    if s.cart.len() > 10 {
        s.cart.remove(0);
    }
    store(&mut redis, &key, &s).await?;
    Ok(format!("cart_len={}", s.cart.len()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = match redis::Client::open(url.as_str()) {
        Ok(client) => match client.get_multiplexed_async_connection().await {
            Ok(connection) => connection,
            Err(e) => {
                eprintln!("redis_floor: cannot connect to {url}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("redis_floor: bad REDIS_URL {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new()
        .route("/login", post(login))
        .route("/profile", get(profile))
        .route("/cart", post(cart))
        .with_state(redis)
        .route("/healthz", get(|| async { "ok" }));
    typed_session_examples::serve_load_test(app, "3102", "redis_floor").await
}
