//! The HTML pages: the same flows as the API, server-rendered, with
//! post / redirect / get and flash messages. Every form carries a CSRF token
//! bound to the session; a post without it (or with another) is refused.

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A page: counts the view, takes the flash messages (shown once), and
/// makes sure the session has a CSRF token for the page's forms.
fn page(
    session: &TypedSession<ShopSession>,
    title: &str,
    body: impl FnOnce(&str) -> String,
) -> Html<String> {
    let _ = session.update_page_views(|n| *n += 1);
    let mut token = session.csrf();
    if token.is_empty() {
        token = new_token();
        let _ = session.set_csrf(token.clone());
    }
    let list = |id: &str, messages: Vec<String>| -> String {
        let items: String = messages
            .iter()
            .map(|m| format!("<li>{}</li>", escape(m)))
            .collect();
        format!("<ul id={id} class=flash>{items}</ul>")
    };
    let success = list("flash-success", session.success().drain());
    let errors = list("flash-error", session.errors().drain());
    let theme = escape(&session.with_preferences(|p| p.theme.clone()));
    let user = match session.email() {
        Some(email) => format!(
            "<span id=user>signed in as {}</span> <form method=post action=/logout class=inline>{}<button id=logout>log out</button></form>",
            escape(&email),
            csrf_field(&token)
        ),
        None => "<span id=user>anonymous</span> <a id=login-link href=/login>log in</a>".to_owned(),
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title} · typed-session shop</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}.dark{{background:#222;color:#eee}}\
         .inline{{display:inline}}#flash-success li{{color:green}}#flash-error li{{color:#c00}}</style></head>\
         <body class={theme}><nav><a href=/>home</a> · <a href=/cart>cart</a> · <a href=/preferences>preferences</a> · \
         <a href=/register>register</a> · {user}</nav>{success}{errors}<h1>{title}</h1>{}</body></html>",
        body(&token)
    ))
}

fn csrf_field(token: &str) -> String {
    format!("<input type=hidden name=csrf value=\"{}\">", escape(token))
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

async fn home(State(app): State<App>, session: TypedSession<ShopSession>) -> Html<String> {
    let greeting = match current_user(&app, &session) {
        Ok(user) => format!(
            "<p id=greeting>Hello, {} ({:?}).</p>",
            escape(&user.name),
            user.role
        ),
        Err(_) => "<p id=greeting>Hello, visitor.</p>".to_owned(),
    };
    let views = session.page_views() + 1;
    page(&session, "Shop", |_| {
        format!("{greeting}<p>Your session has viewed <span id=views>{views}</span> pages.</p>")
    })
}

async fn login_page(session: TypedSession<ShopSession>) -> Html<String> {
    page(&session, "Log in", |token| {
        format!(
            "<form method=post action=/login>{}<label>email <input id=login-email name=email></label> \
             <label>password <input id=login-password name=password type=password></label> \
             <button id=login-submit>log in</button></form><p>Demo: alice@example.com / alice-password</p>",
            csrf_field(token)
        )
    })
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

async fn cart_page(session: TypedSession<ShopSession>) -> Html<String> {
    let cart = session.cart();
    page(&session, "Cart", |token| {
        let mut total = 0;
        let lines: String = cart
            .iter()
            .filter_map(|l| {
                let p = product(l.product_id)?;
                total += p.price_cents * u64::from(l.quantity);
                Some(format!(
                    "<li class=item data-product={}>{} × {}</li>",
                    p.id,
                    escape(p.name),
                    l.quantity
                ))
            })
            .collect();
        let options: String = CATALOGUE
            .iter()
            .map(|p| {
                format!(
                    "<option value={}>{} ({:.2})</option>",
                    p.id,
                    escape(p.name),
                    p.price_cents as f64 / 100.0
                )
            })
            .collect();
        format!(
            "<ul id=cart>{lines}</ul><p>total <span id=total>{:.2}</span></p>\
             <form method=post action=/cart/add>{}<select id=add-product name=product_id>{options}</select> \
             <input id=add-quantity name=quantity value=1 size=3> <button id=add-submit>add</button></form>\
             <form method=post action=/cart/clear>{}<button id=clear-cart>empty the cart</button></form>",
            total as f64 / 100.0,
            csrf_field(token),
            csrf_field(token)
        )
    })
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

async fn preferences_page(session: TypedSession<ShopSession>) -> Html<String> {
    let p = session.preferences();
    page(&session, "Preferences", |token| {
        let checked = if p.notifications { " checked" } else { "" };
        format!(
            "<form method=post action=/preferences>{}\
             <label>language <input id=pref-language name=language value=\"{}\"></label> \
             <label>theme <input id=pref-theme name=theme value=\"{}\"></label> \
             <label>timezone <input id=pref-timezone name=timezone value=\"{}\"></label> \
             <label>notifications <input id=pref-notifications type=checkbox name=notifications value=true{checked}></label> \
             <button id=pref-save>save</button></form>",
            csrf_field(token),
            escape(&p.language),
            escape(&p.theme),
            escape(&p.timezone)
        )
    })
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

async fn register_page(session: TypedSession<ShopSession>) -> Html<String> {
    let step = session.registration();
    page(&session, "Register", |token| match step {
        Registration::NotStarted => format!(
            "<p id=step>step 1 of 3</p><form method=post action=/register/step1>{}\
             <label>name <input id=reg-name name=name></label> <label>email <input id=reg-email name=email></label> \
             <button id=reg-step1>next</button></form>",
            csrf_field(token)
        ),
        Registration::Step1 { name, .. } => format!(
            "<p id=step>step 2 of 3, {}</p><form method=post action=/register/step2>{}\
             <label>street <input id=reg-street name=street></label> <label>city <input id=reg-city name=city></label> \
             <label>zip <input id=reg-zip name=zip></label> <button id=reg-step2>next</button></form>",
            escape(&name),
            csrf_field(token)
        ),
        Registration::Step2 {
            name,
            email,
            street,
            city,
            zip,
        } => format!(
            "<p id=step>step 3 of 3</p><p id=summary>{} &lt;{}&gt;, {}, {} {}</p>\
             <form method=post action=/register/complete>{}<button id=reg-complete>create my account</button></form>",
            escape(&name),
            escape(&email),
            escape(&street),
            escape(&zip),
            escape(&city),
            csrf_field(token)
        ),
    })
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
