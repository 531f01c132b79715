//! The JSON API. Every response carries a numeric `code`: 1000 for success;
//! 2001 not logged in, 2002 the account is gone, 2003 bad credentials;
//! 3001 registration step 1 missing, 3002 step 2 missing, 3003 email taken;
//! 4001 an invalid value (with the `field`), 4004 unknown product.
//!
//! The API takes JSON bodies only (`Content-Type: application/json`), which a
//! cross-site form cannot send, and the session cookie is `SameSite=Lax`:
//! together they keep other sites from posting here with a visitor's cookie.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use typed_session::{SessionRejection, SessionView, TypedSession};

use crate::session::{
    CartLine, MAX_QUANTITY, Preferences, Registration, ShopSession, invalid_preference,
    plausible_email,
};
use crate::users::product;
use crate::{App, cart_summary, current_user, sign_in, text_ok, touch_activity};

/// `{code: 1000, ...body}` with `200`.
fn ok(mut body: Value) -> Response {
    body["code"] = json!(1000);
    Json(body).into_response()
}

/// `{code, error}` with `status`.
pub(crate) fn fail(status: StatusCode, code: u32, error: &str) -> Response {
    (status, Json(json!({ "code": code, "error": error }))).into_response()
}

/// A JSON body, or the API's `{code: 4000, error}` when it is missing,
/// malformed, of the wrong shape (`400`, `422`) or not JSON at all (`415`):
/// axum's own rejections keep the API's contract too.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(fail(rejection.status(), 4000, &rejection.body_text())),
        }
    }
}

/// A session rejection (the store down, a session ended meanwhile, ...)
/// in the API's shape: the layer's `on_rejection` hook.
pub(crate) fn rejection_response(rejection: SessionRejection) -> Response {
    let code = match rejection.status().as_u16() {
        503 => 5003,
        409 => 4009,
        413 => 4013,
        400 => 4000,
        _ => 5000,
    };
    fail(rejection.status(), code, &rejection.to_string())
}

/// `422 {code: 4001, field, error}`.
fn invalid(field: &str, error: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "code": 4001, "field": field, "error": error })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct Credentials {
    email: String,
    password: String,
}

