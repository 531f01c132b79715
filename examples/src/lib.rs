//! The demo shop: a small axum app whose session is a typed struct.
//!
//! `cargo run -p typed-session-examples --example shop` serves it on
//! <http://127.0.0.1:3000> with its embedded default store: files under
//! `storage/sessions` (`SESSION_FILE_PATH` overrides).

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use typed_session::store::SessionStore;
use typed_session::{Flash, SessionLayer, SessionSchema, SessionView, TypedSession};

/// One line of the cart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CartItem {
    /// Product name.
    pub product: String,
    /// How many.
    pub qty: u32,
}

/// Where a visitor is in the sign-up flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Registration {
    /// Not started.
    #[default]
    NotStarted,
    /// Email given, name pending.
    Step1 {
        /// The email address.
        email: String,
    },
    /// Done.
    Complete {
        /// The email address.
        email: String,
        /// The display name.
        name: String,
    },
}

/// The most lines a cart may hold.
pub const MAX_CART_LINES: usize = 20;
/// The longest product name, in characters.
pub const MAX_PRODUCT_CHARS: usize = 64;
/// The longest email address (RFC 5321's limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// The longest display name.
pub const MAX_NAME_CHARS: usize = 100;
/// The largest request body the shop reads (its forms are a few fields).
pub const MAX_BODY_BYTES: usize = 4096;

fn cart_within_limit(cart: &[CartItem]) -> Result<(), String> {
    if cart.len() > MAX_CART_LINES {
        return Err(format!("a cart holds at most {MAX_CART_LINES} lines"));
    }
    if cart.iter().any(|i| i.qty == 0 || i.qty > 99) {
        return Err("quantities are 1 to 99".into());
    }
    if cart
        .iter()
        .any(|i| i.product.chars().count() > MAX_PRODUCT_CHARS)
    {
        return Err(format!(
            "product names are at most {MAX_PRODUCT_CHARS} characters"
        ));
    }
    Ok(())
}

