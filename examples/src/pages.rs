//! The HTML pages: the same flows as the API, server-rendered, with
//! post / redirect / get and flash messages. Every form carries a CSRF token
//! bound to the session; a post without it (or with another) is refused.

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use std::sync::OnceLock;

use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::value::{Serde, Value};
use minijinja::{Environment, context};
use serde::Deserialize;
use typed_session::TypedSession;

use crate::api::{AddError, add_line};
use crate::session::{Preferences, Registration, ShopSession, invalid_preference, plausible_email};
use crate::users::{CATALOGUE, product};
use crate::{App, RegisterError, complete_registration, current_user, new_token, sign_in, text_ok};

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/cart", get(cart_page))
        .route("/cart/add", post(cart_add))
        .route("/cart/clear", post(cart_clear))
        .route("/preferences", get(preferences_page).post(preferences))
        .route("/register", get(register_page))
        .route("/register/step1", post(register_step1))
        .route("/register/step2", post(register_step2))
        .route("/register/complete", post(register_complete))
}

/// The templates (`examples/templates/`), compiled into the binary and
/// parsed once. Every `.html` template escapes what it prints by default;
/// nothing is marked safe, so no value reaches the page unescaped.
///
/// minijinja rather than askama or maud: no proc macro (askama and maud
/// would add a second `syn` to the build), templates in files a designer
/// can read, escaping chosen by the file name. The cost: a template error
/// shows at run time, so a test renders every page.
fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                eprintln!("shop: template {name} does not parse: {e}");
            }
        }
        env
    })
}

const TEMPLATES: [(&str, &str); 7] = [
    ("base.html", include_str!("../templates/base.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("cart.html", include_str!("../templates/cart.html")),
    (
        "preferences.html",
        include_str!("../templates/preferences.html"),
    ),
    ("register.html", include_str!("../templates/register.html")),
    (
        "throttled.html",
        include_str!("../templates/throttled.html"),
    ),
];

/// A page: counts the view, takes the flash messages (shown once), makes
/// sure the session has a CSRF token for the page's forms, and renders
/// `template` with `values` and what the layout needs (`title`, `token`,
/// `theme`, `email`, `success`, `errors`: names `values` must not use, as
/// the layout's win).
fn page(
    session: &TypedSession<ShopSession>,
    template: &str,
    title: &str,
    values: Value,
) -> Response {
    let _ = session.update_page_views(|n| *n += 1);
    let mut token = session.csrf();
    if token.is_empty() {
        token = new_token();
        let _ = session.set_csrf(token.clone());
    }
    let ctx = context! {
        title,
        token,
        theme => session.with_preferences(|p| p.theme.clone()),
        email => session.email(),
        success => session.success().drain(),
        errors => session.errors().drain(),
        ..values
    };
    match templates()
        .get_template(template)
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            eprintln!("shop: page {template} could not be rendered: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The session's token matches the form's (and the session has one).
fn csrf_ok(session: &TypedSession<ShopSession>, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    // In constant time: how much of a guess matches says nothing.
    session.with_csrf(|t| !t.is_empty() && bool::from(t.as_bytes().ct_eq(given.as_bytes())))
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "invalid or missing CSRF token").into_response()
}

async fn home(State(app): State<App>, session: TypedSession<ShopSession>) -> Response {
    let user = current_user(&app, &session).ok();
    let views = session.page_views() + 1;
    page(
        &session,
        "home.html",
        "Shop",
        context! { user => Serde(user), views },
    )
}

async fn login_page(session: TypedSession<ShopSession>) -> Response {
    page(&session, "login.html", "Log in", context! {})
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    email: String,
    password: String,
}

async fn login(
    State(app): State<App>,
    client: crate::auth::Client,
    session: TypedSession<ShopSession>,
    Form(form): Form<LoginForm>,
) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return forbidden();
    }
    match crate::log_in(&app, &client, &form.email, &form.password).await {
        Ok(user) => match sign_in(&session, &user, false) {
            Ok(()) => Redirect::to("/").into_response(),
            Err(e) => e.into_response(),
        },
        Err(crate::LoginRefused::BadCredentials) => {
            session.errors().push("wrong email or password".into());
            Redirect::to("/login").into_response()
        }
        Err(crate::LoginRefused::Throttled(wait)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(
                axum::http::header::RETRY_AFTER,
                wait.as_secs().max(1).to_string(),
            )],
            Html(format!(
                "<p id=throttled>Too many failed logins (code 2004); try again in {} minutes. \
                 <a href=/login>Back</a></p>",
                wait.as_secs().div_ceil(60)
            )),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(session: TypedSession<ShopSession>, Form(form): Form<CsrfOnly>) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return forbidden();
    }
    session.destroy();
    session.success().push("logged out".into());
    Redirect::to("/").into_response()
}

async fn cart_page(session: TypedSession<ShopSession>) -> Response {
    let cart = session.cart();
    let mut total = 0;
    let lines: Vec<Value> = cart
        .iter()
        .filter_map(|l| {
            let p = product(l.product_id)?;
            total += p.price_cents * u64::from(l.quantity);
            Some(context! { id => p.id, name => p.name, quantity => l.quantity })
        })
        .collect();
    let catalogue: Vec<Value> = CATALOGUE
        .iter()
        .map(|p| context! { id => p.id, name => p.name, price => cents(p.price_cents) })
        .collect();
    page(
        &session,
        "cart.html",
        "Cart",
        context! { lines, catalogue, total => cents(total) },
    )
}

/// `1234` cents as `12.34`.
fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

#[derive(Deserialize)]
struct AddForm {
    #[serde(default)]
    csrf: String,
    product_id: u32,
    quantity: u32,
}

async fn cart_add(session: TypedSession<ShopSession>, Form(form): Form<AddForm>) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return forbidden();
    }
    match add_line(&session, form.product_id, form.quantity) {
        Ok(()) => {
            let name = product(form.product_id).map_or("?", |p| p.name);
            session
                .success()
                .push(format!("added {} × {name}", form.quantity));
        }
        Err(AddError::UnknownProduct) => session.errors().push("unknown product".into()),
        Err(AddError::Invalid(field, why)) => session.errors().push(format!("{field}: {why}")),
    }
    Redirect::to("/cart").into_response()
}

