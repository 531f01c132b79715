//! The demo shop: a small axum app whose session is a typed struct, with
//! the flows session-backed web apps have: login (with a new session id),
//! a cart, preferences, a multi-step registration, flash messages, page-view
//! analytics; a JSON API under `/api` and HTML pages with CSRF-protected forms.
//!
//! `cargo run -p typed-session-examples --example shop` serves it on
//! <http://127.0.0.1:3000> with its embedded default store, files under
//! `storage/sessions`; `SESSION_DRIVER=memory|file|redis|cookie` and the other
//! `SESSION_*` variables choose another (see [`layer_from_env`]).

mod api;
pub mod auth;
mod origin;
mod pages;
pub mod session;
pub mod users;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use typed_session::store::{MemoryStore, SessionStore};
use typed_session::{
    RevocationList, SessionConfig, SessionLayer, StoreConfig, TypedSession, ValidationError,
};

pub use session::{CartLine, Preferences, Registration, ShopSession};
pub use users::{CATALOGUE, Product, Role, User, Users};

/// The largest request body the shop reads (its forms are a few fields).
pub const MAX_BODY_BYTES: usize = 4096;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct App {
    /// The accounts.
    pub users: Users,
    /// Ends every session of a user (deleting an account); `shop_app` puts
    /// it on the session layer. In memory: one process. Several instances
    /// would give it a shared store (`RevocationList::new(redis_store)`).
    pub revocations: RevocationList,
    /// Failed logins per email and client (see [`auth`]).
    pub throttle: auth::Throttle,
}

impl Default for App {
    fn default() -> Self {
        App {
            users: Users::default(),
            revocations: RevocationList::new(MemoryStore::new()),
            throttle: auth::Throttle::default(),
        }
    }
}

/// Checks the throttle, then the credentials: the account, or the
/// response to send (`429` code 2004 while throttled, `401` code 2003).
async fn log_in(
    app: &App,
    client: &auth::Client,
    email: &str,
    password: &str,
) -> Result<User, LoginRefused> {
    if let Err(wait) = app.throttle.check(email, &client.0) {
        return Err(LoginRefused::Throttled(wait));
    }
    match app.users.authenticate(email, password).await {
        Some(user) => {
            app.throttle.succeeded(email, &client.0);
            Ok(user)
        }
        None => {
            app.throttle.failed(email, &client.0);
            Err(LoginRefused::BadCredentials)
        }
    }
}

/// Why a login was refused.
enum LoginRefused {
    /// Wrong email or password (2003).
    BadCredentials,
    /// Too many failures for this email from this client (2004): wait this long.
    Throttled(std::time::Duration),
}

