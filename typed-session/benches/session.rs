//! In-process benchmarks: this crate and tower-sessions 0.15 on the same
//! work (the routes of `examples/bench_server.rs`), the derive's accessor
//! overhead against a plain struct, and the memory store at 1k, 100k and 1M
//! live sessions. `cargo bench -p typed-session --bench session`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use typed_session::store::MemoryStore;
use typed_session::{SessionLayer, SessionSchema, SessionView, TypedSession};

#[derive(Clone, Serialize, Deserialize)]
struct Item {
    sku: u32,
    qty: u32,
}

fn cart_within_cap(cart: &[Item]) -> Result<(), String> {
    if cart.len() <= 10 {
        Ok(())
    } else {
        Err("at most 10".into())
    }
}

#[derive(SessionSchema)]
struct Bench {
    #[session(readonly)]
    user_id: Option<u64>,
    #[session(validate = cart_within_cap)]
    cart: Vec<Item>,
}

fn push(cart: &mut Vec<Item>) -> usize {
    let sku = cart.last().map_or(1000, |i| i.sku + 1);
    cart.push(Item { sku, qty: 1 });
    if cart.len() > 10 {
        cart.remove(0);
    }
    cart.len()
}

mod ours {
    use super::*;

    async fn login(s: TypedSession<Bench>) -> &'static str {
        let _ = s.regenerate_with(|b| {
            b.user_id = Some(42);
            b.cart.clear();
        });
        "ok"
    }

    async fn profile(s: Option<SessionView<Bench>>) -> Result<String, StatusCode> {
        let s = s.ok_or(StatusCode::UNAUTHORIZED)?;
        Ok(s.read(|b| {
            format!(
                "user_id={} cart_len={}",
                b.user_id.unwrap_or(0),
                b.cart.len()
            )
        }))
    }

    async fn cart(s: Option<TypedSession<Bench>>) -> Result<String, StatusCode> {
        let s = s.ok_or(StatusCode::UNAUTHORIZED)?;
        let n = s
            .update_cart(push)
            .map_err(|_| StatusCode::UNPROCESSABLE_ENTITY)?;
        Ok(format!("cart_len={n}"))
    }

    pub(crate) fn app(store: MemoryStore) -> Router {
        Router::new()
            .route("/login", post(login))
            .route("/profile", get(profile))
            .route("/cart", post(cart))
            .layer(SessionLayer::new(store).with_secure(false))
    }
}

mod ts {
    use super::*;
    use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

    #[derive(Clone, Serialize, Deserialize)]
    pub(crate) struct App {
        user_id: u64,
        pub(crate) cart: Vec<Item>,
    }

    async fn login(s: Session) -> Result<&'static str, StatusCode> {
        s.insert(
            "app",
            App {
                user_id: 42,
                cart: vec![],
            },
        )
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok("ok")
    }

    async fn profile(s: Session) -> Result<String, StatusCode> {
        match s
            .get::<App>("app")
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        {
            Some(a) => Ok(format!("user_id={} cart_len={}", a.user_id, a.cart.len())),
            None => Err(StatusCode::UNAUTHORIZED),
        }
    }

    async fn cart(s: Session) -> Result<String, StatusCode> {
        let mut a = s
            .get::<App>("app")
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let n = push(&mut a.cart);
        s.insert("app", a)
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok(format!("cart_len={n}"))
    }

    pub(crate) fn app() -> Router {
        app_with(MemoryStore::default())
    }

    pub(crate) fn app_with(store: MemoryStore) -> Router {
        Router::new()
            .route("/login", post(login))
            .route("/profile", get(profile))
            .route("/cart", post(cart))
            .layer(SessionManagerLayer::new(store).with_secure(false))
    }
}