async fn cart_clear(session: TypedSession<ShopSession>, Form(form): Form<CsrfOnly>) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return forbidden();
    }
    session.take_cart();
    session.success().push("cart emptied".into());
    Redirect::to("/cart").into_response()
}

async fn preferences_page(session: TypedSession<ShopSession>) -> Response {
    let prefs = session.preferences();
    page(
        &session,
        "preferences.html",
        "Preferences",
        context! { prefs => Serde(prefs) },
    )
}

#[derive(Deserialize)]
struct PreferencesForm {
    #[serde(default)]
    csrf: String,
    language: String,
    theme: String,
    timezone: String,
    #[serde(default)]
    notifications: Option<String>,
}

async fn preferences(
    session: TypedSession<ShopSession>,
    Form(form): Form<PreferencesForm>,
) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return forbidden();
    }
    let prefs = Preferences {
        language: form.language.trim().to_owned(),
        theme: form.theme.trim().to_owned(),
        timezone: form.timezone.trim().to_owned(),
        notifications: form.notifications.is_some(),
    };
    match invalid_preference(&prefs) {
        Some((field, why)) => session.errors().push(format!("{field}: {why}")),
        None => match session.set_preferences(prefs) {
            Ok(()) => session.success().push("preferences saved".into()),
            Err(e) => session.errors().push(e.message().to_owned()),
        },
    }
    Redirect::to("/preferences").into_response()
}

async fn register_page(session: TypedSession<ShopSession>) -> Response {
    let values = match session.registration() {
        Registration::NotStarted => context! { step => 1 },
        Registration::Step1 { name, .. } => context! { step => 2, name },
        Registration::Step2 {
            name,
            email,
            street,
            city,
            zip,
        } => context! { step => 3, name, reg_email => email, street, city, zip },
    };
    page(&session, "register.html", "Register", values)
}

#[derive(Deserialize)]
struct Step1Form {
    #[serde(default)]
    csrf: String,
    name: String,
    email: String,
}

async fn register_step1(
    session: TypedSession<ShopSession>,
    Form(form): Form<Step1Form>,
) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return forbidden();
    }
    if !text_ok(&form.name) || !plausible_email(form.email.trim()) {
        session
            .errors()
            .push("give a name and an email address".into());
    } else if let Err(e) = session.set_registration(Registration::Step1 {
        name: form.name.trim().to_owned(),
        email: form.email.trim().to_owned(),
    }) {
        session.errors().push(e.message().to_owned());
    }
    Redirect::to("/register").into_response()
}

#[derive(Deserialize)]
struct Step2Form {
    #[serde(default)]
    csrf: String,
    street: String,
    city: String,
    zip: String,
}

async fn register_step2(
    session: TypedSession<ShopSession>,
    Form(form): Form<Step2Form>,
) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return forbidden();
    }
    let Registration::Step1 { name, email } = session.registration() else {
        session.errors().push("start with step 1".into());
        return Redirect::to("/register").into_response();
    };
    if ![&form.street, &form.city, &form.zip]
        .iter()
        .all(|t| text_ok(t))
    {
        session
            .errors()
            .push("give a street, a city and a zip code".into());
    } else if let Err(e) = session.set_registration(Registration::Step2 {
        name,
        email,
        street: form.street.trim().to_owned(),
        city: form.city.trim().to_owned(),
        zip: form.zip.trim().to_owned(),
    }) {
        session.errors().push(e.message().to_owned());
    }
    Redirect::to("/register").into_response()
}

async fn register_complete(
    State(app): State<App>,
    session: TypedSession<ShopSession>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if !csrf_ok(&session, &form.csrf) {
        return forbidden();
    }
    match complete_registration(&app, &session) {
        Ok(_) => Redirect::to("/").into_response(),
        Err(RegisterError::NoStep2) => {
            session.errors().push("finish steps 1 and 2 first".into());
            Redirect::to("/register").into_response()
        }
        Err(RegisterError::EmailTaken) => {
            session
                .errors()
                .push("that email already has an account".into());
            Redirect::to("/register").into_response()
        }
        Err(RegisterError::Session(e)) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template parses, and values are escaped, not markup.
    #[test]
    fn templates_parse_and_escape() {
        let env = templates();
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        let html = env
            .get_template("register.html")
            .and_then(|t| {
                t.render(context! {
                    title => "<t>", token => "\"><script>", theme => "dark", step => 2,
                    name => "<img src=x onerror=alert(1)>", success => Vec::<String>::new(),
                    errors => vec!["<b>"],
                })
            })
            .unwrap_or_default();
        assert!(
            html.contains("step 2 of 3, &lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>") && !html.contains("<b>") && !html.contains("<t>"));
    }
}
