//! Entry points for the `cargo fuzz` targets in `fuzz/` (hidden feature
//! `__fuzz`; not public API). Each drives one decoder that reads attacker
//! input and checks what must hold for every input: no panic, nothing
//! accepted that the keys did not produce, canonical forms.

use std::sync::OnceLock;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use crate::backend::seam::{Payload, Stored};
use crate::backend::server::ServerSide;
use crate::cookies::{CookieIn, CookieSettings};
use crate::id::SessionId;
use crate::keys::{KeyRing, Purpose, SigningKey};
use crate::schema::SessionSchema;

pub use schema::Everything;

/// A schema with every attribute kind, for [`stored_record`].
#[allow(missing_docs, missing_debug_implementations)]
mod schema {
    use serde::{Deserialize, Serialize};
    use serde_json::{Value, json};

    use crate::{Flash, MigrationError};

    #[derive(Clone, Default, Serialize, Deserialize)]
    pub enum Step {
        #[default]
        Start,
        Address {
            city: String,
        },
        Done(u32),
    }

    fn short(items: &[String]) -> Result<(), String> {
        if items.len() <= 8 {
            Ok(())
        } else {
            Err("too many".into())
        }
    }

    fn positive(n: &Option<u64>) -> Result<(), String> {
        if *n == Some(0) {
            Err("zero".into())
        } else {
            Ok(())
        }
    }

    fn sane(s: &Everything) -> Result<(), String> {
        if s.visits > 1_000_000 {
            Err("visits".into())
        } else {
            Ok(())
        }
    }

    fn seven() -> u32 {
        7
    }

    fn v1(mut v: Value) -> Result<Value, MigrationError> {
        let o = v
            .as_object_mut()
            .ok_or_else(|| MigrationError::new("object"))?;
        let user = o.remove("user").unwrap_or(Value::Null);
        o.insert("user_id".into(), user);
        Ok(v)
    }

    fn v2(mut v: Value) -> Result<Value, MigrationError> {
        let o = v
            .as_object_mut()
            .ok_or_else(|| MigrationError::new("object"))?;
        if let Some(Value::String(s)) = o.remove("cart") {
            o.insert("cart".into(), json!([s]));
        }
        Ok(v)
    }

    /// Version 3 with two migrations, field and struct rules, each
    /// `on_invalid` policy, flash, readonly, rename, default and skip.
    #[derive(crate::SessionSchema)]
    #[session(
        crate = "crate",
        version = 3,
        migrate(from = 1, with = v1),
        migrate(from = 2, with = v2),
        validate = sane
    )]
    pub struct Everything {
        #[session(readonly, validate = positive, on_invalid = "destroy")]
        user_id: Option<u64>,
        #[session(validate = short, on_invalid = "reset")]
        cart: Vec<String>,
        #[session(on_invalid = "reject")]
        step: Step,
        #[session(flash)]
        notices: Flash<String>,
        #[session(rename = "v")]
        visits: u64,
        #[session(default = seven)]
        lucky: u32,
        #[session(skip)]
        scratch: Vec<u8>,
    }
}

fn key() -> SigningKey {
    SigningKey::new(b"the fuzz targets' fixed secret, 32 bytes or more".to_vec())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Finds the session cookie in `Cookie` headers made of `data` (split at
/// `\n` into several headers). The value found, if any, is bounded and
/// appears verbatim in one of the headers.
pub fn cookie_header(data: &[u8]) {
    let mut settings = CookieSettings::new("session".into());
    settings.secure = false;
    settings.refresh();
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }
    if let CookieIn::Value(v) = settings.find(&headers) {
        assert!(v.len() <= crate::cookies::MAX_COOKIE_VALUE);
        assert!(
            headers
                .get_all(COOKIE)
                .iter()
                .any(|h| h.to_str().is_ok_and(|t| t.contains(v)))
        );
    }
}

/// Verifies `data` as a signed session cookie value: only an id signed
/// with the fuzz key passes, and then re-signing it gives back `data`.
pub fn session_id(data: &[u8]) {
    static BACKEND: OnceLock<ServerSide> = OnceLock::new();
    let backend = BACKEND.get_or_init(|| {
        ServerSide::new(
            std::sync::Arc::new(crate::store::MemoryStore::new()),
            None,
            std::sync::Arc::default(),
            KeyRing::derive([&key()], Purpose::IdSigning),
        )
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((id, old_key)) = backend.verify(text) {
        assert!(!old_key);
        let stored = Stored {
            id,
            revision: 1,
            expires_at: 0,
            sealed: None,
        };
        assert_eq!(backend.cookie_value(&stored), text, "one value per id");
    }
    let _ = SessionId::from_cookie_value(text);
}

/// Opens `data` as a sealed cookie (cookie mode): without the key nothing
/// opens; a value sealed here and then mutated by the fuzzer opens only if
/// unchanged.
#[cfg(feature = "cookie-store")]
pub fn sealed_cookie(data: &[u8]) {
    use crate::backend::sealed::SealedCookie;
    static SEALED: OnceLock<(SealedCookie, String)> = OnceLock::new();
    let (backend, good) = SEALED.get_or_init(|| {
        let b = SealedCookie::new(KeyRing::derive([&key()], Purpose::Sealing), "session", true);
        let meta = crate::frame::Meta::new(1_700_000_000_000);
        let payload = Payload {
            version: 1,
            meta,
            fields: br#"{"n":1}"#.to_vec(),
            expires_at: u64::MAX,
            copy: None,
            established: false,
        };
        let good = b
            .seal(&SessionId::random(), &payload)
            .unwrap_or_else(|e| panic!("{e}"));
        (b, good)
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if backend.open(text).is_ok() {
        assert_eq!(text, good, "only the value sealed with the key opens");
    }
}

/// Decodes `data` as a stored record of `S` (migrations, per-field
/// `on_invalid`): never a panic; the shortcut for the crate's own layout
/// loads exactly what the full parse loads; a record that loads encodes and
/// loads again.
pub fn stored_record<S: SessionSchema>(data: &[u8]) {
    if data.len() > 1 << 20 {
        return;
    }
    let written = |decoded: &crate::envelope::Decoded<S>| {
        let fields = crate::envelope::encode(&decoded.value)
            .unwrap_or_else(|e| panic!("a loaded session encodes: {e}"));
        crate::frame::frame(S::VERSION, &decoded.meta, &fields)
    };
    let fast =
        crate::envelope::decode::<S>(data).map(|d| (written(&d), d.changed, d.migrated_from));
    let full = crate::envelope::decode_parsed::<S>(data)
        .map(|d| (written(&d), d.changed, d.migrated_from));
    match (&fast, &full) {
        (Ok(a), Ok(b)) => assert!(a == b, "both paths load the same"),
        (Err(_), Err(_)) => {}
        _ => panic!("one path loads, the other does not"),
    }
    if let Ok((again, _, _)) = fast {
        assert!(
            crate::envelope::decode::<S>(&again).is_ok(),
            "a record written from a loaded session loads"
        );
    }
}