fn req(method: &str, path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

async fn call(app: &Router, r: Request<Body>) -> axum::response::Response {
    let res = app.clone().oneshot(r).await.unwrap();
    debug_assert!(res.status().is_success());
    res
}

/// Logs in and fills the cart with 10 items; returns the cookie pair.
async fn session(app: &Router) -> String {
    let res = call(app, req("POST", "/login", None)).await;
    let set = res.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    for _ in 0..10 {
        call(app, req("POST", "/cart", Some(&cookie))).await;
    }
    cookie
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn side_by_side(c: &mut Criterion) {
    let rt = runtime();
    let frameworks: [(&str, Router); 2] = [
        ("typed-session", ours::app(MemoryStore::new())),
        ("tower-sessions", ts::app()),
    ];
    let mut group = c.benchmark_group("request");
    for (name, app) in &frameworks {
        let cookie = rt.block_on(session(app));
        group.bench_function(BenchmarkId::new("extract+read", name), |b| {
            b.to_async(&rt)
                .iter(|| call(app, req("GET", "/profile", Some(&cookie))))
        });
        group.bench_function(BenchmarkId::new("extract+write+save", name), |b| {
            b.to_async(&rt)
                .iter(|| call(app, req("POST", "/cart", Some(&cookie))))
        });
        group.bench_function(BenchmarkId::new("new session", name), |b| {
            b.to_async(&rt)
                .iter(|| call(app, req("POST", "/login", None)))
        });
    }
    group.finish();
}

/// The session layer alone: its service around a handler that only extracts
/// the session and reads it, no router, no response formatting.
fn layer_only(c: &mut Criterion) {
    use axum::extract::FromRequestParts;
    use tower::{Layer, Service, service_fn};

    let rt = runtime();
    let mut group = c.benchmark_group("layer only");

    let store = MemoryStore::new();
    let full = ours::app(store.clone());
    let cookie = rt.block_on(session(&full));
    let mut ours_svc = SessionLayer::new(store)
        .with_secure(false)
        .layer(service_fn(|req: Request<Body>| async move {
            let (mut parts, _) = req.into_parts();
            let s = SessionView::<Bench>::from_request_parts(&mut parts, &())
                .await
                .unwrap();
            let n = s.with_cart(|c| c.len());
            Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::from(
                n.to_string(),
            )))
        }));
    group.bench_function("extract+read/typed-session", |b| {
        b.to_async(&rt)
            .iter(|| ours_svc.call(req("GET", "/", Some(&cookie))))
    });

    let ts_store = tower_sessions::MemoryStore::default();
    let ts_full = ts::app_with(ts_store.clone());
    let ts_cookie = rt.block_on(session(&ts_full));
    let mut ts_svc = tower_sessions::SessionManagerLayer::new(ts_store)
        .with_secure(false)
        .layer(service_fn(|req: Request<Body>| async move {
            let (mut parts, _) = req.into_parts();
            let s = tower_sessions::Session::from_request_parts(&mut parts, &())
                .await
                .unwrap();
            let n = s
                .get::<ts::App>("app")
                .await
                .unwrap()
                .map_or(0, |a| a.cart.len());
            Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::from(
                n.to_string(),
            )))
        }));
    group.bench_function("extract+read/tower-sessions", |b| {
        b.to_async(&rt)
            .iter(|| ts_svc.call(req("GET", "/", Some(&ts_cookie))))
    });

    let mut bare = service_fn(|_req: Request<Body>| async move {
        Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::from("10")))
    });
    group.bench_function("no session (baseline)", |b| {
        b.to_async(&rt).iter(|| bare.call(req("GET", "/", None)))
    });
    group.finish();
}

struct Plain {
    user_id: Option<u64>,
    cart: Vec<Item>,
}

fn accessors(c: &mut Criterion) {
    let mut group = c.benchmark_group("accessor");
    let cart: Vec<Item> = (0..10).map(|i| Item { sku: i, qty: 1 }).collect();
    let session = TypedSession::detached(Bench {
        user_id: Some(42),
        cart: cart.clone(),
    });
    let mut plain = Plain {
        user_id: Some(42),
        cart,
    };
    group.bench_function("read field/typed-session", |b| {
        b.iter(|| black_box(session.with_cart(|c| c.len())))
    });
    group.bench_function("read field/plain struct", |b| {
        b.iter(|| black_box(black_box(&plain).cart.len()))
    });
    group.bench_function("copy field/typed-session", |b| {
        b.iter(|| black_box(session.user_id()))
    });
    group.bench_function("copy field/plain struct", |b| {
        b.iter(|| black_box(black_box(&plain).user_id))
    });
    group.bench_function("validated update/typed-session", |b| {
        b.iter(|| black_box(session.update_cart(push).unwrap()))
    });
    group.bench_function("update (no validation)/plain struct", |b| {
        b.iter(|| black_box(push(&mut black_box(&mut plain).cart)))
    });
    group.finish();
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn scaling(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("memory store scaling");
    // Runs first and keeps every store alive, so that resident memory grows
    // by what the sessions take (freed memory would otherwise be reused).
    let mut keep = Vec::new();
    for n in [1_000usize, 100_000, 1_000_000] {
        let store = MemoryStore::with_capacity(n + 1000);
        let app = ours::app(store.clone());
        let before = rss_bytes();
        // Live sessions of the benchmark's shape (user id and a 10-item cart).
        let cookies: Vec<String> = rt.block_on(async {
            let mut sample = Vec::new();
            let probe = session(&app).await;
            for i in 1..n {
                let res = call(&app, req("POST", "/login", None)).await;
                if i % (n / 100).max(1) == 0 {
                    let set = res.headers()[header::SET_COOKIE].to_str().unwrap();
                    sample.push(set.split(';').next().unwrap().to_owned());
                }
            }
            sample.push(probe);
            sample
        });
        if let (Some(b), Some(a)) = (before, rss_bytes()) {
            println!(
                "memory store: {} sessions, resident memory grew {} bytes = {} bytes per session (login record: user id, empty cart)",
                store.len(),
                a.saturating_sub(b),
                a.saturating_sub(b) / n as u64
            );
        }
        keep.push(store);
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("read", n), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % cookies.len();
                call(&app, req("GET", "/profile", Some(&cookies[i])))
            })
        });
        group.bench_function(BenchmarkId::new("write", n), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % cookies.len();
                call(&app, req("POST", "/cart", Some(&cookies[i])))
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = scaling, side_by_side, layer_only, accessors
}
criterion_main!(benches);
