//! The shop's session: one typed struct, validated on every write and load,
//! migrated from the first version of the demo.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use typed_session::{Flash, MigrationError, SessionSchema};

use crate::users::{Role, product};

/// One line of the cart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    /// A product of the catalogue.
    pub product_id: u32,
    /// 1 to 99.
    pub quantity: u32,
}

/// The visitor's display preferences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// `en`, `de`, `fr`, `es` or `ja`.
    pub language: String,
    /// `light` or `dark`.
    pub theme: String,
    /// `UTC` or an `Area/City` zone name.
    pub timezone: String,
    /// Whether to send notifications.
    pub notifications: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            language: "en".into(),
            theme: "light".into(),
            timezone: "UTC".into(),
            notifications: true,
        }
    }
}

/// Where a visitor is in the sign-up flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Registration {
    /// Not started.
    #[default]
    NotStarted,
    /// Name and email given.
    Step1 {
        /// Display name.
        name: String,
        /// Email address.
        email: String,
    },
    /// Address given too: ready to complete.
    Step2 {
        /// Display name.
        name: String,
        /// Email address.
        email: String,
        /// Street and number.
        street: String,
        /// City.
        city: String,
        /// Postal code.
        zip: String,
    },
}

/// Most lines in a cart.
pub const MAX_CART_LINES: usize = 20;
/// Most of one product in a cart.
pub const MAX_QUANTITY: u32 = 99;
/// Longest text a visitor may type into a field.
pub const MAX_TEXT_CHARS: usize = 100;
/// Longest email address (RFC 5321).
pub const MAX_EMAIL_CHARS: usize = 254;

/// The demo's session, version 2 (version 1 was the first demo: product
/// names in the cart, one flash list, a two-step registration).
#[derive(SessionSchema, Debug)]
#[session(version = 2, migrate(from = 1, with = from_v1))]
pub struct ShopSession {
    /// The signed-in user; set only at login, with a new session id.
    #[session(readonly, validate = valid_user_id, on_invalid = "destroy")]
    pub user_id: Option<u64>,
    /// The signed-in user's email.
    #[session(readonly)]
    pub email: Option<String>,
    /// The signed-in user's role.
    #[session(readonly)]
    pub role: Option<Role>,
    /// When the user signed in (unix seconds).
    #[session(readonly)]
    pub login_at: Option<u64>,
    /// The user's last request (unix seconds, refreshed at most once a minute).
    pub last_activity: Option<u64>,
    /// The cart; an invalid stored cart is emptied on load.
    #[session(validate = valid_cart, on_invalid = "reset")]
    pub cart: Vec<CartLine>,
    /// Display preferences; invalid stored ones go back to the defaults.
    #[session(validate = valid_preferences, on_invalid = "reset")]
    pub preferences: Preferences,
    /// The sign-up flow.
    #[session(validate = valid_registration, on_invalid = "reset")]
    pub registration: Registration,
    /// Success messages for the next page.
    #[session(flash)]
    pub success: Flash<String>,
    /// Error messages for the next page.
    #[session(flash)]
    pub errors: Flash<String>,
    /// HTML pages this session has viewed.
    pub page_views: u64,
    /// The token every HTML form carries (bound to this session).
    pub csrf: String,
}

fn valid_user_id(id: &Option<u64>) -> Result<(), String> {
    match id {
        Some(0) => Err("user id 0 is never issued".into()),
        _ => Ok(()),
    }
}

/// Every line names a product of the catalogue, once, 1 to 99 of it.
pub fn valid_cart(cart: &[CartLine]) -> Result<(), String> {
    if cart.len() > MAX_CART_LINES {
        return Err(format!("a cart holds at most {MAX_CART_LINES} lines"));
    }
    for (i, line) in cart.iter().enumerate() {
        if product(line.product_id).is_none() {
            return Err(format!("unknown product {}", line.product_id));
        }
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            return Err(format!("quantities are 1 to {MAX_QUANTITY}"));
        }
        if cart[..i].iter().any(|l| l.product_id == line.product_id) {
            return Err("one line per product".into());
        }
    }
    Ok(())
}

/// The first field of `p` that is not valid, with the reason.
pub fn invalid_preference(p: &Preferences) -> Option<(&'static str, String)> {
    if !["en", "de", "fr", "es", "ja"].contains(&p.language.as_str()) {
        return Some(("language", "one of en, de, fr, es, ja".into()));
    }
    if !["light", "dark"].contains(&p.theme.as_str()) {
        return Some(("theme", "light or dark".into()));
    }
    let zone_ok = p.timezone == "UTC"
        || (p.timezone.len() <= 64
            && p.timezone.contains('/')
            && p.timezone.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
            }));
    if !zone_ok {
        return Some(("timezone", "UTC or an Area/City zone name".into()));
    }
    None
}

fn valid_preferences(p: &Preferences) -> Result<(), String> {
    match invalid_preference(p) {
        Some((field, reason)) => Err(format!("{field}: {reason}")),
        None => Ok(()),
    }
}

/// Whether `email` looks like an address (one `@`, something on each side).
pub fn plausible_email(email: &str) -> bool {
    let mut parts = email.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && b.contains('.'))
        && email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(char::is_whitespace)
}

fn short(text: &str) -> bool {
    !text.trim().is_empty() && text.chars().count() <= MAX_TEXT_CHARS
}

fn valid_registration(r: &Registration) -> Result<(), String> {
    let ok = match r {
        Registration::NotStarted => true,
        Registration::Step1 { name, email } => short(name) && plausible_email(email),
        Registration::Step2 {
            name,
            email,
            street,
            city,
            zip,
        } => short(name) && plausible_email(email) && short(street) && short(city) && short(zip),
    };
    if ok {
        Ok(())
    } else {
        Err("incomplete or too long".into())
    }
}

/// Version 1 to 2: cart lines by product name become lines by catalogue id
/// (names the catalogue does not know are dropped), the one `notices` flash
/// list becomes `success`, a half-done v1 sign-up (email only) restarts at
/// step 1 with the address's local part as the name, and a v1 login is dropped: v1 signed everyone
/// in as a made-up user 1001 without an account.
pub fn from_v1(mut v: Value) -> Result<Value, MigrationError> {
    let data = v
        .as_object_mut()
        .ok_or_else(|| MigrationError::new("a v1 session is a JSON object"))?;
    data.remove("user_id");
    let mut cart: Vec<Value> = Vec::new();
    if let Some(Value::Array(lines)) = data.remove("cart") {
        for line in lines {
            let name = line.get("product").and_then(Value::as_str).unwrap_or("");
            let qty = line.get("qty").and_then(Value::as_u64).unwrap_or(0);
            if let Some(p) = crate::users::product_by_name(name) {
                cart.push(json!({ "product_id": p.id, "quantity": qty.clamp(1, 99) }));
            }
        }
    }
    data.insert("cart".into(), Value::Array(cart));
    if let Some(notices) = data.remove("notices") {
        data.insert("success".into(), notices);
    }
    let registration = match data.remove("registration") {
        Some(Value::Object(r)) if r.contains_key("Step1") => {
            let email = r["Step1"]
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            // v1 asked for the name last: start from the address's local part.
            let name = email.split('@').next().unwrap_or("").to_owned();
            json!({ "Step1": { "name": name, "email": email } })
        }
        _ => json!("NotStarted"),
    };
    data.insert("registration".into(), registration);
    Ok(v)
}