/// The subject a signed-in session is bound to, for revocation.
fn subject(user_id: u64) -> String {
    format!("user:{user_id}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh random token (for CSRF), 128 bits as hex.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

fn text_ok(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && t.chars().count() <= session::MAX_TEXT_CHARS
}

/// Why a request has no usable user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoUser {
    /// Nobody signed in (2001).
    Anonymous,
    /// The account was deleted; the session has been destroyed (2002).
    Gone,
}

impl NoUser {
    fn json(self) -> Response {
        match self {
            NoUser::Anonymous => api::fail(StatusCode::UNAUTHORIZED, 2001, "not logged in"),
            NoUser::Gone => api::fail(
                StatusCode::UNAUTHORIZED,
                2002,
                "your account no longer exists",
            ),
        }
    }
}

/// The signed-in user. The session holds only the id: a session whose
/// account was deleted is destroyed here, so the client learns why (2002).
fn current_user(app: &App, session: &TypedSession<ShopSession>) -> Result<User, NoUser> {
    let id = session.user_id().ok_or(NoUser::Anonymous)?;
    match app.users.get(id) {
        Some(user) => Ok(user),
        None => {
            session.destroy();
            Err(NoUser::Gone)
        }
    }
}

/// Refreshes the last-activity time, at most once a minute (so reads do
/// not all write).
fn touch_activity(session: &TypedSession<ShopSession>) {
    let now = now_secs();
    if session.last_activity().is_none_or(|t| now >= t + 60) {
        let _ = session.set_last_activity(Some(now));
    }
}

/// Signs `user` in: a new session id (against fixation), the account
/// fields (read-only: settable only here), a new CSRF token, and the
/// session bound to the user for revocation. The cart is kept; a finished
/// sign-up is cleared when `registered`.
fn sign_in(
    session: &TypedSession<ShopSession>,
    user: &User,
    registered: bool,
) -> Result<(), ValidationError> {
    let now = now_secs();
    session.regenerate_with(|s| {
        s.user_id = Some(user.id);
        s.email = Some(user.email.clone());
        s.role = Some(user.role);
        s.login_at = Some(now);
        s.last_activity = Some(now);
        s.csrf = new_token();
        if registered {
            s.registration = Registration::NotStarted;
        }
    })?;
    session.set_subject(Some(&subject(user.id)));
    session.success().push(format!("welcome, {}", user.name));
    Ok(())
}

/// Why the sign-up could not complete.
enum RegisterError {
    NoStep2,
    EmailTaken,
    Session(ValidationError),
}

/// Creates the account of a finished sign-up and signs it in.
fn complete_registration(
    app: &App,
    session: &TypedSession<ShopSession>,
) -> Result<User, RegisterError> {
    let Registration::Step2 {
        name,
        email,
        street,
        city,
        zip,
    } = session.registration()
    else {
        return Err(RegisterError::NoStep2);
    };
    let user = app
        .users
        .create(&name, &email, format!("{street}, {zip} {city}"))
        .ok_or(RegisterError::EmailTaken)?;
    sign_in(session, &user, true).map_err(RegisterError::Session)?;
    Ok(user)
}

/// The cart with names, prices and the total, as the API returns it.
pub fn cart_summary(cart: &[CartLine]) -> Value {
    let mut total = 0u64;
    let items: Vec<Value> = cart
        .iter()
        .filter_map(|line| {
            let p = users::product(line.product_id)?;
            let line_total = p.price_cents * u64::from(line.quantity);
            total += line_total;
            Some(json!({
                "productId": p.id,
                "name": p.name,
                "quantity": line.quantity,
                "unitPriceCents": p.price_cents,
                "lineTotalCents": line_total,
            }))
        })
        .collect();
    json!({ "items": items, "totalCents": total })
}

/// The shop's routes over `layer`, with `app`'s accounts; `/healthz` is
/// outside the session layer.
pub fn shop_app(layer: SessionLayer, app: App) -> Router {
    Router::new()
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/me", get(api::me).delete(api::delete_me))
        .route(
            "/api/cart",
            get(api::cart)
                .post(api::add_to_cart)
                .delete(api::clear_cart),
        )
        .route(
            "/api/preferences",
            get(api::preferences).put(api::put_preferences),
        )
        .route("/api/register/step1", post(api::register_step1))
        .route("/api/register/step2", post(api::register_step2))
        .route("/api/register/complete", post(api::register_complete))
        .route("/api/flash", get(api::flash))
        .route("/api/stats", get(api::stats))
        .merge(pages::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            layer
                .with_revocation(app.revocations.clone())
                .on_rejection(api::rejection_response),
        )
        .layer(axum::middleware::from_fn(origin::same_origin_writes))
        .with_state(app)
        .route("/healthz", get(|| async { "ok" }))
        .merge(metrics_route())
}

/// `GET /metrics`: the session metrics in Prometheus' text format (feature
/// `metrics`; the recorder is installed once per process).
#[cfg(feature = "metrics")]
fn metrics_route() -> Router {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| eprintln!("shop: no metrics recorder: {e}"))
                .ok()
        })
        .clone();
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { handle.map(|h| h.render()).unwrap_or_default() }
        }),
    )
}

