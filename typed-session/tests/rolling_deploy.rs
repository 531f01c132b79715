//! Rolling deploys: two versions of an app serve the same sessions from one
//! backend, on every backend. Two schema types stand for the two builds
//! (version 2 and version 3 of one session struct), each behind its own
//! layer on one server (`/v2/...`, `/v3/...`), sharing the cookie and the
//! store as two instances behind a load balancer would.
//!
//! Version 3 adds a field (`theme`), removes one (`legacy`) and renames a
//! nested one (`cart[].qty` → `cart[].quantity`, with a migration). The
//! rollout simulation uses a version 3 that renames the way the README's
//! expand/contract section says (reader first), and must see no failed
//! request and no field reset across a rollout and a rollback.

#![allow(clippy::unwrap_used, unreachable_pub, dead_code)]

mod common;

use std::collections::VecDeque;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use common::harness::{Harness, Stored};
use common::{Response, http_get, http_post, serve};
use serde::{Deserialize, Serialize};
use typed_session::serde_json::Value;
use typed_session::store::MemoryStore;
use typed_session::{Flash, MigrationError, NewerSchema, SessionSchema, TypedSession};

fn same(v: Value) -> Result<Value, MigrationError> {
    Ok(v)
}

/// Version 3's step: the cart's `qty` is renamed `quantity`, `legacy` goes.
fn rename_qty_drop_legacy(mut v: Value) -> Result<Value, MigrationError> {
    if let Some(Value::Array(lines)) = v.get_mut("cart") {
        for line in lines.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(q) = line.remove("qty") {
                line.insert("quantity".into(), q);
            }
        }
    }
    drop_legacy(v)
}

/// The expand/contract version 3's step: only `legacy` goes.
fn drop_legacy(mut v: Value) -> Result<Value, MigrationError> {
    if let Some(map) = v.as_object_mut() {
        map.remove("legacy");
    }
    Ok(v)
}

/// The routes of one build, over its session struct (`$s`), with `$line`
/// building a cart line and `$qty` naming its quantity field.
macro_rules! build {
    ($name:ident, $s:ty, $line:expr, $qty:ident, theme: $theme:expr) => {
        pub fn $name() -> Router {
            fn state(s: &TypedSession<$s>) -> String {
                let mut out = format!("visits={};cart=", s.visits());
                let cart = s.cart();
                for (i, line) in cart.iter().enumerate() {
                    let _ = write!(
                        out,
                        "{}{}x{}",
                        if i > 0 { "," } else { "" },
                        line.sku,
                        line.$qty
                    );
                }
                let _ = write!(out, ";user={:?}", s.user_id());
                let theme: fn(&TypedSession<$s>) -> Option<String> = $theme;
                if let Some(t) = theme(s) {
                    let _ = write!(out, ";theme={t}");
                }
                out
            }
            Router::new()
                .route("/read", get(|s: TypedSession<$s>| async move { state(&s) }))
                .route(
                    "/view",
                    post(|s: TypedSession<$s>| async move {
                        s.update_visits(|v| *v += 1).unwrap();
                        let flash = s.notices().drain().join(",");
                        format!("{};flash={flash}", state(&s))
                    }),
                )
                .route(
                    "/add/{sku}",
                    post(|s: TypedSession<$s>, Path(sku): Path<u32>| async move {
                        s.update_cart(|cart| match cart.iter_mut().find(|l| l.sku == sku) {
                            Some(line) => line.$qty += 1,
                            None => cart.push($line(sku)),
                        })
                        .unwrap();
                        s.save().await?;
                        Ok::<_, typed_session::Error>(state(&s))
                    }),
                )
                .route(
                    "/bump",
                    post(|s: TypedSession<$s>| async move {
                        s.update_visits(|v| *v += 1).unwrap();
                        "bumped"
                    }),
                )
                .route(
                    "/note/{text}",
                    post(|s: TypedSession<$s>, Path(text): Path<String>| async move {
                        s.notices().push(text);
                        "noted"
                    }),
                )
                .route(
                    "/login/{user}",
                    post(|s: TypedSession<$s>, Path(user): Path<u64>| async move {
                        s.regenerate_with(|v| v.user_id = Some(user)).unwrap();
                        state(&s)
                    }),
                )
        }
    };
}