pub(crate) async fn login(
    State(app): State<App>,
    client: crate::auth::Client,
    session: TypedSession<ShopSession>,
    ApiJson(body): ApiJson<Credentials>,
) -> Response {
    let user = match crate::log_in(&app, &client, &body.email, &body.password).await {
        Ok(user) => user,
        Err(crate::LoginRefused::BadCredentials) => {
            return fail(StatusCode::UNAUTHORIZED, 2003, "bad credentials");
        }
        Err(crate::LoginRefused::Throttled(wait)) => {
            let mut res = fail(
                StatusCode::TOO_MANY_REQUESTS,
                2004,
                "too many failed logins; try again later",
            );
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                wait.as_secs().max(1).into(),
            );
            return res;
        }
    };
    match sign_in(&session, &user, false) {
        Ok(()) => ok(json!({ "user": user })),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn logout(session: TypedSession<ShopSession>) -> Response {
    session.destroy();
    ok(json!({}))
}

pub(crate) async fn me(State(app): State<App>, session: TypedSession<ShopSession>) -> Response {
    let user = match current_user(&app, &session) {
        Ok(user) => user,
        Err(code) => return code.json(),
    };
    touch_activity(&session);
    ok(json!({
        "user": user,
        "loginAt": session.login_at(),
        "lastActivity": session.last_activity(),
    }))
}

pub(crate) async fn delete_me(
    State(app): State<App>,
    session: TypedSession<ShopSession>,
) -> Response {
    match current_user(&app, &session) {
        Ok(user) => {
            // Every session of the account ends (this one and any other
            // device's), before the account goes.
            if let Err(e) = app.revocations.revoke_all(&crate::subject(user.id)).await {
                eprintln!("shop: revoking the sessions of a deleted account failed: {e}");
                return fail(StatusCode::SERVICE_UNAVAILABLE, 5003, "try again");
            }
            session.destroy();
            app.users.delete(user.id);
            ok(json!({ "deleted": user.id }))
        }
        Err(code) => code.json(),
    }
}

pub(crate) async fn cart(session: SessionView<ShopSession>) -> Response {
    ok(session.with_cart(|c| cart_summary(c)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddToCart {
    product_id: u32,
    quantity: u32,
}

pub(crate) async fn add_to_cart(
    session: TypedSession<ShopSession>,
    ApiJson(body): ApiJson<AddToCart>,
) -> Response {
    match add_line(&session, body.product_id, body.quantity) {
        Ok(()) => ok(session.with_cart(|c| cart_summary(c))),
        Err(AddError::UnknownProduct) => fail(StatusCode::NOT_FOUND, 4004, "unknown product"),
        Err(AddError::Invalid(field, why)) => invalid(field, &why),
    }
}

/// Why a line could not be added.
pub(crate) enum AddError {
    UnknownProduct,
    Invalid(&'static str, String),
}

/// Adds `quantity` of a product (to its line if it has one).
pub(crate) fn add_line(
    session: &TypedSession<ShopSession>,
    product_id: u32,
    quantity: u32,
) -> Result<(), AddError> {
    if product(product_id).is_none() {
        return Err(AddError::UnknownProduct);
    }
    if quantity == 0 || quantity > MAX_QUANTITY {
        return Err(AddError::Invalid(
            "quantity",
            format!("1 to {MAX_QUANTITY}"),
        ));
    }
    session
        .update_cart(
            |cart| match cart.iter_mut().find(|l| l.product_id == product_id) {
                Some(line) => line.quantity += quantity,
                None => cart.push(CartLine {
                    product_id,
                    quantity,
                }),
            },
        )
        .map_err(|e| AddError::Invalid("quantity", e.message().to_owned()))
}

pub(crate) async fn clear_cart(session: TypedSession<ShopSession>) -> Response {
    session.take_cart();
    ok(cart_summary(&[]))
}

pub(crate) async fn preferences(session: SessionView<ShopSession>) -> Response {
    ok(json!({ "preferences": session.preferences() }))
}

pub(crate) async fn put_preferences(
    session: TypedSession<ShopSession>,
    ApiJson(body): ApiJson<Preferences>,
) -> Response {
    if let Some((field, why)) = invalid_preference(&body) {
        return invalid(field, &why);
    }
    match session.set_preferences(body) {
        Ok(()) => ok(json!({ "preferences": session.preferences() })),
        Err(e) => invalid("preferences", e.message()),
    }
}

#[derive(Deserialize)]
pub(crate) struct Step1 {
    name: String,
    email: String,
}

pub(crate) async fn register_step1(
    session: TypedSession<ShopSession>,
    ApiJson(body): ApiJson<Step1>,
) -> Response {
    if !text_ok(&body.name) {
        return invalid("name", "1 to 100 characters");
    }
    if !plausible_email(&body.email) {
        return invalid("email", "an email address");
    }
    match session.set_registration(Registration::Step1 {
        name: body.name.trim().to_owned(),
        email: body.email.trim().to_owned(),
    }) {
        Ok(()) => ok(json!({ "registration": session.registration() })),
        Err(e) => invalid("registration", e.message()),
    }
}

#[derive(Deserialize)]
pub(crate) struct Step2 {
    street: String,
    city: String,
    zip: String,
}

pub(crate) async fn register_step2(
    session: TypedSession<ShopSession>,
    ApiJson(body): ApiJson<Step2>,
) -> Response {
    let (name, email) = match session.registration() {
        Registration::Step1 { name, email } | Registration::Step2 { name, email, .. } => {
            (name, email)
        }
        Registration::NotStarted => {
            return fail(StatusCode::BAD_REQUEST, 3001, "complete step 1 first");
        }
    };
    for (field, value) in [
        ("street", &body.street),
        ("city", &body.city),
        ("zip", &body.zip),
    ] {
        if !text_ok(value) {
            return invalid(field, "1 to 100 characters");
        }
    }
    match session.set_registration(Registration::Step2 {
        name,
        email,
        street: body.street.trim().to_owned(),
        city: body.city.trim().to_owned(),
        zip: body.zip.trim().to_owned(),
    }) {
        Ok(()) => ok(json!({ "registration": session.registration() })),
        Err(e) => invalid("registration", e.message()),
    }
}

pub(crate) async fn register_complete(
    State(app): State<App>,
    session: TypedSession<ShopSession>,
) -> Response {
    match crate::complete_registration(&app, &session) {
        Ok(user) => ok(json!({ "user": user })),
        Err(crate::RegisterError::NoStep2) => {
            fail(StatusCode::BAD_REQUEST, 3002, "complete step 2 first")
        }
        Err(crate::RegisterError::EmailTaken) => fail(
            StatusCode::CONFLICT,
            3003,
            "that email already has an account",
        ),
        Err(crate::RegisterError::Session(e)) => e.into_response(),
    }
}

pub(crate) async fn flash(session: TypedSession<ShopSession>) -> Response {
    ok(json!({
        "success": session.success().drain(),
        "error": session.errors().drain(),
    }))
}

pub(crate) async fn stats(session: SessionView<ShopSession>) -> Response {
    ok(json!({ "pageViews": session.page_views() }))
}