/// Without the `metrics` feature: no `/metrics`.
#[cfg(not(feature = "metrics"))]
fn metrics_route() -> Router {
    Router::new()
}

/// The layer the demo's tests run over `store`; `Secure` off because the
/// demo is served over plain `http://127.0.0.1` (never do this in production).
pub fn demo_layer(store: impl SessionStore) -> SessionLayer {
    SessionLayer::new(store).with_secure(false)
}

/// The demo's session layer as read from the environment, with what to
/// tell the operator.
#[derive(Debug)]
pub struct DemoConfig {
    /// The layer to serve with.
    pub layer: SessionLayer,
    /// Which store it uses, for the start-up line (a Redis URL redacted).
    pub store: String,
    /// Which mode it runs in, for the start-up line: `development`
    /// (`Secure` off, a generated secret) or `production`.
    pub mode: String,
    /// Settings the demo chose for the operator (printed as warnings).
    pub warnings: Vec<String>,
}

/// The demo's session layer from the environment (`SessionConfig::from_env`).
/// Without `SESSION_DRIVER`, the embedded default: the file store in
/// `SESSION_FILE_PATH` or `storage/sessions`. Without `SESSION_SECRET`, a
/// random development secret (with a warning: sessions do not survive a
/// restart). Without `SESSION_SECURE`, `Secure` is off, since the demo serves
/// plain HTTP on 127.0.0.1. A bad variable is an error naming it.
pub fn layer_from_env() -> Result<DemoConfig, String> {
    let mut warnings = Vec::new();
    let mut config = SessionConfig::from_env_with_default(StoreConfig::File(
        typed_session::FileConfig::default(),
    ))
    .map_err(|e| e.to_string())?;
    let var = |name: &str| std::env::var_os(name).is_some();
    if !var("SESSION_SECURE") {
        config.secure = false;
    }
    // A generated secret is for local development only: a deployment that
    // asks for Secure cookies must bring its own.
    if config.secure && config.secrets.is_empty() {
        return Err(
            "SESSION_SECURE=true needs SESSION_SECRET (a generated secret is for local development only; generate one with `openssl rand -base64 48`)"
                .to_owned(),
        );
    }
    warnings.extend(config.warnings().iter().cloned());
    let generated = config.secrets.is_empty();
    let mode = match (config.secure, generated) {
        (true, _) => "production mode: Secure cookies, secret from SESSION_SECRET".to_owned(),
        (false, true) => "development mode: Secure off (plain http), a generated secret".to_owned(),
        (false, false) => "development mode: Secure off (plain http)".to_owned(),
    };
    if generated {
        let bytes: [u8; 32] = rand::random();
        config.secrets = vec![hex::encode(bytes)];
        warnings.push(
            "SESSION_SECRET is not set: using a random development secret; sessions end when the process stops"
                .to_owned(),
        );
    }
    let store = match &config.store {
        StoreConfig::File(f) => format!("file store in {}", f.path.display()),
        StoreConfig::Redis(r) => format!("redis store at {}", r.redacted_url()),
        other => format!("{} store", other.driver()),
    };
    let layer = SessionLayer::from_config(&config).map_err(|e| e.to_string())?;
    Ok(DemoConfig {
        layer,
        store,
        mode,
        warnings,
    })
}

/// Serves `app` on `127.0.0.1:$PORT` (`default_port` without `PORT`) until
/// it fails, as the load-test servers do; errors go to stderr under `name`.
///
/// ```no_run
/// # async fn run() {
/// let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
/// let code = typed_session_examples::serve_load_test(app, "3100", "my_server").await;
/// # let _ = code;
/// # }
/// ```
pub async fn serve_load_test(
    app: Router,
    default_port: &str,
    name: &str,
) -> std::process::ExitCode {
    let port = std::env::var("PORT").unwrap_or_else(|_| default_port.to_owned());
    let listener = match tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: cannot listen on 127.0.0.1:{port}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match axum::serve(listener, app).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