/// `$name()`: the routes of `$routes()` and, for a build that has the
/// theme field, `POST /theme/{theme}`.
macro_rules! themed {
    ($name:ident, $routes:ident, $s:ty) => {
        pub fn $name() -> Router {
            $routes().route(
                "/theme/{theme}",
                post(
                    |s: TypedSession<$s>, Path(theme): Path<String>| async move {
                        s.set_theme(theme).unwrap();
                        "themed"
                    },
                ),
            )
        }
    };
}

mod v2 {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Line {
        pub sku: u32,
        pub qty: u32,
    }

    #[derive(SessionSchema)]
    #[session(version = 2, migrate(from = 1, with = super::same))]
    pub struct Shop {
        #[session(readonly)]
        pub user_id: Option<u64>,
        pub visits: u64,
        pub cart: Vec<Line>,
        /// Removed in version 3; version 2 no longer uses it.
        pub legacy: String,
        #[session(flash)]
        pub notices: Flash<String>,
    }

    build!(routes, Shop, |sku| Line { sku, qty: 1 }, qty, theme: |_| None);
}

/// Version 3, renaming the cart's `qty` in one step (with a migration).
mod v3 {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Line {
        pub sku: u32,
        pub quantity: u32,
    }

    #[derive(SessionSchema)]
    #[session(
        version = 3,
        migrate(from = 1, with = super::same),
        migrate(from = 2, with = super::rename_qty_drop_legacy)
    )]
    pub struct Shop {
        #[session(readonly)]
        pub user_id: Option<u64>,
        pub visits: u64,
        pub cart: Vec<Line>,
        pub theme: String,
        #[session(flash)]
        pub notices: Flash<String>,
    }

    build!(routes, Shop, |sku| Line { sku, quantity: 1 }, quantity,
        theme: |s| Some(s.theme()));
    themed!(with_theme, routes, Shop);
}

/// Version 3 as the README's expand/contract section says to ship a
/// rename: it reads `quantity` and `qty`, and still writes `qty` (the
/// contract step, writing `quantity`, comes once no version 2 is left).
mod v3_expand {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Line {
        pub sku: u32,
        #[serde(rename = "qty", alias = "quantity")]
        pub quantity: u32,
    }

    #[derive(SessionSchema)]
    #[session(
        version = 3,
        migrate(from = 1, with = super::same),
        migrate(from = 2, with = super::drop_legacy)
    )]
    pub struct Shop {
        #[session(readonly)]
        pub user_id: Option<u64>,
        pub visits: u64,
        pub cart: Vec<Line>,
        pub theme: String,
        #[session(flash)]
        pub notices: Flash<String>,
    }

    build!(routes, Shop, |sku| Line { sku, quantity: 1 }, quantity,
        theme: |s| Some(s.theme()));
    themed!(with_theme, routes, Shop);
}

/// Both builds on one server, each with its own layer over the backend.
fn both<H: Harness>(h: &H, old: Router, new: Router) -> Router {
    Router::new()
        .nest("/v2", old.layer(h.layer().with_secure(false)))
        .nest("/v3", new.layer(h.layer().with_secure(false)))
}

/// A browser: keeps the cookie each response sets.
struct Browser {
    addr: std::net::SocketAddr,
    cookie: Option<String>,
}

impl Browser {
    async fn post(&mut self, path: &str) -> Response {
        let res = http_post(self.addr, path, self.cookie.as_deref()).await;
        self.follow(&res);
        res
    }

    async fn get(&mut self, path: &str) -> Response {
        let res = http_get(self.addr, path, self.cookie.as_deref()).await;
        self.follow(&res);
        res
    }

    fn follow(&mut self, res: &Response) {
        if let Some(c) = res.cookie()
            && !res.removes_cookie()
        {
            self.cookie = Some(c);
        }
    }

    fn cookie(&self) -> &str {
        self.cookie.as_deref().unwrap_or_default()
    }
}

fn ok(res: &Response) -> &str {
    assert_eq!(res.status, 200, "{}", res.body);
    &res.body
}

