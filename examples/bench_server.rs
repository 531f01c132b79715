//! The load-test server of the team's HTTP load harness (routes: `/login`,
//! `/profile`, `/cart`, `/healthz`): `PORT=3101 bench_server --store memory|file|redis|cookie` (`REDIS_URL` for redis,
//! `SESSION_SECRET` for cookie, else a fixed load-test-only secret).

use std::process::ExitCode;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use typed_session::store::{FileStore, MemoryStore, RedisStore};
use typed_session::{SessionLayer, SessionSchema, SessionView, SigningKey, TypedSession};

#[derive(Clone, Serialize, Deserialize)]
struct Item {
    sku: u32,
    qty: u32,
}

const CART_CAP: usize = 10;

fn cart_within_cap(cart: &[Item]) -> Result<(), String> {
    if cart.len() <= CART_CAP {
        Ok(())
    } else {
        Err(format!("at most {CART_CAP} items"))
    }
}

#[derive(SessionSchema)]
struct Bench {
    #[session(readonly)]
    user_id: Option<u64>,
    #[session(validate = cart_within_cap)]
    cart: Vec<Item>,
}

async fn login(session: TypedSession<Bench>) -> &'static str {
    let _ = session.regenerate_with(|s| {
        s.user_id = Some(42);
        s.cart.clear();
    });
    "ok"
}

async fn profile(session: Option<SessionView<Bench>>) -> Result<String, StatusCode> {
    let session = session.ok_or(StatusCode::UNAUTHORIZED)?;
    session.read(|s| match s.user_id {
        Some(id) => Ok(format!("user_id={id} cart_len={}", s.cart.len())),
        None => Err(StatusCode::UNAUTHORIZED),
    })
}

async fn cart(session: Option<TypedSession<Bench>>) -> Result<String, StatusCode> {
    let session = session.ok_or(StatusCode::UNAUTHORIZED)?;
    if session.user_id().is_none() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let len = session
        .update_cart(|cart| {
            let sku = cart.last().map_or(1000, |i| i.sku + 1);
            cart.push(Item { sku, qty: 1 });
            if cart.len() > CART_CAP {
                cart.remove(0);
            }
            cart.len()
        })
        .map_err(|_| StatusCode::UNPROCESSABLE_ENTITY)?;
    Ok(format!("cart_len={len}"))
}

fn store_flag() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let mut store = "memory".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--store" => store = args.next().ok_or("--store needs a value")?,
            other => {
                if let Some(v) = other.strip_prefix("--store=") {
                    store = v.to_owned();
                } else {
                    return Err(format!(
                        "unknown argument {other:?}; usage: bench_server [--store memory|file|redis|cookie]"
                    ));
                }
            }
        }
    }
    Ok(store)
}

#[tokio::main]
async fn main() -> ExitCode {
    let store = match store_flag() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench_server: {e}");
            return ExitCode::from(2);
        }
    };
    let layer = match store.as_str() {
        "memory" => SessionLayer::new(MemoryStore::new()),
        "file" => {
            let dir =
                std::env::temp_dir().join(format!("typed-session-bench-{}", std::process::id()));
            // SESSION_FILE_DURABILITY=os measures the unsynced setting.
            let durability = match std::env::var("SESSION_FILE_DURABILITY").as_deref() {
                Ok("os") => typed_session::store::Durability::Os,
                _ => typed_session::store::Durability::Full,
            };
            match FileStore::open(&dir) {
                Ok(store) => SessionLayer::new(store.with_durability(durability)),
                Err(e) => {
                    eprintln!("bench_server: file store in {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        "redis" => {
            let url =
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
            // SESSION_REDIS_LOCAL_CACHE=10000 measures the store with its local copy.
            let cache = std::env::var("SESSION_REDIS_LOCAL_CACHE")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            match RedisStore::new(&url) {
                Ok(store) => SessionLayer::new(store.with_local_cache(cache)),
                Err(e) => {
                    eprintln!("bench_server: redis store at {url}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        "cookie" => {
            let secret = std::env::var("SESSION_SECRET")
                .unwrap_or_else(|_| "bench_server's load-test-only sealing secret".to_owned());
            match SigningKey::new(secret.into_bytes()) {
                Ok(key) => SessionLayer::encrypted_cookie(key),
                Err(e) => {
                    eprintln!("bench_server: SESSION_SECRET: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        other => {
            eprintln!("bench_server: unknown store {other:?} (memory, file, redis, cookie)");
            return ExitCode::from(2);
        }
    }
    // The harness speaks plain HTTP.
    .with_secure(false);

    let app = Router::new()
        .route("/login", post(login))
        .route("/profile", get(profile))
        .route("/cart", post(cart))
        .layer(layer)
        .route("/healthz", get(|| async { "ok" }));

    typed_session_examples::serve_load_test(app, "3101", "bench_server").await
}