fn registration_within_limits(r: &Registration) -> Result<(), String> {
    let (email, name) = match r {
        Registration::NotStarted => return Ok(()),
        Registration::Step1 { email } => (email, ""),
        Registration::Complete { email, name } => (email, name.as_str()),
    };
    if email.chars().count() > MAX_EMAIL_CHARS || !email.contains('@') {
        return Err(format!(
            "an email address has an @ and at most {MAX_EMAIL_CHARS} characters"
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("a name is at most {MAX_NAME_CHARS} characters"));
    }
    Ok(())
}

fn valid_user_id(id: &Option<u64>) -> Result<(), String> {
    match id {
        Some(0) => Err("user id 0 is never issued".into()),
        _ => Ok(()),
    }
}

/// The session of the demo shop.
#[derive(SessionSchema, Debug)]
pub struct Shop {
    /// Set at login only, together with a new session id.
    #[session(readonly, validate = valid_user_id, on_invalid = "destroy")]
    pub user_id: Option<u64>,
    /// The cart, validated on every write and load.
    #[session(validate = cart_within_limit)]
    pub cart: Vec<CartItem>,
    /// Messages for the next page.
    #[session(flash)]
    pub notices: Flash<String>,
    /// The sign-up flow.
    #[session(validate = registration_within_limits)]
    pub registration: Registration,
}

#[derive(Deserialize)]
struct AddForm {
    product: String,
}

#[derive(Deserialize)]
struct EmailForm {
    email: String,
}

#[derive(Deserialize)]
struct NameForm {
    name: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn home(session: TypedSession<Shop>) -> Html<String> {
    let notices: String = session
        .notices()
        .drain()
        .iter()
        .map(|n| format!("<li class=\"notice\">{}</li>", escape(n)))
        .collect();
    let user = match session.user_id() {
        Some(id) => format!("<p id=\"user\">signed in as user {id}</p><form method=post action=/logout><button id=logout>log out</button></form>"),
        None => "<p id=\"user\">anonymous</p><form method=post action=/login><button id=login>log in</button></form>".to_owned(),
    };
    let cart: String = session.with_cart(|cart| {
        cart.iter()
            .map(|i| format!("<li class=\"item\">{} × {}</li>", escape(&i.product), i.qty))
            .collect()
    });
    let registration = match session.registration() {
        Registration::NotStarted => "<form method=post action=/register/email><input name=email id=email><button id=register-email>next</button></form>".to_owned(),
        Registration::Step1 { email } => format!("<p>email {}</p><form method=post action=/register/name><input name=name id=name><button id=register-name>finish</button></form>", escape(&email)),
        Registration::Complete { email, name } => format!("<p id=\"registered\">registered {} &lt;{}&gt;</p>", escape(&name), escape(&email)),
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>typed-session shop</title></head><body>\
         <h1>typed-session shop</h1><ul id=notices>{notices}</ul>{user}\
         <h2>cart</h2><ul id=cart>{cart}</ul>\
         <form method=post action=/cart><input name=product id=product><button id=add>add</button></form>\
         <h2>register</h2>{registration}</body></html>"
    ))
}

async fn login(session: TypedSession<Shop>) -> Response {
    // A new id and a fresh session at login, against session fixation and
    // against data planted before it; the cart is carried over on purpose
    // (the registration is not). The read-only user id can only be set here.
    let result = session.regenerate_clear_with(|fresh, before| {
        fresh.user_id = Some(1001);
        fresh.cart = before.cart.clone();
    });
    match result {
        Ok(()) => {
            session.notices().push("welcome back".into());
            Redirect::to("/").into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn logout(session: TypedSession<Shop>) -> Redirect {
    session.destroy();
    session.notices().push("logged out".into());
    Redirect::to("/")
}

async fn add(session: TypedSession<Shop>, Form(form): Form<AddForm>) -> Response {
    let product = form.product.trim().to_owned();
    if product.is_empty() {
        session.notices().push("name a product".into());
        return Redirect::to("/").into_response();
    }
    let result = session.update_cart(
        |cart| match cart.iter_mut().find(|i| i.product == product) {
            Some(line) => line.qty += 1,
            None => cart.push(CartItem {
                product: product.clone(),
                qty: 1,
            }),
        },
    );
    match result {
        Ok(()) => session.notices().push(format!("added {product}")),
        Err(e) => session.notices().push(e.message().to_owned()),
    }
    Redirect::to("/").into_response()
}

async fn register_email(session: TypedSession<Shop>, Form(form): Form<EmailForm>) -> Response {
    if !form.email.contains('@') {
        session
            .notices()
            .push("that is not an email address".into());
        return Redirect::to("/").into_response();
    }
    if let Err(e) = session.set_registration(Registration::Step1 { email: form.email }) {
        session.notices().push(e.message().to_owned());
    }
    Redirect::to("/").into_response()
}

async fn register_name(session: TypedSession<Shop>, Form(form): Form<NameForm>) -> Response {
    let Registration::Step1 { email } = session.registration() else {
        return (StatusCode::CONFLICT, "start with your email").into_response();
    };
    match session.set_registration(Registration::Complete {
        email,
        name: form.name,
    }) {
        Ok(()) => session.notices().push("registered".into()),
        Err(e) => session.notices().push(e.message().to_owned()),
    }
    Redirect::to("/").into_response()
}

async fn cart_json(session: SessionView<Shop>) -> axum::Json<Vec<CartItem>> {
    axum::Json(session.cart())
}

/// The shop's routes over `layer`.
pub fn shop_app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/cart", post(add).get(cart_json))
        .route("/register/email", post(register_email))
        .route("/register/name", post(register_name))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(layer)
        .route("/healthz", get(|| async { "ok" }))
}

/// The layer the demo runs with over `store`; `Secure` off because the demo
/// is served over plain `http://127.0.0.1` (never do this in production).
pub fn demo_layer(store: impl SessionStore) -> SessionLayer {
    SessionLayer::new(store).with_secure(false)
}