/// What the simulation expects one user's session to hold.
#[derive(Default, Clone)]
struct Model {
    visits: u64,
    cart: Vec<(u32, u32)>,
    user: Option<u64>,
    theme: String,
    flash: VecDeque<String>,
}

impl Model {
    fn state(&self, v3: bool) -> String {
        let cart: Vec<String> = self.cart.iter().map(|(s, q)| format!("{s}x{q}")).collect();
        let mut out = format!(
            "visits={};cart={};user={:?}",
            self.visits,
            cart.join(","),
            self.user
        );
        if v3 {
            let _ = write!(out, ";theme={}", self.theme);
        }
        out
    }
}

/// The figures of one simulated rollout.
#[derive(Debug, Default)]
struct Rollout {
    /// Requests sent.
    requests: usize,
    /// Answered other than 200.
    failed: usize,
    /// Answered 200 with a field other than the user last wrote.
    mismatched: usize,
    /// Served by each version.
    by_v2: usize,
    by_v3: usize,
}

/// Instantiates the suite for one backend, every test of it. The tests
/// are written here, inside the macro, so a new test runs on every backend.
macro_rules! rolling_suite {
    ($backend:ident, $harness:expr) => {
        /// The backend's harness, built where the suite is instantiated.
        fn $backend() -> impl Harness {
            $harness
        }

        mod $backend {
            use super::*;

            /// Old code reads a newer record's fields, writes its own without harming
            /// the newer ones, refuses to write the field whose shape changed, and
            /// never brings back the removed field; a login on old code keeps it all.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn old_code_works_around_newer_fields() {
                let h = super::$backend();
                let server = serve(both(&h, v2::routes(), v3::with_theme())).await;
                let mut b = Browser {
                    addr: server.addr,
                    cookie: None,
                };
                ok(&b.post("/v3/add/1").await);
                ok(&b.post("/v3/add/1").await);
                assert_eq!(ok(&b.post("/v3/theme/dark").await), "themed");

                // v2 reads what it can; the renamed cart reads as empty for it.
                assert_eq!(ok(&b.get("/v2/read").await), "visits=0;cart=;user=None");
                // A v2 write of a shared field keeps the v3 data and version.
                assert_eq!(
                    ok(&b.post("/v2/view").await),
                    "visits=1;cart=;user=None;flash="
                );
                assert_eq!(
                    ok(&b.get("/v3/read").await),
                    "visits=1;cart=1x2;user=None;theme=dark"
                );
                if let Some(stored) = h.stored(b.cookie()).await {
                    assert!(stored.starts_with(r#"{"v":3,"#), "{stored}");
                    assert!(stored.contains(r#""quantity":2"#), "{stored}");
                    assert!(!stored.contains("legacy"), "resurrected: {stored}");
                }
                // A v2 write of the field whose shape changed is refused, and changes nothing.
                let refused = b.post("/v2/add/5").await;
                assert_eq!(refused.status, 409, "{}", refused.body);
                assert_eq!(refused.body, "session field belongs to a newer version");
                assert_eq!(
                    ok(&b.get("/v3/read").await),
                    "visits=1;cart=1x2;user=None;theme=dark"
                );
                // Flash messages cross versions both ways.
                assert_eq!(ok(&b.post("/v2/note/from-v2").await), "noted");
                assert!(ok(&b.post("/v3/view").await).ends_with(";flash=from-v2"));
                assert_eq!(ok(&b.post("/v3/note/from-v3").await), "noted");
                assert!(ok(&b.post("/v2/view").await).ends_with(";flash=from-v3"));
                // A login on v2 (a new id) keeps the v3 data.
                let before = b.cookie().to_owned();
                assert_eq!(
                    ok(&b.post("/v2/login/7").await),
                    "visits=3;cart=;user=Some(7)"
                );
                assert_ne!(b.cookie(), before);
                assert_eq!(
                    ok(&b.get("/v3/read").await),
                    "visits=3;cart=1x2;user=Some(7);theme=dark"
                );
                if let Some(stored) = h.stored(b.cookie()).await {
                    assert!(stored.starts_with(r#"{"v":3,"#), "{stored}");
                    assert!(!stored.contains("legacy"), "resurrected: {stored}");
                }
            }

            /// A v2 record read by v3 is migrated and written back at v3; v2 then
            /// reads what it can of it, as in a rollback.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn new_code_migrates_and_old_code_still_reads() {
                let h = super::$backend();
                let server = serve(both(&h, v2::routes(), v3::with_theme())).await;
                let mut b = Browser {
                    addr: server.addr,
                    cookie: None,
                };
                ok(&b.post("/v2/add/4").await);
                ok(&b.post("/v2/view").await);
                assert_eq!(
                    ok(&b.post("/v3/view").await),
                    "visits=2;cart=4x1;user=None;theme=;flash="
                );
                if let Some(stored) = h.stored(b.cookie()).await {
                    assert!(stored.starts_with(r#"{"v":3,"#), "migrated: {stored}");
                }
                assert_eq!(
                    ok(&b.post("/v2/view").await),
                    "visits=3;cart=;user=None;flash="
                );
                assert_eq!(
                    ok(&b.get("/v3/read").await),
                    "visits=3;cart=4x1;user=None;theme="
                );
            }

            /// Concurrent writes of both versions to one session: compare-and-set and
            /// merges hold across versions (server-side stores; cookie mode is
            /// last-response-wins by design). Flash messages from both versions merge
            /// message by message; a v2 write and a v3 write of different fields both
            /// land (a page view would drain the messages: `/bump` only counts).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writes_of_both_versions_merge() {
                let h = super::$backend();
                if !h.keeps_records() {
                    return;
                }
                let server = serve(both(&h, v2::routes(), v3::with_theme())).await;
                let mut b = Browser {
                    addr: server.addr,
                    cookie: None,
                };
                ok(&b.post("/v3/add/9").await);
                ok(&b.post("/v3/theme/dark").await);
                let cookie = b.cookie().to_owned();
                let mut paths: Vec<String> = (0..20)
                    .map(|i| match i % 2 {
                        0 => format!("/v2/note/a{i}"),
                        _ => format!("/v3/note/b{i}"),
                    })
                    .collect();
                paths.push("/v2/bump".into());
                paths.push("/v3/theme/light".into());
                let tasks: Vec<_> = paths
                    .into_iter()
                    .map(|path| {
                        let cookie = cookie.clone();
                        let addr = server.addr;
                        tokio::spawn(async move { http_post(addr, &path, Some(&cookie)).await })
                    })
                    .collect();
                for t in tasks {
                    let res = t.await.unwrap();
                    assert_eq!(res.status, 200, "{}", res.body);
                }
                let body = ok(&b.post("/v3/view").await).to_owned();
                let (state, flash) = body.split_once(";flash=").unwrap();
                assert_eq!(state, "visits=2;cart=9x1;user=None;theme=light");
                let mut got: Vec<&str> = flash.split(',').collect();
                got.sort_unstable();
                let mut want: Vec<String> = (0..20)
                    .map(|i| format!("{}{i}", if i % 2 == 0 { "a" } else { "b" }))
                    .collect();
                want.sort_unstable();
                assert_eq!(got, want);
                let stored = h.stored(b.cookie()).await.unwrap();
                assert!(stored.starts_with(r#"{"v":3,"#), "{stored}");
            }

            /// `on_newer_schema(Reject)` keeps the old behaviour: 503 on old code.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reject_policy_answers_503() {
                let h = super::$backend();
                let app = Router::new()
                    .nest(
                        "/v2",
                        v2::routes().layer(
                            h.layer()
                                .with_secure(false)
                                .on_newer_schema(NewerSchema::Reject),
                        ),
                    )
                    .nest("/v3", v3::with_theme().layer(h.layer().with_secure(false)));
                let server = serve(app).await;
                let mut b = Browser {
                    addr: server.addr,
                    cookie: None,
                };
                ok(&b.post("/v3/theme/dark").await);
                let res = b.get("/v2/read").await;
                assert_eq!(res.status, 503, "{}", res.body);
                assert_eq!(res.body, "session unavailable");
            }

            /// 1,000 requests from 10 users through a rollout and a rollback: all on
            /// v2, alternating v2/v3, all on v3, alternating again (rolling back), all
            /// on v2. Every response is compared with what the user's session must
            /// hold: a failed request or a field that reads other than last written
            /// counts.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rollout_and_rollback_lose_nothing() {
                let h = super::$backend();
                let server = serve(both(&h, v2::routes(), v3_expand::with_theme())).await;
                let users = 10;
                let mut browsers: Vec<Browser> = (0..users)
                    .map(|_| Browser {
                        addr: server.addr,
                        cookie: None,
                    })
                    .collect();
                let mut models = vec![Model::default(); users];
                // (requests, whether request i goes to v3)
                type Phase = (usize, fn(usize) -> bool);
                let phases: [Phase; 5] = [
                    (200, |_| false),
                    (400, |i| i % 2 == 1),
                    (100, |_| true),
                    (200, |i| i % 2 == 0),
                    (100, |_| false),
                ];
                let mut r = Rollout::default();
                let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
                let mut next = |n: u64| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % n) as usize
                };
                let mut i = 0;
                for (count, on_v3) in phases {
                    for _ in 0..count {
                        let v3 = on_v3(i);
                        let prefix = if v3 { "/v3" } else { "/v2" };
                        let u = next(users as u64);
                        let action = next(6);
                        let (b, m) = (&mut browsers[u], &mut models[u]);
                        let (res, expected) = match action {
                            0 => {
                                m.visits += 1;
                                let flash: Vec<String> = m.flash.drain(..).collect();
                                let res = b.post(&format!("{prefix}/view")).await;
                                (res, format!("{};flash={}", m.state(v3), flash.join(",")))
                            }
                            1 => {
                                let sku = 1 + next(3) as u32;
                                match m.cart.iter_mut().find(|(s, _)| *s == sku) {
                                    Some(line) => line.1 += 1,
                                    None => m.cart.push((sku, 1)),
                                }
                                let res = b.post(&format!("{prefix}/add/{sku}")).await;
                                (res, m.state(v3))
                            }
                            2 => {
                                let text = format!("m{i}");
                                m.flash.push_back(text.clone());
                                let res = b.post(&format!("{prefix}/note/{text}")).await;
                                (res, "noted".to_owned())
                            }
                            3 => {
                                let user = 100 + u as u64;
                                m.user = Some(user);
                                let res = b.post(&format!("{prefix}/login/{user}")).await;
                                (res, m.state(v3))
                            }
                            4 if v3 => {
                                let theme = ["dark", "light", "blue"][next(3)].to_owned();
                                m.theme = theme.clone();
                                let res = b.post(&format!("/v3/theme/{theme}")).await;
                                (res, "themed".to_owned())
                            }
                            _ => {
                                let res = b.get(&format!("{prefix}/read")).await;
                                (res, m.state(v3))
                            }
                        };
                        r.requests += 1;
                        if v3 {
                            r.by_v3 += 1;
                        } else {
                            r.by_v2 += 1;
                        }
                        if res.status != 200 {
                            r.failed += 1;
                            eprintln!("request {i} on {prefix}: {} {}", res.status, res.body);
                        } else if res.body != expected {
                            r.mismatched += 1;
                            eprintln!(
                                "request {i} on {prefix}: got {:?}, expected {expected:?}",
                                res.body
                            );
                        }
                        i += 1;
                    }
                }
                eprintln!("rollout: {r:?}");
                assert_eq!(r.requests, 1_000);
                assert_eq!((r.failed, r.mismatched), (0, 0), "{r:?}");
            }
        }
    };
}

rolling_suite!(memory, Stored::new(MemoryStore::new(), MemoryStore::len));
#[cfg(feature = "file-store")]
rolling_suite!(file, common::file::file_harness());
#[cfg(feature = "redis-store")]
rolling_suite!(redis, common::redis::node_harness());
#[cfg(feature = "redis-store")]
rolling_suite!(redis_local_copy, common::redis::node_harness_with_copy());
#[cfg(feature = "redis-store")]
rolling_suite!(redis_cluster, common::redis::cluster_harness());
#[cfg(feature = "cookie-store")]
rolling_suite!(cookie, common::sealed::SealedCookie);
